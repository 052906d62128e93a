package ipam

// This file holds IPAM itself: what it needs of gossip, its tables, its
// types, New and Close. Networks and their address layout are in
// network.go, leases in lease.go, the ring of owned ranges in ring.go, and
// the answering of range requests in grant.go.

import (
	"errors"
	"net/netip"
	"slices"
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

// Pools: a node pool and a VIP pool per family.
const (
	poolNode  byte = 'n'
	poolVIP   byte = 'v'
	poolNode6 byte = 'N'
	poolVIP6  byte = 'V'
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
	Name string
	// CIDRs are its prefixes, one per family, IPv4 first: an IPv4, an
	// IPv6 or a dual-stack network.
	CIDRs   []netip.Prefix
	VNI     uint32
	Creator string       // node that created it and owned its pools first
	DNS     []netip.Addr // per CIDR, its first usable address, never allocated
}

// CIDR is the network's CIDR of family f, if it has one.
func (n Network) CIDR(f Family) (netip.Prefix, bool) {
	for _, c := range n.CIDRs {
		if FamilyOf(c.Addr()) == f {
			return c, true
		}
	}
	return netip.Prefix{}, false
}

// Equal reports whether n and o are the same definition.
func (n Network) Equal(o Network) bool {
	return n.Name == o.Name && n.VNI == o.VNI && n.Creator == o.Creator && slices.Equal(n.CIDRs, o.CIDRs) && slices.Equal(n.DNS, o.DNS)
}

// Contains reports whether a lies in one of the network's CIDRs.
func (n Network) Contains(a netip.Addr) bool { return Contains(n.CIDRs, a.Unmap()) }

// Contains reports whether a lies in one of cidrs.
func Contains(cidrs []netip.Prefix, a netip.Addr) bool {
	for _, c := range cidrs {
		if c.Contains(a) {
			return true
		}
	}
	return false
}

// Overlaps reports whether a prefix of a overlaps one of b.
func Overlaps(a, b []netip.Prefix) bool {
	for _, x := range a {
		for _, y := range b {
			if x.Overlaps(y) {
				return true
			}
		}
	}
	return false
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

// WatchTables are the network-scoped gossip tables whose changes can change
// what Lookup and Holders return; a caller that caches their answers
// watches these.
func WatchTables() []string { return []string{tableRanges, tableLeases} }

// Watcher is the part of gossip that watches a table.
type Watcher interface {
	Watch(table, network string) (<-chan gossip.Event, func())
}

var _ Watcher = (*gossip.Gossip)(nil)

// WatchNetworks watches the network definitions (cluster-wide): each
// event is a definition created, changed or withdrawn, which can change
// what Network and Networks return. The caller cancels the watch.
func WatchNetworks(w Watcher) (<-chan gossip.Event, func()) {
	return w.Watch(tableNetworks, "")
}

func (p *IPAM) changed(network string) {
	if p.opts.OnChange != nil {
		p.opts.OnChange(network)
	}
}
