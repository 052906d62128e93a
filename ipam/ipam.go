package ipam

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/overlayd/overlayd/gossip"
	"go.uber.org/zap"
)

// Tables is what ipam needs of gossip; *gossip.Gossip implements it.
type Tables interface {
	Name() string
	JoinNetwork(network string) error
	Put(table, network, key string, value []byte) error
	Delete(table, network, key string) error
	Get(table, network, key string) (gossip.Entry, bool)
	ListAll(table, network string) []gossip.Entry
}

var _ Tables = (*gossip.Gossip)(nil)

// Table names.
const (
	tableNetworks = "ipam.networks"
	tableRanges   = "ipam.ranges"
	tableLeases   = "ipam.leases"
	tableRequests = "ipam.requests"
)

// Pools.
const (
	poolNode byte = 'n'
	poolVIP  byte = 'v'
)

// ErrExhausted is wrapped by the error of an allocation from a full pool.
var ErrExhausted = errors.New("no free address")

// Options configures an IPAM.
type Options struct {
	// Logger; default zap.NewNop().
	Logger *zap.Logger
	// Interval is how often requests are answered and a waiting Allocate
	// looks again. Default 100 ms.
	Interval time.Duration
	// RequestTimeout is how long a request may wait for the owner with the
	// most free space before any owner answers. Default 1 s.
	RequestTimeout time.Duration
	// OnChange, if not nil, is called (without locks held, from any
	// goroutine) after this node's ranges or leases in network changed,
	// so the caller can persist Export(network).
	OnChange func(network string)
}

// Network is an overlay network's addressing.
type Network struct {
	Name    string
	CIDR    netip.Prefix
	VNI     uint32
	Creator string     // node that created it and owned its pools first
	DNS     netip.Addr // first usable address, never allocated
}

// Lease is an allocated address.
type Lease struct {
	Addr  netip.Addr
	Owner string // the caller's owner string given to Allocate
	Node  string // node that allocated it
}

// IPAM allocates addresses on one node. Safe for concurrent use.
type IPAM struct {
	t    Tables
	name string
	opts Options
	log  *zap.Logger

	mu      sync.Mutex           // guards the fields below and serializes writes to the tables
	nets    map[string]bool      // networks this node takes part in
	seen    map[string]time.Time // request key → when first seen unanswered
	granted map[string]uint64    // request key → seq already answered
	reqSeq  map[string]uint64    // own request key → seq
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// New starts an IPAM over t. Close stops it.
func New(t Tables, opts Options) (*IPAM, error) {
	if t == nil {
		return nil, errors.New("ipam: no gossip tables")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Interval <= 0 {
		opts.Interval = 100 * time.Millisecond
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = time.Second
	}
	p := &IPAM{
		t: t, name: t.Name(), opts: opts, log: opts.Logger.Named("ipam"),
		nets: map[string]bool{}, seen: map[string]time.Time{}, granted: map[string]uint64{}, reqSeq: map[string]uint64{},
		stop: make(chan struct{}),
	}
	p.wg.Add(1)
	go p.loop()
	return p, nil
}

// Close stops answering requests. Safe to call twice.
func (p *IPAM) Close() error {
	p.once.Do(func() {
		close(p.stop)
		p.wg.Wait()
	})
	return nil
}

// layout is a network's address arithmetic, in offsets from the CIDR base.
type layout struct {
	Network
	size   uint64 // addresses in the CIDR
	nodeLo uint64 // node pool [nodeLo, vipLo)
	vipLo  uint64 // VIP pool [vipLo, vipHi)
	vipHi  uint64
	base   *big.Int
}

func newLayout(n Network) (*layout, error) {
	hostBits := n.CIDR.Addr().BitLen() - n.CIDR.Bits()
	if !n.CIDR.IsValid() || hostBits > 32 || hostBits < 6 {
		return nil, fmt.Errorf("ipam: network %q: CIDR %v must have 6 to 32 host bits", n.Name, n.CIDR)
	}
	l := &layout{Network: n, size: 1 << hostBits}
	l.CIDR = n.CIDR.Masked()
	l.base = new(big.Int).SetBytes(l.CIDR.Addr().AsSlice())
	l.vipLo = l.size - max(l.size/16, 16)
	l.vipHi = l.size
	if l.CIDR.Addr().Is4() {
		l.vipHi-- // broadcast
	}
	l.nodeLo = 2
	l.DNS = l.addr(1)
	return l, nil
}

func (l *layout) addr(off uint64) netip.Addr {
	v := new(big.Int).Add(l.base, new(big.Int).SetUint64(off))
	b := v.FillBytes(make([]byte, l.CIDR.Addr().BitLen()/8))
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (l *layout) offset(a netip.Addr) (uint64, bool) {
	if !l.CIDR.Contains(a) {
		return 0, false
	}
	v := new(big.Int).Sub(new(big.Int).SetBytes(a.AsSlice()), l.base)
	return v.Uint64(), true
}

func (l *layout) pool(p byte) (lo, hi uint64) {
	if p == poolVIP {
		return l.vipLo, l.vipHi
	}
	return l.nodeLo, l.vipLo
}

func (l *layout) String() string { return fmt.Sprintf("%q (%v)", l.Name, l.CIDR) }

// CreateNetwork defines a network cluster-wide; this node owns its pools
// until it hands ranges out. Fails if the name exists.
func (p *IPAM) CreateNetwork(name string, cidr netip.Prefix, vni uint32) error {
	l, err := newLayout(Network{Name: name, CIDR: cidr, VNI: vni, Creator: p.name})
	if err != nil {
		return err
	}
	p.mu.Lock()
	err = p.createLocked(l, name, vni)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	p.changed(name) // without the lock: OnChange may call Export
	return nil
}

func (p *IPAM) createLocked(l *layout, name string, vni uint32) error {
	if _, ok := p.networkEntry(name); ok {
		return fmt.Errorf("ipam: network %q exists", name)
	}
	if err := p.t.JoinNetwork(name); err != nil {
		return fmt.Errorf("ipam: network %q: %w", name, err)
	}
	p.nets[name] = true
	for _, pool := range []byte{poolNode, poolVIP} {
		lo, hi := l.pool(pool)
		if err := p.putRangeLocked(name, rng{Pool: pool, Start: lo, End: hi, Owner: p.name, Version: 1, Creator: p.name}); err != nil {
			return err
		}
	}
	v := binary.AppendUvarint([]byte(l.CIDR.String()+"\x00"), uint64(vni))
	if err := p.t.Put(tableNetworks, "", name, v); err != nil {
		return fmt.Errorf("ipam: create network %q: %w", name, err)
	}
	return nil
}

// Network returns a network's definition as this node knows it.
func (p *IPAM) Network(name string) (Network, bool) {
	l, err := p.layout(name)
	if err != nil {
		return Network{}, false
	}
	return l.Network, true
}

// Networks returns every network defined in the cluster as this node
// knows them (also those whose creator is down), sorted by name.
func (p *IPAM) Networks() []Network {
	var out []Network
	for _, e := range p.t.ListAll(tableNetworks, "") {
		if l, err := p.layout(e.Key); err == nil {
			out = append(out, l.Network)
		}
	}
	return out
}

// networkEntry returns a network's definition, also while its creator is
// down (a network outlives its creator).
func (p *IPAM) networkEntry(name string) (gossip.Entry, bool) {
	for _, e := range p.t.ListAll(tableNetworks, "") {
		if e.Key == name {
			return e, true
		}
	}
	return gossip.Entry{}, false
}

func (p *IPAM) layout(name string) (*layout, error) {
	e, ok := p.networkEntry(name)
	if !ok {
		return nil, fmt.Errorf("ipam: unknown network %q", name)
	}
	c, rest, ok := strings.Cut(string(e.Value), "\x00")
	vni, n := binary.Uvarint([]byte(rest))
	pfx, err := netip.ParsePrefix(c)
	if !ok || n <= 0 || n != len(rest) || err != nil || vni > 1<<24 {
		return nil, fmt.Errorf("ipam: network %q: bad definition", name)
	}
	return newLayout(Network{Name: name, CIDR: pfx, VNI: uint32(vni), Creator: e.Owner})
}

// join makes this node a participant of network (to see its ranges).
func (p *IPAM) joinLocked(network string) error {
	if p.nets[network] {
		return nil
	}
	if err := p.t.JoinNetwork(network); err != nil {
		return fmt.Errorf("ipam: network %q: %w", network, err)
	}
	p.nets[network] = true
	return nil
}

// Allocate returns a free address of network's node pool, leased to owner
// (a free-form id such as a container name). If this node owns no free
// address it asks the cluster for a range and waits, until ctx ends. It
// fails with an error wrapping ErrExhausted when no node has a free address.
func (p *IPAM) Allocate(ctx context.Context, network, owner string) (netip.Addr, error) {
	return p.allocate(ctx, network, owner, poolNode)
}

// AllocateVIP is Allocate from the network's VIP pool, for services.
func (p *IPAM) AllocateVIP(ctx context.Context, network, owner string) (netip.Addr, error) {
	return p.allocate(ctx, network, owner, poolVIP)
}

func (p *IPAM) allocate(ctx context.Context, network, owner string, pool byte) (netip.Addr, error) {
	t := time.NewTicker(p.opts.Interval)
	defer t.Stop()
	for {
		a, err := p.tryAllocate(network, owner, pool)
		if err != nil || a.IsValid() {
			if a.IsValid() {
				p.changed(network)
			}
			return a, err
		}
		select {
		case <-ctx.Done():
			return netip.Addr{}, fmt.Errorf("ipam: network %q: waiting for an address range: %w", network, ctx.Err())
		case <-t.C:
		}
	}
}

// tryAllocate allocates from an own range, or files a request and returns
// the zero address.
func (p *IPAM) tryAllocate(network, owner string, pool byte) (netip.Addr, error) {
	l, err := p.layout(network)
	if err != nil {
		return netip.Addr{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.joinLocked(network); err != nil {
		return netip.Addr{}, err
	}
	ring := p.ringLocked(l)
	leases := p.leasesLocked(l)
	free, covered := uint64(0), uint64(0)
	for _, r := range ring {
		if r.Pool != pool {
			continue
		}
		f := r.free(leases)
		free += f
		covered += r.End - r.Start
		if r.Owner != p.name || f == 0 {
			continue
		}
		for off := r.Start; off < r.End; off++ {
			if _, used := leases[off]; used {
				continue
			}
			a := l.addr(off)
			if err := p.t.Put(tableLeases, network, a.String(), []byte(owner)); err != nil {
				return netip.Addr{}, fmt.Errorf("ipam: network %q: lease %v: %w", network, a, err)
			}
			rk := requestKey(pool, p.name)
			if _, ok := p.reqSeq[rk]; ok {
				delete(p.reqSeq, rk)
				p.t.Delete(tableRequests, network, rk)
			}
			return a, nil
		}
	}
	if lo, hi := l.pool(pool); free == 0 && covered == hi-lo {
		// The whole pool is known (no range missing, as while syncing
		// or while a dead node's ranges are reaped) and full.
		if pool == poolVIP {
			return netip.Addr{}, fmt.Errorf("ipam: network %s has %w in its VIP range", l, ErrExhausted)
		}
		return netip.Addr{}, fmt.Errorf("ipam: network %s has %w", l, ErrExhausted)
	}
	rk := requestKey(pool, p.name)
	if _, ok := p.reqSeq[rk]; !ok {
		p.reqSeq[rk] = uint64(time.Now().UnixNano())
		if err := p.t.Put(tableRequests, network, rk, binary.AppendUvarint(nil, p.reqSeq[rk])); err != nil {
			return netip.Addr{}, fmt.Errorf("ipam: network %q: request a range: %w", network, err)
		}
	}
	return netip.Addr{}, nil
}

// Release frees an address this node leased.
func (p *IPAM) Release(network string, a netip.Addr) error {
	p.mu.Lock()
	err := p.t.Delete(tableLeases, network, a.String())
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("ipam: release %v in %q: %w", a, network, err)
	}
	p.changed(network)
	return nil
}

// Lookup returns the lease of an address, if it is leased by the node
// that owns its range (leases of dead nodes included).
func (p *IPAM) Lookup(network string, a netip.Addr) (Lease, bool) {
	l, err := p.layout(network)
	if err != nil {
		return Lease{}, false
	}
	off, ok := l.offset(a)
	if !ok {
		return Lease{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	leases := p.leasesLocked(l)
	ls, ok := leases[off]
	if !ok {
		return Lease{}, false
	}
	for _, r := range p.ringLocked(l) {
		if r.Start <= off && off < r.End {
			if r.Owner != ls.Node {
				return Lease{}, false
			}
			return ls, true
		}
	}
	return Lease{}, false
}

// Holders returns the leases of network that Lookup would return (those
// leased by the node that owns the address's range), by address: one pass
// for callers that check many addresses, such as the route table.
func (p *IPAM) Holders(network string) map[netip.Addr]Lease {
	l, err := p.layout(network)
	if err != nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ring := p.ringLocked(l)
	out := map[netip.Addr]Lease{}
	for off, ls := range p.leasesLocked(l) {
		for _, r := range ring { // the first range holding off, as in Lookup
			if r.Start <= off && off < r.End {
				if r.Owner == ls.Node {
					out[ls.Addr] = ls
				}
				break
			}
		}
	}
	return out
}

// Claim leases address a of network to owner again, as Allocate would
// have, when a lies in a range this node owns and nobody else leases it:
// for a node that knows its address (from its other state) but lost the
// lease with its state file before the lease reached any peer. It fails
// when the range is not this node's (or not known yet) or another node
// leases a.
func (p *IPAM) Claim(network string, a netip.Addr, owner string) error {
	l, err := p.layout(network)
	if err != nil {
		return err
	}
	off, ok := l.offset(a)
	if !ok {
		return fmt.Errorf("ipam: %v is not in network %s", a, l)
	}
	p.mu.Lock()
	err = p.claimLocked(l, a, off, owner)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	p.changed(network)
	return nil
}

func (p *IPAM) claimLocked(l *layout, a netip.Addr, off uint64, owner string) error {
	if ls, ok := p.leasesLocked(l)[off]; ok {
		if ls.Node == p.name && ls.Owner == owner {
			return nil
		}
		return fmt.Errorf("ipam: %v in %s is leased to %q on node %s", a, l, ls.Owner, ls.Node)
	}
	for _, r := range p.ringLocked(l) {
		if r.Start <= off && off < r.End {
			if r.Owner != p.name || r.Pool != poolNode {
				return fmt.Errorf("ipam: %v in %s is in a range of node %s", a, l, r.Owner)
			}
			if err := p.t.Put(tableLeases, l.Name, a.String(), []byte(owner)); err != nil {
				return fmt.Errorf("ipam: network %q: lease %v: %w", l.Name, a, err)
			}
			return nil
		}
	}
	return fmt.Errorf("ipam: %v in %s: no range known holds it (yet)", a, l)
}

// WatchTables are the network-scoped gossip tables whose changes can change
// what Lookup and Holders return; a caller that caches their answers
// watches these.
func WatchTables() []string { return []string{tableRanges, tableLeases} }

// Participate makes this node take part in network's IPAM again (answer
// range requests, keep its own ranges) without the state Import would
// bring: after a restart whose state file was lost, the node's ranges and
// leases come back from its peers (gossip adopts them as its own).
func (p *IPAM) Participate(network string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.joinLocked(network)
}

// Leases returns every lease of network that this node knows, sorted.
func (p *IPAM) Leases(network string) []Lease {
	l, err := p.layout(network)
	if err != nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var ls []Lease
	for _, x := range p.leasesLocked(l) {
		ls = append(ls, x)
	}
	slices.SortFunc(ls, func(a, b Lease) int { return a.Addr.Compare(b.Addr) })
	return ls
}

func (p *IPAM) changed(network string) {
	if p.opts.OnChange != nil {
		p.opts.OnChange(network)
	}
}

// rng is one range of a pool.
type rng struct {
	Pool       byte
	Start, End uint64 // offsets [Start, End)
	Owner      string
	Version    uint64
	Creator    string // creator of the network the range derives from
	writer     string
}

func (r rng) key(writer string) string {
	return string(r.Pool) + "/" + strconv.FormatUint(r.Start, 10) + "/" + writer
}

func (r rng) encode() []byte {
	b := []byte{1, r.Pool}
	b = binary.AppendUvarint(b, r.Start)
	b = binary.AppendUvarint(b, r.End)
	b = binary.AppendUvarint(b, r.Version)
	b = append(b, byte(len(r.Owner)))
	b = append(b, r.Owner...)
	b = append(b, byte(len(r.Creator)))
	return append(b, r.Creator...)
}

func decodeRange(b []byte) (rng, bool) {
	var r rng
	if len(b) < 2 || b[0] != 1 {
		return r, false
	}
	r.Pool = b[1]
	b = b[2:]
	for _, p := range []*uint64{&r.Start, &r.End, &r.Version} {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return r, false
		}
		*p, b = v, b[n:]
	}
	for _, p := range []*string{&r.Owner, &r.Creator} {
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return r, false
		}
		*p, b = string(b[1:1+int(b[0])]), b[1+int(b[0]):]
	}
	return r, len(b) == 0 && r.Start < r.End && r.Owner != ""
}

func (r rng) free(leases map[uint64]Lease) uint64 {
	n := r.End - r.Start
	for off := range leases {
		if r.Start <= off && off < r.End {
			n--
		}
	}
	return n
}

func requestKey(pool byte, node string) string { return string(pool) + "/" + node }

// ringLocked derives the ring: per (pool, start) the version with the
// highest (version, writer), of the network's winning creation, inside the
// pool.
func (p *IPAM) ringLocked(l *layout) []rng {
	best := map[[2]uint64]rng{}
	for _, e := range p.t.ListAll(tableRanges, l.Name) {
		r, ok := decodeRange(e.Value)
		if !ok || r.Creator != l.Creator {
			continue
		}
		if lo, hi := l.pool(r.Pool); r.Start < lo || r.End > hi {
			continue
		}
		r.writer = e.Owner
		k := [2]uint64{uint64(r.Pool), r.Start}
		if b, ok := best[k]; !ok || r.Version > b.Version || r.Version == b.Version && r.writer > b.writer {
			best[k] = r
		}
	}
	ring := make([]rng, 0, len(best))
	for _, r := range best {
		ring = append(ring, r)
	}
	slices.SortFunc(ring, func(a, b rng) int {
		if c := cmp.Compare(a.Pool, b.Pool); c != 0 {
			return c
		}
		return cmp.Compare(a.Start, b.Start)
	})
	return ring
}

func (p *IPAM) leasesLocked(l *layout) map[uint64]Lease {
	m := map[uint64]Lease{}
	for _, e := range p.t.ListAll(tableLeases, l.Name) {
		a, err := netip.ParseAddr(e.Key)
		if err != nil {
			continue
		}
		if off, ok := l.offset(a); ok {
			m[off] = Lease{Addr: a, Owner: string(e.Value), Node: e.Owner}
		}
	}
	return m
}

func (p *IPAM) putRangeLocked(network string, r rng) error {
	if err := p.t.Put(tableRanges, network, r.key(p.name), r.encode()); err != nil {
		return fmt.Errorf("ipam: network %q: write range: %w", network, err)
	}
	return nil
}

// loop answers requests and keeps own copies of granted ranges.
func (p *IPAM) loop() {
	defer p.wg.Done()
	t := time.NewTicker(p.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		var nets []string
		for n := range p.nets {
			nets = append(nets, n)
		}
		p.mu.Unlock()
		for _, n := range nets {
			if p.tick(n) {
				p.changed(n)
			}
		}
	}
}

// tick runs one round for a network; it reports whether own ranges changed.
func (p *IPAM) tick(network string) bool {
	l, err := p.layout(network)
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := false
	for _, e := range p.t.ListAll(tableRanges, network) {
		// This node's ranges of a creation that lost (another node created
		// the network under the same name at the same time, and its
		// definition won): they can never be used, so withdraw them.
		if r, ok := decodeRange(e.Value); ok && e.Owner == p.name && r.Creator != l.Creator {
			if p.t.Delete(tableRanges, network, e.Key) == nil {
				changed = true
			}
		}
	}
	ring := p.ringLocked(l)
	for _, r := range ring {
		if r.Owner == p.name && r.writer != p.name {
			if p.putRangeLocked(network, r) == nil { // own copy of a grant
				changed = true
			}
		}
	}
	leases := p.leasesLocked(l)
	now := time.Now()
	for _, e := range p.t.ListAll(tableRequests, network) {
		if e.Owner == p.name {
			continue
		}
		seq, _ := binary.Uvarint(e.Value)
		pool := e.Key[0]
		if p.granted[e.Key] == seq {
			continue
		}
		// Does the requester already own free space (a grant in flight)?
		freeBy := map[string]uint64{}
		for _, r := range ring {
			if r.Pool == pool {
				freeBy[r.Owner] += r.free(leases)
			}
		}
		if freeBy[e.Owner] > 0 || freeBy[p.name] == 0 {
			continue
		}
		first, ok := p.seen[e.Key]
		if !ok {
			first = now
			p.seen[e.Key] = now
		}
		best := p.name
		for o, f := range freeBy {
			if f > freeBy[best] || f == freeBy[best] && o < best {
				best = o
			}
		}
		if best != p.name && now.Sub(first) < p.opts.RequestTimeout {
			continue
		}
		if p.grantLocked(l, ring, leases, pool, e.Owner) {
			p.granted[e.Key] = seq
			delete(p.seen, e.Key)
			changed = true
			ring = p.ringLocked(l)
		}
	}
	return changed
}

// grantLocked splits one of this node's ranges of pool and gives the upper
// part, above every lease in it, to node.
func (p *IPAM) grantLocked(l *layout, ring []rng, leases map[uint64]Lease, pool byte, node string) bool {
	var pick *rng
	var pickMid uint64
	for i := range ring {
		r := &ring[i]
		if r.Pool != pool || r.Owner != p.name {
			continue
		}
		top := r.Start // first offset above every lease
		for off := range leases {
			if r.Start <= off && off < r.End && off+1 > top {
				top = off + 1
			}
		}
		mid := max(top, r.Start+(r.End-r.Start)/2)
		if mid >= r.End {
			continue
		}
		if pick == nil || r.End-mid > pick.End-pickMid {
			pick, pickMid = r, mid
		}
	}
	if pick == nil {
		return false
	}
	if pickMid == pick.Start { // one free address, or all of an unleased range of 1
		g := *pick
		g.Owner, g.Version = node, pick.Version+1
		return p.putRangeLocked(l.Name, g) == nil
	}
	keep := *pick
	keep.End, keep.Version = pickMid, pick.Version+1
	if p.putRangeLocked(l.Name, keep) != nil {
		return false
	}
	g := rng{Pool: pool, Start: pickMid, End: pick.End, Owner: node, Version: 1, Creator: pick.Creator}
	for _, e := range p.t.ListAll(tableRanges, l.Name) { // above any earlier version at this start
		if r, ok := decodeRange(e.Value); ok && r.Pool == pool && r.Start == pickMid && r.Version >= g.Version {
			g.Version = r.Version + 1
		}
	}
	p.log.Debug("grant", zap.String("network", l.Name), zap.String("to", node), zap.Uint64("start", g.Start), zap.Uint64("end", g.End))
	return p.putRangeLocked(l.Name, g) == nil
}
