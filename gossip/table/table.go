package table

// This file holds the tables' API: Put, Delete, Get, List, ListAll,
// Versions, Digest and Watch, and the local write they share.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

func (s *Store) checkWrite(table, network, key string) error {
	if !validName(table, MaxTableLen) || strings.HasPrefix(table, "gossip.") {
		return fmt.Errorf("gossip: table name %q must be 1 to %d bytes, not starting with \"gossip.\"", table, MaxTableLen)
	}
	if len(network) > MaxNetworkLen {
		return fmt.Errorf("gossip: network name %q longer than %d bytes", network, MaxNetworkLen)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("gossip: key %q longer than %d bytes", key, MaxKeyLen)
	}
	if s.closed {
		return ErrClosed
	}
	if network != "" && !s.joined[network] {
		return fmt.Errorf("%w %q", ErrNotJoined, network)
	}
	return nil
}

// Put writes value under (table, network, key), owned by this node. It
// fails with an *OwnerError (ErrNotOwner) if another node holds a live
// entry under the key.
// value is copied; at most MaxValueLen bytes.
func (s *Store) Put(table, network, key string, value []byte) error {
	if len(value) > MaxValueLen {
		return fmt.Errorf("gossip: value of %d bytes, at most %d", len(value), MaxValueLen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkWrite(table, network, key); err != nil {
		return err
	}
	if r := s.nets[network].entries[ekey{table, key}]; r != nil && r.Owner != s.name && !r.Deleted {
		return &OwnerError{Table: table, Network: network, Key: key, Owner: r.Owner}
	}
	if value == nil {
		value = []byte{}
	}
	s.putLocked(table, network, key, slices.Clone(value), false)
	return nil
}

// Delete deletes this node's entry under (table, network, key), leaving a
// tombstone. ErrNotFound if there is no live entry, an *OwnerError
// (ErrNotOwner) if it is another node's.
func (s *Store) Delete(table, network, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkWrite(table, network, key); err != nil {
		return err
	}
	r := s.nets[network].entries[ekey{table, key}]
	if r == nil || r.Deleted {
		return fmt.Errorf("%w: %s/%s/%s", ErrNotFound, table, network, key)
	}
	if r.Owner != s.name {
		return &OwnerError{Table: table, Network: network, Key: key, Owner: r.Owner}
	}
	s.putLocked(table, network, key, nil, true)
	return nil
}

// putLocked writes a local entry with the next Lamport time and queues its
// broadcast.
func (s *Store) putLocked(table, network, key string, value []byte, deleted bool) {
	s.clock++
	e := Entry{Table: table, Network: network, Key: key, Value: value, Owner: s.name, Time: s.clock, Deleted: deleted}
	if deleted {
		e.Value = nil
	}
	ns := s.netLocked(network)
	s.storeLocked(ns, e, time.Now(), false)
	s.announceLocked(ns, &e)
}

// Get returns the visible entry under (table, network, key): not deleted,
// and its owner alive and participating in the network.
func (s *Store) Get(table, network, key string) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.nets[network]
	if ns == nil {
		return Entry{}, false
	}
	r := ns.entries[ekey{table, key}]
	if r == nil || !s.visibleLocked(r) {
		return Entry{}, false
	}
	return r.Entry.clone(), true
}

// List returns the visible entries of table in network, sorted by key.
func (s *Store) List(table, network string) []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listLocked(table, network)
}

// ListAll is List including the hidden live entries: those of dead nodes
// (kept DeadOwnerGrace) and of nodes that left the network. Tombstones are
// left out. For state that must stay reserved while its owner is away, such
// as address ranges and leases.
func (s *Store) ListAll(table, network string) []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listFilterLocked(table, network, func(r *record) bool { return !r.Deleted })
}

// Versions returns every version stored of network, tombstones and
// hidden entries included, in no order: all that this node holds of it.
func (s *Store) Versions(network string) []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.nets[network]
	if ns == nil {
		return nil
	}
	es := make([]Entry, 0, len(ns.entries))
	for _, r := range ns.entries {
		es = append(es, r.Entry.clone())
	}
	return es
}

func (s *Store) listLocked(table, network string) []Entry {
	return s.listFilterLocked(table, network, s.visibleLocked)
}

func (s *Store) listFilterLocked(table, network string, keep func(*record) bool) []Entry {
	ns := s.nets[network]
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
func (s *Store) Digest(network string) string {
	s.mu.Lock()
	var es []*Entry
	if ns := s.nets[network]; ns != nil {
		for _, r := range ns.entries {
			if s.visibleLocked(r) {
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
	s.mu.Unlock()
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Watch returns a channel of the changes to table in network, and a
// function that cancels the watch and closes the channel. Delivery never
// blocks gossip: a watcher that falls more than WatchBuffer events behind
// loses the queued events and receives one EventResync, after which it must
// read the table again with List. The channel is closed by cancel or Close.
func (s *Store) Watch(table, network string) (<-chan Event, func()) {
	w := NewWatcher(s.opts.WatchBuffer, Event{Type: EventResync})
	s.mu.Lock()
	if s.closed {
		w.Close()
	} else {
		s.watchers[w] = watchKey{table, network}
	}
	s.mu.Unlock()
	return w.C(), func() {
		s.mu.Lock()
		delete(s.watchers, w)
		w.Close()
		s.mu.Unlock()
	}
}
