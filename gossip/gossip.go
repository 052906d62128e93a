package gossip

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// Errors callers branch on.
var (
	// ErrNotOwner: the entry belongs to another node; only its owner may
	// change or delete it.
	ErrNotOwner = errors.New("gossip: entry is owned by another node")
	// ErrNotFound: no live entry under that key.
	ErrNotFound = errors.New("gossip: no such entry")
	// ErrNotJoined: the node does not participate in the network.
	ErrNotJoined = errors.New("gossip: not participating in the network")
	// ErrClosed: the Gossip was closed.
	ErrClosed = errors.New("gossip: closed")
)

// OwnerError is the error of a Put or Delete of another node's live
// entry: Owner is the name of the node that holds it. It matches
// ErrNotOwner (errors.Is).
type OwnerError struct {
	Table, Network, Key string
	Owner               string
}

func (e *OwnerError) Error() string {
	return fmt.Sprintf("%v: %s/%s/%s belongs to %s", ErrNotOwner, e.Table, e.Network, e.Key, e.Owner)
}

// Unwrap returns ErrNotOwner.
func (e *OwnerError) Unwrap() error { return ErrNotOwner }

// tableNet is the reserved cluster-wide table of network participation:
// key network+"\x00"+node, owned by node, value the network name.
const tableNet = "gossip.net"

// Gossip is one node's membership and replicated tables. All methods are safe
// for concurrent use. After Close, writes return ErrClosed and reads see the
// last state.
type Gossip struct {
	cfg   *config
	log   *zap.Logger
	name  string
	addr  string // own memberlist address, IP:port
	ml    *memberlist.Memberlist
	stats counters

	globalQ *memberlist.TransmitLimitedQueue // deltas of network "", sent by memberlist
	nUp     atomic.Int32                     // len(up), for globalQ.NumNodes
	leaving atomic.Bool                      // sent in the metadata by Leave
	overCap atomic.Bool                      // the last push/pull state left out the global entries

	mu       sync.Mutex                 // guards the fields below
	clock    uint64                     // Lamport clock
	nets     map[string]*netState       // stored networks: "" and joined ones (and ones being left)
	joined   map[string]bool            // networks this node participates in
	up       map[string]bool            // nodes alive or suspect, self included
	down     map[string]time.Time       // owners known down (or never seen up), since when
	parts    map[string]map[string]bool // network → participating nodes (live gossip.net entries)
	members  map[string]*Member         // every node seen, dead and left ones included
	mlNodes  map[string]memberlist.Node // copies of the live nodes, taken in the event callbacks
	watchers map[*watcher[Event]]watchKey
	mwatch   map[*watcher[MemberEvent]]struct{}
	seeds    []string
	pending  map[syncTask]bool      // queued bulk syncs, to drop duplicates
	parked   map[syncTask]time.Time // bulk syncs to nodes not yet known alive, since when
	intros   map[string]intro       // nodes that said hello and memberlist has not reported, by name
	closed   bool
	left     bool // Leave was called: rejoin nothing

	syncCh     chan syncTask
	introCh    chan []string // addresses to exchange state with (maintLoop)
	directKick chan struct{} // fresh own entries to send (gossipLoop)
	stop       chan struct{}
	wg         sync.WaitGroup
	closeOnce  sync.Once
}

type netState struct {
	entries map[ekey]*record
	sum     uint64                           // XOR of entryHash over live (non-deleted) records: the sync digest
	q       *memberlist.TransmitLimitedQueue // deltas for the network's participants (nil for "")
	nparts  atomic.Int32                     // participants, for q.NumNodes
	fresh   []ekey                           // own entries written since the last gossip round, in order
	isFresh map[ekey]bool                    // the keys in fresh
}

// maxDirectPackets bounds the packets of own deltas sent to each peer of a
// network per gossip round; the rest wait for the next round.
const maxDirectPackets = 8

type ekey struct{ table, key string }

type record struct {
	Entry
	recv    time.Time // local receive or write time, for reaping
	visible bool      // last visibility reported to watchers
	adopted bool      // own entry learned from the cluster (an earlier run), not written by this run
}

type watchKey struct{ table, network string }

type syncTask struct {
	node    string
	network string
	reply   bool // the receiver answers with its own versions of the network
	own     bool // only this node's own entries: a new participant catching up
}

// maxParked bounds the bulk syncs waiting for their node to be known.
const maxParked = 1024

// New creates the memberlist and starts gossiping; the node is alone until
// Join. Close releases everything.
func New(opts Options) (*Gossip, error) {
	cfg, err := opts.config()
	if err != nil {
		return nil, err
	}
	g := &Gossip{
		cfg:        cfg,
		log:        cfg.Logger.Named("gossip").With(zap.String("node", opts.Name)),
		name:       opts.Name,
		nets:       map[string]*netState{},
		joined:     map[string]bool{},
		up:         map[string]bool{opts.Name: true},
		down:       map[string]time.Time{},
		parts:      map[string]map[string]bool{},
		members:    map[string]*Member{},
		mlNodes:    map[string]memberlist.Node{},
		watchers:   map[*watcher[Event]]watchKey{},
		mwatch:     map[*watcher[MemberEvent]]struct{}{},
		pending:    map[syncTask]bool{},
		parked:     map[syncTask]time.Time{},
		intros:     map[string]intro{},
		introCh:    make(chan []string, 1),
		directKick: make(chan struct{}, 1),
		syncCh:     make(chan syncTask, 256),
		stop:       make(chan struct{}),
	}
	g.nUp.Store(1)
	g.nets[""] = &netState{entries: map[ekey]*record{}}
	g.globalQ = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(g.nUp.Load()) },
		RetransmitMult: cfg.ml.RetransmitMult,
	}
	d := &delegate{g: g}
	cfg.ml.Delegate = d
	cfg.ml.Events = d
	if err := cfg.listen(); err != nil { // transport.go (hardening): sockets whose dials Close ends
		return nil, err
	}
	ml, err := memberlist.Create(cfg.ml)
	if err != nil {
		cfg.unlisten() // transport.go (hardening)
		return nil, fmt.Errorf("gossip: start memberlist: %w", err)
	}
	g.ml = ml
	g.addr = ml.LocalNode().Address()
	g.wg.Add(3)
	go g.gossipLoop()
	go g.syncLoop()
	go g.maintLoop()
	return g, nil
}

// Name is the node's name.
func (g *Gossip) Name() string { return g.name }

// Addr is the address peers reach this node's memberlist on.
func (g *Gossip) Addr() string { return g.addr }

// Join contacts seeds (IP:port) until at least one answers or ctx ends,
// retrying with exponential backoff. The seeds are remembered: until Close,
// any seed that is not a live member is joined again every RejoinInterval,
// so a node that lost its seeds (partition, restart) finds the cluster again.
func (g *Gossip) Join(ctx context.Context, seeds []string) error {
	g.mu.Lock()
	if g.closed || g.left {
		g.mu.Unlock()
		return ErrClosed
	}
	for _, s := range seeds {
		if !slices.Contains(g.seeds, s) {
			g.seeds = append(g.seeds, s)
		}
	}
	g.mu.Unlock()
	backoff := 50 * time.Millisecond
	for {
		n, err := g.ml.Join(seeds)
		if n > 0 {
			g.joinSucceeded(seeds, n) // join.go (hardening)
			g.introduce(seeds)
			g.hello()
			g.syncJoined()
			return nil
		}
		err = g.joinFailed(seeds, err) // join.go (hardening): explained, kept in Stats, logged once per change
		select {
		case <-ctx.Done():
			return joinContextError(err, ctx.Err())
		case <-g.stop:
			return ErrClosed
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// introduce exchanges state (a memberlist push/pull) with a few random
// members besides the seeds, so that more of the cluster hears of this
// node at once: the others learn it from memberlist's broadcast of its
// arrival, which takes a few gossip rounds more per tenfold of nodes, and
// until then they hide its entries and send it nothing.
func (g *Gossip) introduce(seeds []string) {
	g.mu.Lock()
	var addrs []string
	for name, n := range g.mlNodes {
		if a := n.Address(); name != g.name && !slices.Contains(seeds, a) {
			addrs = append(addrs, a)
		}
	}
	g.mu.Unlock()
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	addrs = addrs[:min(len(addrs), introduceTo)]
	if len(addrs) > 0 {
		// In maintLoop: a member that died unnoticed would hold Join
		// for the TCP timeout.
		select {
		case g.introCh <- addrs:
		default:
		}
	}
}

// intro is a hello from a node memberlist has not reported here.
type intro struct {
	addr  netip.AddrPort
	since time.Time
}

// maxIntros bounds the hellos waiting to be checked.
const maxIntros = 64

// hello tells every member this node knows its name and address. One that
// does not hear of it from memberlist within a few gossip rounds (its
// broadcast of a node's arrival misses a node now and then, and only
// push/pull, 30 s or more away, repairs that) exchanges state with it
// (introsDueLocked): until then it would hide this node's entries and
// send it nothing.
func (g *Gossip) hello() {
	ap, err := netip.ParseAddrPort(g.addr)
	if err != nil {
		return
	}
	b := encodeHello(g.name, ap)
	for name, n := range g.nodeMap() {
		if name == g.name {
			continue
		}
		if err := g.ml.SendBestEffort(n, b); err != nil {
			g.stats.drop("send_failed")
			continue
		}
		g.stats.msgsOut.Add(1)
		g.stats.bytesOut.Add(uint64(len(b)))
	}
}

// introsDueLocked returns the addresses of the nodes that said hello more
// than three gossip rounds ago and that memberlist has still not reported,
// and forgets the hellos of the nodes it has.
func (g *Gossip) introsDueLocked(now time.Time) []string {
	var due []string
	for name, in := range g.intros {
		if _, ok := g.mlNodes[name]; ok {
			delete(g.intros, name)
		} else if now.Sub(in.since) > 3*g.cfg.gossipInterval {
			due = append(due, in.addr.String())
		}
	}
	return due
}

// introduceTo is how many members besides the seeds a joining node
// exchanges state with.
const introduceTo = 3

// syncJoined fetches the state of every joined network from a few of its
// participants, as JoinNetwork does: a node that joined its networks
// before it found the cluster (a restart) would otherwise wait for
// push/pull anti-entropy (30 s at the default profile) to learn them.
//
// It also queues this node's own cluster-wide entries (its network
// participation among them) for broadcast again: written before the node
// had found anyone, their first broadcasts reached nobody, and the nodes
// that joined earlier would otherwise learn them only at the next
// push/pull.
func (g *Gossip) syncJoined() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ns := g.nets[""]; ns != nil {
		for _, r := range ns.entries {
			if r.Owner == g.name {
				g.announceLocked(ns, &r.Entry)
			}
		}
	}
	for network := range g.joined {
		ps := g.participantsLocked(network)
		rand.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		for _, p := range ps[:min(len(ps), 3)] {
			g.queueSyncLocked(syncTask{node: p, network: network, reply: true})
		}
	}
}

// Leave tells the cluster this node is leaving, waiting at most timeout for
// the message to spread. Peers hide the node's entries as for a dead node;
// they come back if the node returns with the same name. Call Close after.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.mu.Lock()
	closed := g.closed
	g.left = true
	g.mu.Unlock()
	if closed {
		return ErrClosed // memberlist panics on a Leave after Shutdown
	}
	return g.leave(timeout) // lifecycle.go (hardening): timeout bounds the whole
}

// Close stops gossiping without telling anyone (peers see the node die),
// stops every goroutine and closes all watch channels. Safe to call twice.
func (g *Gossip) Close() error {
	var err error
	g.closeOnce.Do(func() {
		g.mu.Lock()
		g.closed = true
		g.mu.Unlock()
		err = g.shutdown() // lifecycle.go (hardening): sockets first, then the loops
		close(g.stop)
		g.wg.Wait()
		g.mu.Lock()
		for w := range g.watchers {
			w.close()
		}
		for w := range g.mwatch {
			w.close()
		}
		clear(g.watchers)
		clear(g.mwatch)
		g.mu.Unlock()
	})
	return err
}

// Stats returns a snapshot of the counters.
func (g *Gossip) Stats() Stats { return g.snapshot() } // snapshot: stats.go (hardening)

func validName(s string, max int) bool {
	return s != "" && len(s) <= max && !strings.ContainsRune(s, 0)
}

// JoinNetwork makes this node a participant of network: from now on it
// stores and receives the network's entries and may write its own. The
// participation is itself a cluster-wide entry, so peers learn whom to send
// the network's deltas to. The current state is fetched from a few
// participants at once and from every push/pull partner whose digest differs.
func (g *Gossip) JoinNetwork(network string) error {
	if !validName(network, MaxNetworkLen) {
		return fmt.Errorf("gossip: network name %q must be 1 to %d bytes without NUL", network, MaxNetworkLen)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	if g.joined[network] {
		return nil
	}
	g.joined[network] = true
	g.netLocked(network)
	g.putLocked(tableNet, "", network+"\x00"+g.name, []byte(network), false)
	n := 0
	for _, p := range g.participantsLocked(network) {
		if n == 3 {
			break
		}
		g.queueSyncLocked(syncTask{node: p, network: network, reply: true})
		n++
	}
	return nil
}

// LeaveNetwork stops participating in network: this node's entries in it
// are deleted (tombstones are still sent to the participants), the others
// are dropped locally, and watchers of the network see them deleted.
func (g *Gossip) LeaveNetwork(network string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	if !g.joined[network] {
		return nil
	}
	ns := g.nets[network]
	for k, r := range ns.entries {
		if r.Owner == g.name && !r.Deleted {
			g.putLocked(k.table, network, k.key, nil, true)
		}
	}
	g.putLocked(tableNet, "", network+"\x00"+g.name, nil, true)
	delete(g.joined, network)
	for k, r := range ns.entries {
		if r.Owner != g.name {
			g.setVisibleLocked(r, false)
			g.removeLocked(ns, k, r)
		}
	}
	return nil
}

// Networks returns the networks this node participates in, sorted.
func (g *Gossip) Networks() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var ns []string
	for n := range g.joined {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

// Participants returns the live nodes participating in network, sorted.
func (g *Gossip) Participants(network string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	ps := g.participantsLocked(network)
	if g.joined[network] {
		ps = append(ps, g.name)
	}
	slices.Sort(ps)
	return ps
}

// participantsLocked returns the up participants of network other than self.
func (g *Gossip) participantsLocked(network string) []string {
	var ps []string
	for p, ok := range g.parts[network] {
		if ok && p != g.name && g.up[p] {
			ps = append(ps, p)
		}
	}
	return ps
}

func (g *Gossip) checkWrite(table, network, key string) error {
	if !validName(table, MaxTableLen) || strings.HasPrefix(table, "gossip.") {
		return fmt.Errorf("gossip: table name %q must be 1 to %d bytes, not starting with \"gossip.\"", table, MaxTableLen)
	}
	if len(network) > MaxNetworkLen {
		return fmt.Errorf("gossip: network name %q longer than %d bytes", network, MaxNetworkLen)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("gossip: key %q longer than %d bytes", key, MaxKeyLen)
	}
	if g.closed {
		return ErrClosed
	}
	if network != "" && !g.joined[network] {
		return fmt.Errorf("%w %q", ErrNotJoined, network)
	}
	return nil
}

// Put writes value under (table, network, key), owned by this node. It
// fails with an *OwnerError (ErrNotOwner) if another node holds a live
// entry under the key.
// value is copied; at most MaxValueLen bytes.
func (g *Gossip) Put(table, network, key string, value []byte) error {
	if len(value) > MaxValueLen {
		return fmt.Errorf("gossip: value of %d bytes, at most %d", len(value), MaxValueLen)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.checkWrite(table, network, key); err != nil {
		return err
	}
	if r := g.nets[network].entries[ekey{table, key}]; r != nil && r.Owner != g.name && !r.Deleted {
		return &OwnerError{Table: table, Network: network, Key: key, Owner: r.Owner}
	}
	if value == nil {
		value = []byte{}
	}
	g.putLocked(table, network, key, slices.Clone(value), false)
	return nil
}

// Delete deletes this node's entry under (table, network, key), leaving a
// tombstone. ErrNotFound if there is no live entry, an *OwnerError
// (ErrNotOwner) if it is another node's.
func (g *Gossip) Delete(table, network, key string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.checkWrite(table, network, key); err != nil {
		return err
	}
	r := g.nets[network].entries[ekey{table, key}]
	if r == nil || r.Deleted {
		return fmt.Errorf("%w: %s/%s/%s", ErrNotFound, table, network, key)
	}
	if r.Owner != g.name {
		return &OwnerError{Table: table, Network: network, Key: key, Owner: r.Owner}
	}
	g.putLocked(table, network, key, nil, true)
	return nil
}

// putLocked writes a local entry with the next Lamport time and queues its
// broadcast.
func (g *Gossip) putLocked(table, network, key string, value []byte, deleted bool) {
	g.clock++
	e := Entry{Table: table, Network: network, Key: key, Value: value, Owner: g.name, Time: g.clock, Deleted: deleted}
	if deleted {
		e.Value = nil
	}
	ns := g.netLocked(network)
	g.storeLocked(ns, e, time.Now(), false)
	g.announceLocked(ns, &e)
}

// announceLocked queues one of this node's own entries: sent directly to
// every peer of its network at once (gossipLoop), and to the epidemic
// queue (which also reaches the nodes this one does not know of yet).
// Epidemic broadcast alone misses a node now and then (each node passes a
// delta on a bounded number of times, to random peers, and the nodes that
// got it another way, by a bulk sync, pass it on to nobody), and what it
// misses waited for push/pull, 30 s.
func (g *Gossip) announceLocked(ns *netState, e *Entry) {
	g.broadcastLocked(ns, e)
	k := ekey{e.Table, e.Key}
	if ns.isFresh == nil {
		ns.isFresh = map[ekey]bool{}
	}
	if !ns.isFresh[k] {
		ns.isFresh[k] = true
		ns.fresh = append(ns.fresh, k)
	}
	g.kickDirect()
}

// kickDirect wakes gossipLoop to send the fresh own entries.
func (g *Gossip) kickDirect() {
	select {
	case g.directKick <- struct{}{}:
	default:
	}
}

// Get returns the visible entry under (table, network, key): not deleted,
// and its owner alive and participating in the network.
func (g *Gossip) Get(table, network, key string) (Entry, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ns := g.nets[network]
	if ns == nil {
		return Entry{}, false
	}
	r := ns.entries[ekey{table, key}]
	if r == nil || !g.visibleLocked(r) {
		return Entry{}, false
	}
	return r.Entry.clone(), true
}

// List returns the visible entries of table in network, sorted by key.
func (g *Gossip) List(table, network string) []Entry {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.listLocked(table, network)
}

// ListAll is List including the hidden live entries: those of dead nodes
// (kept DeadOwnerGrace) and of nodes that left the network. Tombstones are
// left out. For state that must stay reserved while its owner is away, such
// as address ranges and leases.
func (g *Gossip) ListAll(table, network string) []Entry {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.listFilterLocked(table, network, func(r *record) bool { return !r.Deleted })
}

func (g *Gossip) listLocked(table, network string) []Entry {
	return g.listFilterLocked(table, network, g.visibleLocked)
}

func (g *Gossip) listFilterLocked(table, network string, keep func(*record) bool) []Entry {
	ns := g.nets[network]
	if ns == nil {
		return nil
	}
	var es []Entry
	for k, r := range ns.entries {
		if k.table == table && keep(r) {
			es = append(es, r.Entry.clone())
		}
	}
	slices.SortFunc(es, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
	return es
}

// Digest returns a hash of every visible entry of network (all tables), in
// hex. Nodes that have converged return the same digest.
func (g *Gossip) Digest(network string) string {
	g.mu.Lock()
	var es []*Entry
	if ns := g.nets[network]; ns != nil {
		for _, r := range ns.entries {
			if g.visibleLocked(r) {
				es = append(es, &r.Entry)
			}
		}
	}
	slices.SortFunc(es, func(a, b *Entry) int {
		if c := strings.Compare(a.Table, b.Table); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	h := sha256.New()
	var buf []byte
	for _, e := range es {
		buf = appendEntry(buf[:0], e)
		h.Write(buf)
	}
	g.mu.Unlock()
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Watch returns a channel of the changes to table in network, and a
// function that cancels the watch and closes the channel. Delivery never
// blocks gossip: a watcher that falls more than WatchBuffer events behind
// loses the queued events and receives one EventResync, after which it must
// read the table again with List. The channel is closed by cancel or Close.
func (g *Gossip) Watch(table, network string) (<-chan Event, func()) {
	w := newWatcher(g.cfg.WatchBuffer, Event{Type: EventResync})
	g.mu.Lock()
	if g.closed {
		w.close()
	} else {
		g.watchers[w] = watchKey{table, network}
	}
	g.mu.Unlock()
	return w.ch, func() {
		g.mu.Lock()
		delete(g.watchers, w)
		w.close()
		g.mu.Unlock()
	}
}

// netLocked returns the state of network, creating it.
func (g *Gossip) netLocked(network string) *netState {
	ns := g.nets[network]
	if ns == nil {
		ns = &netState{entries: map[ekey]*record{}}
		ns.q = &memberlist.TransmitLimitedQueue{
			NumNodes:       func() int { return int(ns.nparts.Load()) + 1 },
			RetransmitMult: g.cfg.ml.RetransmitMult,
		}
		g.nets[network] = ns
	}
	return ns
}

// visibleLocked: a live entry whose owner is up and takes part in the network.
func (g *Gossip) visibleLocked(r *record) bool {
	if r.Deleted || !g.up[r.Owner] {
		return false
	}
	return r.Network == "" || g.parts[r.Network][r.Owner]
}

// setVisibleLocked reports a change of r's visibility to watchers.
func (g *Gossip) setVisibleLocked(r *record, vis bool) {
	if r.visible == vis {
		return
	}
	r.visible = vis
	t := EventDelete
	if vis {
		t = EventPut
	}
	g.notifyLocked(Event{Type: t, Entry: r.Entry})
}

func (g *Gossip) notifyLocked(ev Event) {
	k := watchKey{ev.Entry.Table, ev.Entry.Network}
	first := true
	for w, wk := range g.watchers {
		if wk != k {
			continue
		}
		if first {
			ev.Entry = ev.Entry.clone() // stored entries are never handed out
			first = false
		}
		w.send(ev)
	}
}

// entryHash is a well-mixed hash of a version's identity, XORed into the
// network's sync digest.
func entryHash(e *Entry) uint64 {
	h := fnv.New64a()
	h.Write([]byte(e.Table))
	h.Write([]byte{0})
	h.Write([]byte(e.Key))
	h.Write([]byte{0})
	h.Write([]byte(e.Owner))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], e.Time)
	h.Write(b[:])
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// storeLocked replaces the stored version of e's key with e (the caller has
// decided e wins) and reports the change to watchers.
func (g *Gossip) storeLocked(ns *netState, e Entry, now time.Time, adopted bool) {
	k := ekey{e.Table, e.Key}
	old := ns.entries[k]
	wasVisible := false
	if old != nil {
		wasVisible = old.visible
		if !old.Deleted {
			ns.sum ^= entryHash(&old.Entry)
		}
	}
	r := &record{Entry: e, recv: now, adopted: adopted}
	ns.entries[k] = r
	if !e.Deleted {
		ns.sum ^= entryHash(&r.Entry)
	}
	if !g.up[e.Owner] {
		if _, ok := g.down[e.Owner]; !ok {
			g.down[e.Owner] = now
		}
	}
	vis := g.visibleLocked(r)
	r.visible = vis
	switch {
	case vis:
		g.notifyLocked(Event{Type: EventPut, Entry: r.Entry})
	case wasVisible:
		g.notifyLocked(Event{Type: EventDelete, Entry: old.Entry})
	}
	if e.Table == tableNet && e.Network == "" {
		g.participationLocked(&r.Entry)
	}
}

func (g *Gossip) removeLocked(ns *netState, k ekey, r *record) {
	if !r.Deleted {
		ns.sum ^= entryHash(&r.Entry)
	}
	delete(ns.entries, k)
}

// participationLocked applies a changed gossip.net entry: the owner's
// entries in that network become visible or hidden.
func (g *Gossip) participationLocked(e *Entry) {
	network, node, ok := strings.Cut(e.Key, "\x00")
	if !ok || node != e.Owner {
		return
	}
	p := g.parts[network]
	if p == nil {
		p = map[string]bool{}
		g.parts[network] = p
	}
	was := p[node]
	if e.Deleted {
		delete(p, node)
	} else {
		p[node] = true
	}
	if !e.Deleted && !was && node != g.name && g.joined[network] {
		// A participant we did not know of. Every delta of ours sent
		// before now went to the participants we knew then, and its
		// epidemic may have died out before anyone knew of this one:
		// send it our own entries of the network (every live owner
		// does the same, so it gets each entry from its writer).
		g.queueSyncLocked(syncTask{node: node, network: network, own: true})
	}
	if ns := g.nets[network]; ns != nil {
		n := 0
		for q := range p {
			if q != g.name && g.up[q] {
				n++
			}
		}
		ns.nparts.Store(int32(n))
		g.revisitLocked(ns, node)
	}
}

// revisitLocked recomputes the visibility of owner's entries in ns.
func (g *Gossip) revisitLocked(ns *netState, owner string) {
	for _, r := range ns.entries {
		if r.Owner == owner {
			g.setVisibleLocked(r, g.visibleLocked(r))
		}
	}
}

// mergeLocked merges a remote version into the table and reports whether
// it changed anything (so that a delta is relayed).
func (g *Gossip) mergeLocked(e Entry, now time.Time) bool {
	if e.Network != "" && !g.joined[e.Network] {
		g.stats.drop("not_participating")
		return false
	}
	g.clock = max(g.clock, e.Time)
	ns := g.netLocked(e.Network)
	cur := ns.entries[ekey{e.Table, e.Key}]
	if e.Owner == g.name && cur != nil && cur.Owner == g.name && !cur.adopted {
		// Our own key, written by this run. We are its only writer, so a
		// different version at the same or a later time comes from an
		// earlier run of this node (or is forged): re-assert ours above it,
		// so a stale tombstone can never hide a live entry.
		c := compareEntries(&e, &cur.Entry)
		if c == 0 || e.Time < cur.Time {
			return false
		}
		g.clock++
		re := cur.Entry
		re.Time = g.clock
		g.storeLocked(ns, re, now, false)
		g.announceLocked(ns, &re)
		g.stats.reasserts.Add(1)
		return false
	}
	if cur != nil && compareEntries(&e, &cur.Entry) <= 0 {
		return false
	}
	g.storeLocked(ns, e, now, e.Owner == g.name)
	g.stats.entriesIn.Add(1)
	return true
}

// broadcast is a delta in a TransmitLimitedQueue; a newer version of the
// same key replaces it.
type broadcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*broadcast)(nil)

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	nb, ok := o.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.name
}
func (b *broadcast) Name() string    { return b.name }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

// broadcastLocked queues e for gossip: cluster-wide entries ride
// memberlist's own broadcasts (to every node), a network's entries go to a
// queue that gossipLoop sends to the network's participants only.
func (g *Gossip) broadcastLocked(ns *netState, e *Entry) {
	name := e.Table + "\x00" + e.Network + "\x00" + e.Key
	if e.Network == "" {
		g.globalQ.QueueBroadcast(&broadcast{name: name, msg: encodeDeltas([]Entry{*e})})
		return
	}
	ns.q.QueueBroadcast(&broadcast{name: name, msg: appendEntry(nil, e)})
}

// queueSyncLocked asks syncLoop to send a network's state to a node.
func (g *Gossip) queueSyncLocked(t syncTask) {
	if g.pending[t] {
		return
	}
	if t.own {
		full := syncTask{node: t.node, network: t.network}
		if g.pending[full] {
			return // a full sync carries our own entries too
		}
		if full.reply = true; g.pending[full] {
			return
		}
	}
	select {
	case g.syncCh <- t:
		g.pending[t] = true
	default:
		g.stats.drop("sync_queue_full")
	}
}

// handle processes one received message (a copy the caller gave up).
func (g *Gossip) handle(b []byte) {
	g.stats.bytesIn.Add(uint64(len(b)))
	m, err := decodeMessage(b)
	if err != nil {
		g.stats.drop(dropReason(err))
		return
	}
	g.stats.msgsIn.Add(1)
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	switch m.Type {
	case msgDeltas:
		for _, e := range m.Entries {
			if g.mergeLocked(e, now) {
				g.broadcastLocked(g.nets[e.Network], &e) // relay news
			}
		}
	case msgHello:
		if _, known := g.mlNodes[m.Sender]; !known && m.Sender != g.name {
			if _, ok := g.intros[m.Sender]; !ok && len(g.intros) < maxIntros && g.intros != nil {
				g.intros[m.Sender] = intro{addr: m.Addr, since: now}
			}
		}
	case msgBulk:
		// The participation entries a bulk sync of a network carries are
		// cluster-wide: kept whether or not this node takes part, and
		// relayed when new (their broadcast missed this node, and may have
		// missed others).
		rest := m.Entries[:0:0]
		for _, e := range m.Entries {
			if e.Network == m.Network {
				rest = append(rest, e)
			} else if g.mergeLocked(e, now) {
				g.broadcastLocked(g.nets[""], &e)
			}
		}
		m.Entries = rest
		if m.Network != "" && !g.joined[m.Network] {
			g.stats.drop("not_participating")
			return
		}
		for _, e := range m.Entries {
			g.mergeLocked(e, now)
		}
		if m.Flags&bulkReply != 0 && m.Sender != g.name {
			g.queueSyncLocked(syncTask{node: m.Sender, network: m.Network})
		}
	default:
		g.stats.drop("unexpected_type")
	}
}

// localState is the push/pull state: the cluster-wide entries (unless over
// the cap) and the sync digests of "" and the joined networks.
func (g *Gossip) localState() []byte {
	g.mu.Lock()
	var global []Entry
	for _, r := range g.nets[""].entries {
		global = append(global, r.Entry)
	}
	ds := []digest{{Network: "", Sum: g.nets[""].sum}}
	for n := range g.joined {
		ds = append(ds, digest{Network: n, Sum: g.nets[n].sum})
	}
	b := encodeState(g.name, global, true, ds)
	g.mu.Unlock()
	g.overCap.Store(len(b) > g.cfg.MaxPushPullBytes)
	if len(b) > g.cfg.MaxPushPullBytes {
		g.stats.stateOverCap.Add(1)
		b = encodeState(g.name, nil, false, ds)
	}
	g.stats.msgsOut.Add(1)
	g.stats.bytesOut.Add(uint64(len(b)))
	return b
}

// mergeRemoteState merges a push/pull state. Networks both nodes take part
// in whose digests differ are repaired by a bulk sync, started by the node
// with the smaller name (both ends of a push/pull see the same difference).
func (g *Gossip) mergeRemoteState(b []byte) {
	g.stats.bytesIn.Add(uint64(len(b)))
	m, err := decodeMessage(b)
	if err == nil && m.Type != msgState {
		err = fmt.Errorf("gossip: push/pull: %w", errType)
	}
	if err != nil {
		g.stats.drop(dropReason(err))
		return
	}
	g.stats.msgsIn.Add(1)
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	for _, e := range m.Entries {
		g.mergeLocked(e, now)
	}
	if m.Sender == g.name || g.name > m.Sender {
		return
	}
	for _, d := range m.Digests {
		if d.Network == "" && m.HasGlobal && !g.overCap.Load() {
			continue // both states carried their entries: merged on both ends
		}
		if d.Network != "" && !g.joined[d.Network] {
			continue
		}
		if g.nets[d.Network].sum != d.Sum {
			g.queueSyncLocked(syncTask{node: m.Sender, network: d.Network, reply: true})
		}
	}
}

// gossipLoop sends the networks' queued deltas to random participants
// every gossip interval.
func (g *Gossip) gossipLoop() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.gossipInterval)
	defer t.Stop()
	limit := g.cfg.ml.UDPBufferSize - 128 // encryption, label, compression and framing
	// Own writes go out at once (announceLocked kicks), batched over
	// minDirectGap, at most one round of them per gap.
	minDirectGap := g.cfg.gossipInterval / 20
	var lastDirect time.Time
	for {
		epidemic := true
		select {
		case <-g.stop:
			return
		case <-t.C:
		case <-g.directKick:
			epidemic = false
			wait := max(minDirectGap-time.Since(lastDirect), time.Millisecond)
			select {
			case <-g.stop:
				return
			case <-time.After(wait):
			}
		}
		type job struct {
			q       *memberlist.TransmitLimitedQueue
			targets []string
		}
		var jobs []job
		var directs []direct
		g.mu.Lock()
		if len(g.parked) > 0 {
			g.unparkLocked(time.Now())
		}
		if len(g.intros) > 0 {
			if due := g.introsDueLocked(time.Now()); len(due) > 0 {
				select {
				case g.introCh <- due:
					for name, in := range g.intros {
						if slices.Contains(due, in.addr.String()) {
							delete(g.intros, name)
						}
					}
				default: // maintLoop is busy: next round
				}
			}
		}
		for n, ns := range g.nets {
			if len(ns.fresh) > 0 {
				if d := g.directLocked(n, ns, limit); len(d.targets) > 0 {
					directs = append(directs, d)
				}
				if len(ns.fresh) > 0 {
					g.kickDirect() // more than one round's worth
				}
			}
		}
		if len(directs) > 0 {
			lastDirect = time.Now()
		}
		for n, ns := range g.nets {
			if !epidemic {
				break
			}
			if n == "" || ns.q.NumQueued() == 0 {
				continue
			}
			ps := g.participantsLocked(n)
			if len(ps) == 0 {
				if !g.joined[n] {
					ns.q.Reset()
				}
				continue
			}
			rand.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
			jobs = append(jobs, job{ns.q, ps[:min(len(ps), g.cfg.gossipNodes)]})
		}
		g.mu.Unlock()
		if len(jobs) == 0 && len(directs) == 0 {
			continue
		}
		nodes := g.nodeMap()
		for _, d := range directs {
			for _, name := range d.targets {
				n := nodes[name]
				if n == nil {
					continue
				}
				for _, b := range d.packets {
					if err := g.ml.SendBestEffort(n, b); err != nil {
						g.stats.drop("send_failed")
						continue
					}
					g.stats.msgsOut.Add(1)
					g.stats.bytesOut.Add(uint64(len(b)))
				}
			}
		}
		for _, j := range jobs {
			for _, name := range j.targets {
				n := nodes[name]
				if n == nil {
					continue // gone since: spend no transmit on it
				}
				msgs := j.q.GetBroadcasts(0, limit)
				if len(msgs) == 0 {
					break
				}
				b := appendHeader(nil, msgDeltas)
				b = binary.AppendUvarint(b, uint64(len(msgs)))
				for _, m := range msgs {
					b = append(b, m...)
				}
				if err := g.ml.SendBestEffort(n, b); err != nil {
					g.stats.drop("send_failed")
					continue
				}
				g.stats.msgsOut.Add(1)
				g.stats.bytesOut.Add(uint64(len(b)))
			}
		}
	}
}

// direct is one round of a network's own deltas for all its peers.
type direct struct {
	packets [][]byte
	targets []string
}

// directLocked takes the fresh own entries of a network (at most
// maxDirectPackets packets of them, the rest wait) and returns them packed
// for every peer: the network's participants, or every live node for "".
func (g *Gossip) directLocked(network string, ns *netState, limit int) direct {
	var d direct
	if network == "" {
		for p := range g.up {
			if p != g.name {
				d.targets = append(d.targets, p)
			}
		}
	} else {
		d.targets = g.participantsLocked(network)
	}
	var batch []Entry
	size, taken := 3, 0
	flush := func() {
		if len(batch) > 0 {
			d.packets = append(d.packets, encodeDeltas(batch))
			batch, size = nil, 3
		}
	}
	for _, k := range ns.fresh {
		if len(d.packets) == maxDirectPackets {
			break
		}
		taken++
		delete(ns.isFresh, k)
		r := ns.entries[k]
		if r == nil || r.Owner != g.name {
			continue // reaped, or taken over (an earlier run's, adopted back)
		}
		if l := entryLen(&r.Entry); size+l+binary.MaxVarintLen16 > limit {
			flush()
		}
		batch = append(batch, r.Entry)
		size += entryLen(&r.Entry)
	}
	flush()
	ns.fresh = append(ns.fresh[:0], ns.fresh[taken:]...)
	return d
}

// nodeMap returns copies of the live nodes. memberlist.Members hands out
// pointers that memberlist keeps writing to, so this package reads nodes
// only in its event callbacks, under memberlist's lock.
func (g *Gossip) nodeMap() map[string]*memberlist.Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := make(map[string]*memberlist.Node, len(g.mlNodes))
	for name, n := range g.mlNodes {
		m[name] = &n
	}
	return m
}

// syncLoop sends bulk syncs: all stored versions of a network (tombstones
// and hidden entries included), or only this node's own ones, in messages
// of at most MaxPushPullBytes. The first message carries the network's
// participation entries (cluster-wide), so the receiver knows at once whom
// the entries belong to and that the sender takes part. A sync to a node
// not yet known alive here waits for it (parkLocked).
func (g *Gossip) syncLoop() {
	defer g.wg.Done()
	for {
		var t syncTask
		select {
		case <-g.stop:
			return
		case t = <-g.syncCh:
		}
		g.mu.Lock()
		delete(g.pending, t)
		mn, known := g.mlNodes[t.node]
		if !known {
			g.parkLocked(t, time.Now())
			g.mu.Unlock()
			continue
		}
		es := g.syncEntriesLocked(t)
		g.mu.Unlock()
		n := &mn
		var flags byte
		if t.reply {
			flags = bulkReply
		}
		maxBytes := max(g.cfg.MaxPushPullBytes, 4096) - 64 - 2*MaxNameLen
		for first := true; first || len(es) > 0; first = false {
			size, i := 0, 0
			for ; i < len(es); i++ {
				l := entryLen(&es[i])
				if size+l > maxBytes && i > 0 {
					break
				}
				size += l
			}
			b := encodeBulk(g.name, t.network, flags, es[:i])
			es = es[i:]
			flags = 0
			if err := g.ml.SendReliable(n, b); err != nil {
				g.stats.drop("send_failed")
				break
			}
			g.stats.msgsOut.Add(1)
			g.stats.bytesOut.Add(uint64(len(b)))
		}
		g.stats.bulkSyncs.Add(1)
	}
}

// syncEntriesLocked returns what a bulk sync sends: the participation
// entries of the network first (all of them, or only this node's for an
// own-entries sync), then the network's stored versions.
func (g *Gossip) syncEntriesLocked(t syncTask) []Entry {
	var es []Entry
	if t.network != "" && !g.joined[t.network] {
		return nil
	}
	if t.network != "" {
		prefix := t.network + "\x00"
		for k, r := range g.nets[""].entries {
			if k.table == tableNet && strings.HasPrefix(k.key, prefix) && (!t.own || r.Owner == g.name) {
				es = append(es, r.Entry)
			}
		}
	}
	if ns := g.nets[t.network]; ns != nil {
		for _, r := range ns.entries {
			if !t.own || r.Owner == g.name {
				es = append(es, r.Entry)
			}
		}
	}
	return es
}

// parkLocked keeps a bulk sync to a node that memberlist has not yet
// reported alive here: a node that just joined the cluster asks its
// network's participants for their state before all of them have heard of
// it, and the answer would otherwise be lost. gossipLoop sends it as soon
// as the node is known, or drops it after a push/pull interval (by then
// anti-entropy has taken over).
func (g *Gossip) parkLocked(t syncTask, now time.Time) {
	if _, ok := g.parked[t]; ok {
		return
	}
	if len(g.parked) >= maxParked {
		g.stats.drop("sync_parked_full")
		return
	}
	g.parked[t] = now
}

// unparkLocked queues the parked syncs whose node is now known.
func (g *Gossip) unparkLocked(now time.Time) {
	for t, since := range g.parked {
		if _, ok := g.mlNodes[t.node]; ok {
			delete(g.parked, t)
			g.queueSyncLocked(t)
		} else if now.Sub(since) > g.cfg.PushPullInterval {
			delete(g.parked, t)
			g.stats.drop("sync_node_unknown")
		}
	}
}

// maintLoop reaps tombstones and the entries of long-dead owners, and
// re-joins lost seeds and dead nodes.
func (g *Gossip) maintLoop() {
	defer g.wg.Done()
	reap := time.NewTicker(g.cfg.reapInterval)
	defer reap.Stop()
	rejoin := time.NewTicker(g.cfg.RejoinInterval)
	defer rejoin.Stop()
	for {
		select {
		case <-g.stop:
			return
		case now := <-reap.C:
			g.reap(now)
		case <-rejoin.C:
			g.rejoin()
		case addrs := <-g.introCh:
			// Push/pull with members a joining node introduces itself
			// to, or with nodes that said hello and that memberlist did
			// not report: both ends learn each other at once.
			if _, err := g.ml.Join(addrs); err != nil {
				g.log.Debug("exchanging state", zap.Strings("addrs", addrs), zap.Error(err))
			}
		}
	}
}

func (g *Gossip) reap(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for network, ns := range g.nets {
		for k, r := range ns.entries {
			since, dead := g.down[r.Owner]
			if r.Deleted && now.Sub(r.recv) > g.cfg.TombstoneGrace ||
				!g.up[r.Owner] && dead && now.Sub(since) > g.cfg.DeadOwnerGrace {
				g.setVisibleLocked(r, false)
				g.removeLocked(ns, k, r)
				if r.Table == tableNet && network == "" && !r.Deleted {
					tomb := r.Entry
					tomb.Deleted = true
					g.participationLocked(&tomb)
				}
				g.stats.reaped.Add(1)
			}
		}
		if network != "" && !g.joined[network] && len(ns.entries) == 0 && ns.q.NumQueued() == 0 {
			delete(g.nets, network)
		}
	}
	for o, since := range g.down {
		if now.Sub(since) > g.cfg.DeadOwnerGrace {
			delete(g.down, o)
			if m := g.members[o]; m != nil && m.State != StateAlive && m.State != StateSuspect {
				delete(g.members, o)
			}
		}
	}
}

// rejoin joins again every seed that is not a live member, and one random
// dead (not left) node: memberlist alone does not heal a partition once
// both sides have declared each other dead.
func (g *Gossip) rejoin() {
	live := map[string]bool{}
	for _, n := range g.nodeMap() {
		live[n.Address()] = true
	}
	g.mu.Lock()
	if g.left {
		g.mu.Unlock()
		return
	}
	var try []string
	for _, s := range g.seeds {
		if !live[s] {
			try = append(try, s)
		}
	}
	var dead []string
	for _, m := range g.members {
		if m.State == StateDead && m.Addr.IsValid() && !live[m.Addr.String()] {
			dead = append(dead, m.Addr.String())
		}
	}
	g.mu.Unlock()
	if len(dead) > 0 {
		try = append(try, dead[rand.IntN(len(dead))])
	}
	for _, a := range try {
		if a == g.addr {
			continue
		}
		select {
		case <-g.stop:
			return
		default:
		}
		if _, err := g.ml.Join([]string{a}); err != nil {
			g.log.Debug("rejoin failed", zap.String("addr", a), zap.Error(err))
		}
	}
}

// nodeAddr converts a memberlist node address.
func nodeAddr(n *memberlist.Node) netip.AddrPort {
	a, ok := netip.AddrFromSlice(n.Addr)
	if !ok {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), n.Port)
}
