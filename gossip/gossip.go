package gossip

// This file holds Gossip itself: its errors, its state, New, Leave, Close
// and the copies of memberlist's nodes. The tables are package table's
// Store; tables.go holds the API over it and the types it shares,
// members.go the membership and memberlist's callbacks, broadcast.go
// the sending of deltas, sync.go the sending of bulk syncs, a joining
// node's catching up is in join.go and catchup.go, and reaping and
// rejoining in maint.go.

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"

	"github.com/overlayd/overlayd/gossip/table"
)

// Errors callers branch on (package table's, which keeps the tables).
var (
	// ErrNotOwner: the entry belongs to another node; only its owner may
	// change or delete it.
	ErrNotOwner = table.ErrNotOwner
	// ErrNotFound: no live entry under that key.
	ErrNotFound = table.ErrNotFound
	// ErrNotJoined: the node does not participate in the network.
	ErrNotJoined = table.ErrNotJoined
	// ErrClosed: the Gossip was closed.
	ErrClosed = table.ErrClosed
)

// OwnerError is the error of a Put or Delete of another node's live
// entry: Owner is the name of the node that holds it. It matches
// ErrNotOwner (errors.Is).
type OwnerError = table.OwnerError

// Gossip is one node's membership and replicated tables. All methods are safe
// for concurrent use. After Close, writes return ErrClosed and reads see the
// last state.
type Gossip struct {
	cfg   *config
	log   *zap.Logger
	name  string
	addr  string // own memberlist address, IP:port
	ml    *memberlist.Memberlist
	store *table.Store // the tables, behind their own lock
	stats counters
	syncs syncQueue // bulk syncs to send (sync.go)

	globalQ *memberlist.TransmitLimitedQueue // deltas of network "", sent by memberlist
	leaving atomic.Bool                      // sent in the metadata by Leave

	// mu guards the fields below. Locks are taken in the order mu, the
	// Store's, syncs.mu, never the other way: the Store calls its hooks
	// (queueSync, kickDirect, the queues) with its lock held, so they
	// take no lock of the Gossip's but syncs.mu.
	mu      sync.Mutex
	members map[string]*Member         // every node seen, dead and left ones included
	mlNodes map[string]memberlist.Node // copies of the live nodes, taken in the event callbacks
	mwatch  map[*table.Watcher[MemberEvent]]struct{}
	seeds   []string
	intros  map[string]intro // nodes that said hello and memberlist has not reported, by name
	closed  bool
	left    bool // Leave was called: rejoin nothing
	// discoverErr is why the last node discovery found could not be
	// joined; Stats shows it as JoinError while this node is alone.
	discoverErr string

	introCh    chan []string // addresses to exchange state with (maintLoop)
	directKick chan struct{} // fresh own entries to send (gossipLoop)
	stop       chan struct{}
	wg         sync.WaitGroup
	closeOnce  sync.Once
}

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
		members:    map[string]*Member{},
		mlNodes:    map[string]memberlist.Node{},
		mwatch:     map[*table.Watcher[MemberEvent]]struct{}{},
		intros:     map[string]intro{},
		introCh:    make(chan []string, 1),
		directKick: make(chan struct{}, 1),
		stop:       make(chan struct{}),
	}
	g.syncs.init()
	g.globalQ = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return g.store.Nodes() },
		RetransmitMult: cfg.ml.RetransmitMult,
	}
	g.store, err = table.New(table.Options{
		Name:             opts.Name,
		WatchBuffer:      cfg.WatchBuffer,
		MaxPushPullBytes: cfg.MaxPushPullBytes,
		TombstoneGrace:   cfg.TombstoneGrace,
		DeadOwnerGrace:   cfg.DeadOwnerGrace,
		Global:           queue{g.globalQ},
		NewQueue: func(nodes func() int) table.Queue {
			return queue{&memberlist.TransmitLimitedQueue{NumNodes: nodes, RetransmitMult: cfg.ml.RetransmitMult}}
		},
		Sync:  g.queueSync,
		Fresh: g.kickDirect,
	})
	if err != nil {
		return nil, err
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
	if err := g.startDiscovery(); err != nil { // discover.go
		g.Close()
		return nil, fmt.Errorf("gossip: discover: %w", err)
	}
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
		if d := g.cfg.Discover; d != nil {
			d.Close() // no more reports; its errors are its own to log
		}
		g.store.Close()    // writes fail, messages are dropped, watch channels close
		err = g.shutdown() // lifecycle.go (hardening): sockets first, then the loops
		close(g.stop)
		g.wg.Wait()
		g.mu.Lock()
		for w := range g.mwatch {
			w.Close()
		}
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
