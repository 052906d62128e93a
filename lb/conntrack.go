package lb

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/overlayd/overlayd/lb/maglev"
	"github.com/overlayd/overlayd/packet"
)

// Options configures a Balancer. Zero fields take the defaults shown.
type Options struct {
	// Network, when set, makes Set ignore services of other networks. A
	// Balancer serves one overlay network's packet path.
	Network string
	// MaxFlows bounds the connection-tracking table (default 262144). It is
	// enforced per shard, MaxFlows/shards each. When a shard is full, a new
	// flow evicts the least recently used embryonic or closing flow, or an
	// expired one; when only live established flows remain it is refused.
	MaxFlows int
	// TableSize is the Maglev table size, a prime (default 65537).
	TableSize uint64
	// SynTimeout: TCP flows whose handshake has not completed, and flows
	// picked up mid-stream that have not seen a reply (default 30s).
	SynTimeout time.Duration
	// EstablishedTimeout: idle TCP flows in the established state (default 1h).
	EstablishedTimeout time.Duration
	// FinTimeout: idle TCP flows that have seen a FIN in one direction (default 60s).
	FinTimeout time.Duration
	// CloseTimeout: TCP flows that have seen a FIN both ways or a RST (default 10s).
	CloseTimeout time.Duration
	// UDPTimeout: idle UDP flows (default 30s).
	UDPTimeout time.Duration
	// SweepInterval is how often the sweeper started by Start removes
	// expired flows (default 10s). Expired flows are also replaced lazily.
	SweepInterval time.Duration
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// DefaultMaxFlows is the default Options.MaxFlows.
const DefaultMaxFlows = 262144

// Default timeouts.
const (
	DefaultSynTimeout         = 30 * time.Second
	DefaultEstablishedTimeout = time.Hour
	DefaultFinTimeout         = 60 * time.Second
	DefaultCloseTimeout       = 10 * time.Second
	DefaultUDPTimeout         = 30 * time.Second
	DefaultSweepInterval      = 10 * time.Second
)

// State is the connection-tracking state of a flow.
type State uint8

// Flow states. Established and Replied flows are protected from eviction.
const (
	StateSynSent     State = iota + 1 // TCP: client SYN seen
	StateSynReceived                  // TCP: backend SYN-ACK seen
	StateEstablished                  // TCP: handshake completed, or reply to a mid-stream pickup
	StateFinWait                      // TCP: FIN seen in one direction
	StateClosing                      // TCP: FIN seen in both directions
	StateClosed                       // TCP: RST seen, or the backend was removed
	StateUnreplied                    // UDP, or TCP picked up mid-stream: no reply yet
	StateReplied                      // UDP: traffic seen both ways
	numStates
)

var stateNames = [numStates]string{"", "SYN_SENT", "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT", "CLOSING", "CLOSED", "UNREPLIED", "REPLIED"}

func (s State) String() string {
	if s < numStates && s != 0 {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

func (s State) protected() bool { return s == StateEstablished || s == StateReplied }

// Directions of a packet relative to the flow.
const (
	dirOut = 1 // client → backend
	dirIn  = 2 // backend → client
)

// TCP flags, as in the TCP header.
const (
	flagFIN = packet.FlagFIN
	flagSYN = packet.FlagSYN
	flagRST = packet.FlagRST
	flagACK = packet.FlagACK
)

// tcpNext is the TCP state machine: the state after a packet with flags
// travelling in dir, given the directions that have sent a FIN so far.
func tcpNext(s State, fins uint8, dir uint8, flags uint8) (State, uint8) {
	if flags&flagRST != 0 {
		return StateClosed, fins
	}
	if s == StateClosed {
		return s, fins
	}
	if flags&flagFIN != 0 {
		fins |= dir
		if fins == dirOut|dirIn {
			return StateClosing, fins
		}
		return StateFinWait, fins
	}
	switch {
	case dir == dirIn && flags&(flagSYN|flagACK) == flagSYN|flagACK:
		if s == StateSynSent {
			return StateSynReceived, fins
		}
	case dir == dirIn && flags&flagSYN == 0:
		if s == StateUnreplied {
			return StateEstablished, fins
		}
	case dir == dirOut && flags&(flagSYN|flagACK) == flagACK:
		if s == StateSynReceived {
			return StateEstablished, fins
		}
	}
	return s, fins
}

// udpNext is the UDP state machine.
func udpNext(s State, dir uint8) State {
	if dir == dirIn {
		return StateReplied
	}
	return s
}

// key is a flow's 5-tuple, in the direction a packet travels.
type key = packet.Tuple

// key4 is the conntrack key of an IPv4 flow: its tuple with 4-byte
// addresses. IPv6 flows are keyed by their whole tuple, in maps of their
// own (a 38-byte key costs IPv4's flows more to hash and compare).
type key4 struct {
	src, dst     [4]byte
	sport, dport uint16
	proto        uint8
}

// pack4 returns the key4 of k, an IPv4 tuple.
func pack4(k *key) key4 {
	return key4{src: [4]byte(k.Src[12:]), dst: [4]byte(k.Dst[12:]), sport: k.SPort, dport: k.DPort, proto: k.Proto}
}

// keys4 are an IPv4 flow's two conntrack keys.
//
// A key4 is written field by field (4, 4, 2, 2 and 1 bytes) and the map
// hashes it with one 16-byte load, which the CPU cannot forward from those
// stores: the load waits until they are written to the cache, and stores
// are written in order, after every older instruction, so a key packed
// after a map operation that misses the cache (they all do in a large
// table) waits for that miss, and the misses of the next operation no
// longer overlap it. Keys are therefore packed before the shard's maps are
// touched, and passed by pointer: packed just before each delete and
// insert, BenchmarkNewFlows was 40% slower than with keys stored in the
// entry (423 → 602 ns).
type keys4 struct{ orig, reply key4 }

// entry is one tracked flow. All fields are guarded by the shard's mutex.
type entry struct {
	orig key      // client → VIP, as the client sends it
	be   *backend // the reply tuple is be's address and port back to orig's source (reply)

	created, last int64 // nanoseconds on the Balancer's clock
	state         State
	fins          uint8
	protected     bool // which list the entry is on

	prev, next *entry
}

// reply returns e's reply tuple, backend → client, as the backend
// answers. It is not stored: an entry of 38 bytes less (80 → 128 bytes
// per flow had made new flows a fifth slower, by their cache misses).
func (e *entry) reply() key {
	return key{Src: e.be.addr, Dst: e.orig.Src, SPort: e.backendPort(), DPort: e.orig.SPort, Proto: e.orig.Proto}
}

// reply4 is pack4(e.reply()) for an IPv4 flow, without the tuple.
func (e *entry) reply4() key4 {
	return key4{src: [4]byte(e.be.addr[12:]), dst: [4]byte(e.orig.Src[12:]), sport: e.backendPort(), dport: e.orig.SPort, proto: e.orig.Proto}
}

// backendPort is the port of e's backend the flow goes to: the backend's,
// or the client's destination port when it has none.
func (e *entry) backendPort() uint16 {
	if p := e.be.port; p != 0 {
		return p
	}
	return e.orig.DPort
}

// list is an intrusive LRU list of entries: front is least recently used.
type list struct{ head, tail *entry }

func (l *list) pushBack(e *entry) {
	e.prev, e.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
}

func (l *list) remove(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// counters are a shard's statistics.
type counters struct {
	newFlows, hits, replyHits, evictions, expired, refused, resets, noService, noBackend, conflicts, invalid uint64
}

// shard is one lock's worth of the connection-tracking table. Both keys of
// a flow hash to the same shard (the shard is chosen by the client's
// address, port and protocol), so one lock covers both directions.
type shard struct {
	mu       sync.Mutex      // guards everything below
	byOrig   map[key4]*entry // IPv4 flows by orig
	byReply  map[key4]*entry // IPv4 flows by reply
	byOrig6  map[key]*entry  // IPv6 flows by orig
	byReply6 map[key]*entry  // IPv6 flows by reply
	lru      [2]list         // [0]: unprotected, [1]: protected (established, replied)
	n        int
	free     *entry // recycled entries, linked through next
	c        counters
	_        [64]byte // keep shards' hot fields on separate cache lines
}

// Balancer balances flows to service VIPs. Outbound, Inbound, Flows and
// Stats may be called concurrently with each other and with Set.
type Balancer struct {
	opts      Options
	tableSize uint64
	now       func() time.Time
	epoch     time.Time
	seed      maphash.Seed // keys the shard and backend-selection hashes

	timeouts   [2][numStates]int64 // [0]: TCP, [1]: UDP
	maxTimeout int64

	snap  atomic.Pointer[snapshot]
	setMu sync.Mutex // serialises Set

	shards    []shard
	shardMask uint64
	perShard  int

	malformed, fragments atomic.Uint64
	coarse               atomic.Int64 // coarse clock, 0 when not running

	runMu   sync.Mutex // guards cancel, done, closed
	cancel  context.CancelFunc
	done    chan struct{}
	closed  bool
	started bool
}

// New returns a Balancer with no services.
func New(opts Options) (*Balancer, error) {
	if opts.MaxFlows == 0 {
		opts.MaxFlows = DefaultMaxFlows
	}
	if opts.MaxFlows < 0 {
		return nil, fmt.Errorf("lb: MaxFlows %d is negative", opts.MaxFlows)
	}
	if opts.TableSize == 0 {
		opts.TableSize = maglev.DefaultSize
	}
	if _, err := maglev.New(nil, opts.TableSize); err != nil {
		return nil, fmt.Errorf("lb: TableSize: %w", err)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.SynTimeout, DefaultSynTimeout)
	def(&opts.EstablishedTimeout, DefaultEstablishedTimeout)
	def(&opts.FinTimeout, DefaultFinTimeout)
	def(&opts.CloseTimeout, DefaultCloseTimeout)
	def(&opts.UDPTimeout, DefaultUDPTimeout)
	def(&opts.SweepInterval, DefaultSweepInterval)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &Balancer{opts: opts, tableSize: opts.TableSize, now: opts.Now, seed: maphash.MakeSeed()}
	b.epoch = b.now()
	tcp, udp := &b.timeouts[0], &b.timeouts[1]
	tcp[StateSynSent] = int64(opts.SynTimeout)
	tcp[StateSynReceived] = int64(opts.SynTimeout)
	tcp[StateUnreplied] = int64(opts.SynTimeout)
	tcp[StateEstablished] = int64(opts.EstablishedTimeout)
	tcp[StateFinWait] = int64(opts.FinTimeout)
	tcp[StateClosing] = int64(opts.CloseTimeout)
	tcp[StateClosed] = int64(opts.CloseTimeout)
	udp[StateUnreplied] = int64(opts.UDPTimeout)
	udp[StateReplied] = int64(opts.UDPTimeout)
	udp[StateClosed] = int64(opts.CloseTimeout)
	for _, t := range b.timeouts {
		for _, v := range t {
			b.maxTimeout = max(b.maxTimeout, v)
		}
	}
	// One shard per 1024 flows, a power of two between 1 and 64.
	n := 1
	for n < 64 && n*2*1024 <= opts.MaxFlows {
		n *= 2
	}
	b.shards = make([]shard, n)
	b.shardMask = uint64(n - 1)
	b.perShard = (opts.MaxFlows + n - 1) / n
	for i := range b.shards {
		b.shards[i].byOrig = make(map[key4]*entry)
		b.shards[i].byReply = make(map[key4]*entry)
		b.shards[i].byOrig6 = make(map[key]*entry)
		b.shards[i].byReply6 = make(map[key]*entry)
	}
	b.snap.Store(emptySnapshot)
	return b, nil
}

// nanos returns the Balancer's clock: nanoseconds since New. While the
// goroutine started by Start runs, it is a coarse clock (clockTick) that
// costs one atomic load instead of a clock read per packet.
func (b *Balancer) nanos() int64 {
	if c := b.coarse.Load(); c != 0 {
		return c
	}
	return b.preciseNanos()
}

func (b *Balancer) preciseNanos() int64 { return int64(b.now().Sub(b.epoch)) + 1 }

// clockTick is the resolution of the coarse clock.
const clockTick = 100 * time.Millisecond

// shardFor returns the shard of the flows of one client address, port and
// protocol.
func (b *Balancer) shardFor(client *[16]byte, port uint16, proto uint8) *shard {
	var buf [19]byte
	n := 7
	if packet.Is4(*client) {
		copy(buf[:4], client[12:])
		buf[4], buf[5], buf[6] = byte(port>>8), byte(port), proto
	} else {
		copy(buf[:16], client[:])
		buf[16], buf[17], buf[18] = byte(port>>8), byte(port), proto
		n = 19
	}
	h := maphash.Bytes(b.seed, buf[:n])
	return &b.shards[h&b.shardMask]
}

// flowHash is the keyed hash of a 5-tuple that selects a new flow's backend.
func (b *Balancer) flowHash(k *key) uint64 {
	var buf [37]byte
	n := 8
	if k.Is4() {
		copy(buf[:4], k.Src[12:])
		copy(buf[4:8], k.Dst[12:])
	} else {
		copy(buf[:16], k.Src[:])
		copy(buf[16:32], k.Dst[:])
		n = 32
	}
	buf[n], buf[n+1], buf[n+2], buf[n+3], buf[n+4] = byte(k.SPort>>8), byte(k.SPort), byte(k.DPort>>8), byte(k.DPort), k.Proto
	return maphash.Bytes(b.seed, buf[:n+5])
}

// origLocked and replyLocked return the flow whose orig (reply) tuple is
// k, or nil.
func (s *shard) origLocked(k *key) *entry {
	if k.Is4() {
		return s.byOrig[pack4(k)]
	}
	return s.byOrig6[*k]
}

func (s *shard) replyLocked(k *key) *entry {
	if k.Is4() {
		return s.byReply[pack4(k)]
	}
	return s.byReply6[*k]
}

func (b *Balancer) timeout(e *entry) int64 {
	if e.orig.Proto == uint8(UDP) {
		return b.timeouts[1][e.state]
	}
	return b.timeouts[0][e.state]
}

func (b *Balancer) expired(e *entry, now int64) bool { return now-e.last > b.timeout(e) }

// touchLocked records activity on e at now and moves it to the back of the
// list its state belongs to.
func (s *shard) touchLocked(e *entry, now int64) {
	e.last = now
	p := e.state.protected()
	s.lru[boolIdx(e.protected)].remove(e)
	e.protected = p
	s.lru[boolIdx(p)].pushBack(e)
}

func boolIdx(b bool) int {
	if b {
		return 1
	}
	return 0
}

// removeLocked deletes e from the shard and recycles it.
func (s *shard) removeLocked(e *entry) {
	var k keys4
	if e.orig.Is4() {
		k = keys4{pack4(&e.orig), e.reply4()} // both before either delete (keys4)
	}
	s.removeKeysLocked(e, &k)
}

// removeKeysLocked is removeLocked with e's keys packed by the caller
// when e is an IPv4 flow.
func (s *shard) removeKeysLocked(e *entry, k4 *keys4) {
	if e.orig.Is4() {
		delete(s.byOrig, k4.orig)
		delete(s.byReply, k4.reply)
	} else {
		delete(s.byOrig6, e.orig)
		delete(s.byReply6, e.reply())
	}
	s.lru[boolIdx(e.protected)].remove(e)
	s.n--
	*e = entry{next: s.free}
	s.free = e
}

// insertLocked adds a new flow: orig and reply are its tuples, k4 its
// keys when it is an IPv4 flow (packed by the caller before it touched
// the maps: keys4).
func (s *shard) insertLocked(orig, reply *key, k4 *keys4, be *backend, st State, now int64) *entry {
	e := s.free
	if e != nil {
		s.free = e.next
		e.next = nil
	} else {
		e = new(entry)
	}
	*e = entry{orig: *orig, be: be, created: now, last: now, state: st, protected: st.protected()}
	if orig.Is4() {
		s.byOrig[k4.orig] = e
		s.byReply[k4.reply] = e
	} else {
		s.byOrig6[*orig] = e
		s.byReply6[*reply] = e
	}
	s.lru[boolIdx(e.protected)].pushBack(e)
	s.n++
	return e
}

// victimLocked returns the flow makeRoomLocked would remove from s: an
// expired protected flow first, then the least recently used unprotected
// flow; nil when every flow is protected and live.
func (b *Balancer) victimLocked(s *shard, now int64) *entry {
	if e := s.lru[1].head; e != nil && b.expired(e, now) {
		return e
	}
	return s.lru[0].head
}

// makeRoomLocked frees one slot in a full shard, removing its
// victimLocked. It reports false when every flow is protected and live.
// v and vk are a victim and its keys the caller packed before it touched
// the maps (keys4), or nil.
func (b *Balancer) makeRoomLocked(s *shard, now int64, v *entry, vk *keys4) bool {
	e := b.victimLocked(s, now)
	if e == nil {
		return false
	}
	if b.expired(e, now) {
		s.c.expired++
	} else {
		s.c.evictions++
	}
	if e == v {
		s.removeKeysLocked(e, vk)
	} else {
		s.removeLocked(e)
	}
	return true
}

// Sweep removes every expired flow. The sweeper started by Start calls it
// every Options.SweepInterval.
func (b *Balancer) Sweep() {
	now := b.nanos()
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		for l := range s.lru {
			for e := s.lru[l].head; e != nil; {
				next := e.next
				if b.expired(e, now) {
					s.removeLocked(e)
					s.c.expired++
				}
				e = next
			}
		}
		s.mu.Unlock()
	}
	b.pruneRetired(now)
}

// pruneRetired drops the former VIPs and backend addresses that have been
// gone for maxTimeout from the prefilters, as Set does: a balancer whose
// services do not change (Set is called on changes only) forgets them
// too, and passes traffic to such an address again.
func (b *Balancer) pruneRetired(now int64) {
	b.setMu.Lock()
	defer b.setMu.Unlock()
	old := b.snap.Load()
	stale := func(m addrSet) bool {
		for _, t := range m.all() {
			if t >= 0 && now-t >= b.maxTimeout {
				return true
			}
		}
		return false
	}
	if !stale(old.vips) && !stale(old.backendIPs) {
		return
	}
	live := func(t int64) bool { return t < 0 || now-t < b.maxTimeout }
	next := *old
	next.vips, next.backendIPs = old.vips.filter(live), old.backendIPs.filter(live)
	b.snap.Store(&next)
}

// Start starts the goroutine that sweeps expired flows every
// Options.SweepInterval and keeps a coarse clock (100 ms resolution) for
// the packet path; it runs until ctx is done or Close is called. Start may
// be called once.
func (b *Balancer) Start(ctx context.Context) error {
	b.runMu.Lock()
	defer b.runMu.Unlock()
	if b.closed {
		return errors.New("lb: Start after Close")
	}
	if b.started {
		return errors.New("lb: already started")
	}
	b.started = true
	ctx, b.cancel = context.WithCancel(ctx)
	b.done = make(chan struct{})
	b.coarse.Store(b.preciseNanos())
	go func() {
		defer close(b.done)
		defer b.coarse.Store(0)
		tick := min(clockTick, b.opts.SweepInterval)
		sweepEvery := int(b.opts.SweepInterval / tick)
		t := time.NewTicker(tick)
		defer t.Stop()
		for n := 1; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				b.coarse.Store(b.preciseNanos())
				if n%sweepEvery == 0 {
					b.Sweep()
				}
			}
		}
	}()
	return nil
}

// Close stops the sweeper and waits for it. The Balancer keeps working
// without it. Close is safe to call twice.
func (b *Balancer) Close() error {
	b.runMu.Lock()
	defer b.runMu.Unlock()
	b.closed = true
	if b.cancel != nil {
		b.cancel()
		<-b.done
		b.cancel = nil
	}
	return nil
}
