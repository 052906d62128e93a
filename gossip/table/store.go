package table

// This file holds Store itself: its errors, options, state, New and
// Close, the queue it hands deltas to, and its counters. The tables' API
// is in table.go, storing versions in merge.go, network participation in
// networks.go, deltas out and messages in in broadcast.go, bulk syncs in
// sync.go, the push/pull state in pushpull.go, owners' liveness and
// reaping in owners.go.

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Errors callers branch on. Their text says "gossip", the package users
// see them through.
var (
	// ErrNotOwner: the entry belongs to another node; only its owner may
	// change or delete it.
	ErrNotOwner = errors.New("gossip: entry is owned by another node")
	// ErrNotFound: no live entry under that key.
	ErrNotFound = errors.New("gossip: no such entry")
	// ErrNotJoined: the node does not participate in the network.
	ErrNotJoined = errors.New("gossip: not participating in the network")
	// ErrClosed: the Store (its Gossip) was closed.
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

// Queue holds deltas for epidemic gossip, each sent a bounded number of
// times (package gossip's is memberlist's TransmitLimitedQueue). The Store
// calls Queue and NumQueued with its lock held, so they must not block or
// call the Store; all methods are safe for concurrent use.
type Queue interface {
	// Queue adds msg; a message queued before under the same name is
	// replaced (it is an older version of the same key).
	Queue(name string, msg []byte)
	// GetBroadcasts takes the messages for one send: at most limit
	// bytes, counting overhead bytes per message.
	GetBroadcasts(overhead, limit int) [][]byte
	// NumQueued is the number of messages queued.
	NumQueued() int
	// Reset drops every queued message.
	Reset()
}

// Options configures a Store. Package gossip fills every field from its
// own Options, defaults applied.
type Options struct {
	// Name is this node's name: the owner of its writes. Required.
	Name string
	// WatchBuffer is the number of events a watcher may fall behind
	// before it gets an EventResync instead. Required (at least 1).
	WatchBuffer int
	// MaxPushPullBytes caps the push/pull state (State) and each bulk
	// sync message (Bulk).
	MaxPushPullBytes int
	// TombstoneGrace is how long a tombstone is kept before Reap removes
	// it; DeadOwnerGrace how long a down owner's entries are kept.
	TombstoneGrace, DeadOwnerGrace time.Duration
	// Global receives the deltas of network "" (each a whole deltas
	// message), for every live node. Nil: they are not queued.
	Global Queue
	// NewQueue returns the queue of a network's deltas (each one encoded
	// entry, framed by PackDeltas when sent; see Epidemic). nodes is the
	// number of the network's live participants, self included; it takes
	// no lock. Nil: a network's deltas are not queued.
	NewQueue func(nodes func() int) Queue
	// Sync, if not nil, is asked to send a bulk sync (Bulk) to a node.
	// It is called with the Store's lock held: it must not block or call
	// the Store.
	Sync func(SyncTask)
	// Fresh, if not nil, is told that own entries wait to be sent
	// directly (TakeDirect). Same rules as Sync.
	Fresh func()
}

// Store is one node's replicated tables. All methods are safe for
// concurrent use. After Close, writes return ErrClosed, messages are
// dropped, and reads see the last state.
type Store struct {
	opts    Options
	name    string
	stats   counters
	nUp     atomic.Int32 // len(up), for the global queue's nodes (Nodes)
	overCap atomic.Bool  // the last push/pull state left out the global entries

	mu       sync.Mutex                 // guards the fields below
	clock    uint64                     // Lamport clock
	nets     map[string]*netState       // stored networks: "" and joined ones (and ones being left)
	joined   map[string]bool            // networks this node participates in
	up       map[string]bool            // nodes alive or suspect, self included
	down     map[string]time.Time       // owners known down (or never seen up), since when
	parts    map[string]map[string]bool // network → participating nodes (live gossip.net entries)
	watchers map[*Watcher[Event]]watchKey
	closed   bool
}

type netState struct {
	entries map[ekey]*record
	sum     uint64       // XOR of entryHash over live (non-deleted) records: the sync digest
	q       Queue        // deltas for the network's participants (nil for "")
	nparts  atomic.Int32 // participants, for q's nodes
	fresh   []ekey       // own entries written since the last gossip round, in order
	isFresh map[ekey]bool
}

type ekey struct{ table, key string }

type record struct {
	Entry
	recv    time.Time // local receive or write time, for reaping
	visible bool      // last visibility reported to watchers
	adopted bool      // own entry learned from the cluster (an earlier run), not written by this run
}

type watchKey struct{ table, network string }

// New returns an empty Store; this node is its only live node until SetUp
// says otherwise.
func New(opts Options) (*Store, error) {
	if !validName(opts.Name, MaxNameLen) {
		return nil, fmt.Errorf("gossip: node name %q must be 1 to %d bytes without NUL", opts.Name, MaxNameLen)
	}
	if opts.WatchBuffer < 1 {
		return nil, fmt.Errorf("gossip: watch buffer of %d events, want at least 1", opts.WatchBuffer)
	}
	if opts.Global == nil {
		opts.Global = nopQueue{}
	}
	if opts.NewQueue == nil {
		opts.NewQueue = func(func() int) Queue { return nopQueue{} }
	}
	s := &Store{
		opts:     opts,
		name:     opts.Name,
		nets:     map[string]*netState{"": {entries: map[ekey]*record{}}},
		joined:   map[string]bool{},
		up:       map[string]bool{opts.Name: true},
		down:     map[string]time.Time{},
		parts:    map[string]map[string]bool{},
		watchers: map[*Watcher[Event]]watchKey{},
	}
	s.nUp.Store(1)
	return s, nil
}

// Close makes writes fail with ErrClosed and drops every later message;
// it closes all watch channels. Safe to call twice.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for w := range s.watchers {
		w.Close()
	}
	clear(s.watchers)
}

// Nodes is the number of live nodes, self included. It takes no lock (the
// global Queue's count of nodes).
func (s *Store) Nodes() int { return int(s.nUp.Load()) }

// queueSyncLocked asks for the bulk sync t (Options.Sync).
func (s *Store) queueSyncLocked(t SyncTask) {
	if s.opts.Sync != nil {
		s.opts.Sync(t)
	}
}

// kickDirect says own entries wait to be sent (Options.Fresh).
func (s *Store) kickDirect() {
	if s.opts.Fresh != nil {
		s.opts.Fresh()
	}
}

// nopQueue queues nothing: deltas of a Store without queues.
type nopQueue struct{}

func (nopQueue) Queue(string, []byte)            {}
func (nopQueue) GetBroadcasts(int, int) [][]byte { return nil }
func (nopQueue) NumQueued() int                  { return 0 }
func (nopQueue) Reset()                          {}

var _ Queue = nopQueue{}

// Stats are a Store's counters since New: what it took in, and what it
// dropped.
type Stats struct {
	MsgsIn       uint64            // messages received and decoded (deltas, bulk, state, hello)
	BytesIn      uint64            // bytes of received messages
	EntriesIn    uint64            // entries that changed the local table
	StateOverCap uint64            // push/pull states that left out global entries (over MaxPushPullBytes)
	Reasserts    uint64            // own entries re-stamped above a newer remote version
	Reaped       uint64            // tombstones and dead owners' entries removed
	Drops        map[string]uint64 // dropped messages or entries, by reason
}

type counters struct {
	msgsIn, bytesIn, entriesIn      atomic.Uint64
	stateOverCap, reasserts, reaped atomic.Uint64

	mu    sync.Mutex        // guards drops
	drops map[string]uint64 // by reason
}

func (c *counters) drop(reason string) {
	c.mu.Lock()
	if c.drops == nil {
		c.drops = make(map[string]uint64)
	}
	c.drops[reason]++
	c.mu.Unlock()
}

// Stats returns a snapshot of the counters.
func (s *Store) Stats() Stats {
	c := &s.stats
	st := Stats{
		MsgsIn: c.msgsIn.Load(), BytesIn: c.bytesIn.Load(), EntriesIn: c.entriesIn.Load(),
		StateOverCap: c.stateOverCap.Load(), Reasserts: c.reasserts.Load(), Reaped: c.reaped.Load(),
		Drops: map[string]uint64{},
	}
	c.mu.Lock()
	for k, v := range c.drops {
		st.Drops[k] = v
	}
	c.mu.Unlock()
	return st
}
