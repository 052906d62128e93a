package gossip

// This file holds Gossip itself: its errors, its state, New, Leave, Close
// and the copies of memberlist's nodes. The tables are in table.go (the
// API) and merge.go (storing versions), network participation in
// networks.go, deltas in broadcast.go, anti-entropy in sync.go (bulk syncs)
// and pushpull.go, a joining node's catching up in join.go and catchup.go,
// and reaping and rejoining in maint.go.

import (
	"errors"
	"fmt"
	"net/netip"
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

type ekey struct{ table, key string }

type record struct {
	Entry
	recv    time.Time // local receive or write time, for reaping
	visible bool      // last visibility reported to watchers
	adopted bool      // own entry learned from the cluster (an earlier run), not written by this run
}

type watchKey struct{ table, network string }

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

// nodeAddr converts a memberlist node address.
func nodeAddr(n *memberlist.Node) netip.AddrPort {
	a, ok := netip.AddrFromSlice(n.Addr)
	if !ok {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), n.Port)
}
