package table

import (
	"bytes"
	"cmp"
)

// Entry is one row of a replicated table: the value stored under
// (Table, Network, Key), written by Owner at Lamport time Time.
// A Deleted entry is a tombstone: it carries no value and is kept until the
// tombstone grace period has passed, so that an older write arriving late
// cannot bring the key back.
type Entry struct {
	Table   string // table name, e.g. "routes"; names starting "gossip." are reserved
	Network string // network the entry belongs to; "" is the cluster-wide network
	Key     string // key within the table and network
	Value   []byte // nil for a tombstone
	Owner   string // name of the node that wrote the entry; only it may change it
	Time    uint64 // Lamport time of the write
	Deleted bool   // tombstone
}

// compareEntries orders two versions of the same key: last writer wins by
// (Time, Owner). The remaining fields only break ties between versions that a
// correct owner never produces (same owner, same time, different contents),
// so that the order is total and every node picks the same winner.
func compareEntries(a, b *Entry) int {
	if c := cmp.Compare(a.Time, b.Time); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Owner, b.Owner); c != 0 {
		return c
	}
	if a.Deleted != b.Deleted {
		if a.Deleted {
			return 1
		}
		return -1
	}
	return bytes.Compare(a.Value, b.Value)
}

// merge returns the winner of two versions of the same key. It is
// commutative, associative and idempotent (it is max over a total order).
func merge(a, b Entry) Entry {
	if compareEntries(&a, &b) >= 0 {
		return a
	}
	return b
}

// clone returns a copy of e that shares no memory with it.
func (e Entry) clone() Entry {
	if e.Value != nil {
		e.Value = bytes.Clone(e.Value)
	}
	return e
}

// EventType says what happened to an entry seen by a watcher.
type EventType uint8

const (
	// EventPut: the entry is new or its value changed, or it became
	// visible again (its owner came back).
	EventPut EventType = iota + 1
	// EventDelete: the entry was deleted, or withdrawn because its owner
	// is dead or left the network. Entry holds the last visible version.
	EventDelete
	// EventResync: the watcher fell behind and events were discarded; the
	// receiver must read the whole table again with List. Entry is zero.
	EventResync
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	case EventResync:
		return "resync"
	}
	return "unknown"
}

// Event is one change seen by a watcher.
type Event struct {
	Type  EventType
	Entry Entry
}
