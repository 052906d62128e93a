package gossip

// This file holds the tables' API, over package table's Store, and the
// types and limits the two packages share.

import "github.com/overlayd/overlayd/gossip/table"

// Entry is one row of a replicated table: the value stored under
// (Table, Network, Key), written by Owner at Lamport time Time. A Deleted
// entry is a tombstone (package table's Entry).
type Entry = table.Entry

// EventType says what happened to an entry seen by a watcher.
type EventType = table.EventType

// Event types (package table's).
const (
	// EventPut: the entry is new or its value changed, or it became
	// visible again (its owner came back).
	EventPut = table.EventPut
	// EventDelete: the entry was deleted, or withdrawn because its owner
	// is dead or left the network. Entry holds the last visible version.
	EventDelete = table.EventDelete
	// EventResync: the watcher fell behind and events were discarded; the
	// receiver must read the whole table again with List. Entry is zero.
	EventResync = table.EventResync
)

// Event is one change seen by a watcher.
type Event = table.Event

// Limits of an entry's fields, and of a node name (package table's). An
// entry at the limits still fits one UDP gossip packet, so a delta always
// travels as a broadcast.
const (
	MaxTableLen   = table.MaxTableLen   // bytes in a table name
	MaxNetworkLen = table.MaxNetworkLen // bytes in a network name
	MaxKeyLen     = table.MaxKeyLen     // bytes in a key
	MaxNameLen    = table.MaxNameLen    // bytes in a node name
	MaxValueLen   = table.MaxValueLen   // bytes in a value
)

// DecodeEntry decodes one entry as the wire format encodes it (the unit
// inside every message). The input must hold exactly one entry.
func DecodeEntry(b []byte) (Entry, error) { return table.DecodeEntry(b) }

// Put writes value under (table, network, key), owned by this node. It
// fails with an *OwnerError (ErrNotOwner) if another node holds a live
// entry under the key.
// value is copied; at most MaxValueLen bytes.
func (g *Gossip) Put(table, network, key string, value []byte) error {
	return g.store.Put(table, network, key, value)
}

// Delete deletes this node's entry under (table, network, key), leaving a
// tombstone. ErrNotFound if there is no live entry, an *OwnerError
// (ErrNotOwner) if it is another node's.
func (g *Gossip) Delete(table, network, key string) error {
	return g.store.Delete(table, network, key)
}

// Get returns the visible entry under (table, network, key): not deleted,
// and its owner alive and participating in the network.
func (g *Gossip) Get(table, network, key string) (Entry, bool) {
	return g.store.Get(table, network, key)
}

// List returns the visible entries of table in network, sorted by key.
func (g *Gossip) List(table, network string) []Entry {
	return g.store.List(table, network)
}

// ListAll is List including the hidden live entries: those of dead nodes
// (kept DeadOwnerGrace) and of nodes that left the network. Tombstones are
// left out. For state that must stay reserved while its owner is away, such
// as address ranges and leases.
func (g *Gossip) ListAll(table, network string) []Entry {
	return g.store.ListAll(table, network)
}

// Digest returns a hash of every visible entry of network (all tables), in
// hex. Nodes that have converged return the same digest.
func (g *Gossip) Digest(network string) string {
	return g.store.Digest(network)
}

// Watch returns a channel of the changes to table in network, and a
// function that cancels the watch and closes the channel. Delivery never
// blocks gossip: a watcher that falls more than WatchBuffer events behind
// loses the queued events and receives one EventResync, after which it must
// read the table again with List. The channel is closed by cancel or Close.
func (g *Gossip) Watch(table, network string) (<-chan Event, func()) {
	return g.store.Watch(table, network)
}

// JoinNetwork makes this node a participant of network: from now on it
// stores and receives the network's entries and may write its own. The
// participation is itself a cluster-wide entry, so peers learn whom to send
// the network's deltas to. The current state is fetched from a few
// participants at once and from every push/pull partner whose digest differs.
func (g *Gossip) JoinNetwork(network string) error {
	return g.store.JoinNetwork(network)
}

// LeaveNetwork stops participating in network: this node's entries in it
// are deleted (tombstones are still sent to the participants), the others
// are dropped locally, and watchers of the network see them deleted.
func (g *Gossip) LeaveNetwork(network string) error {
	return g.store.LeaveNetwork(network)
}

// Networks returns the networks this node participates in, sorted.
func (g *Gossip) Networks() []string {
	return g.store.Networks()
}

// Participants returns the live nodes participating in network, sorted.
func (g *Gossip) Participants(network string) []string {
	return g.store.Participants(network)
}
