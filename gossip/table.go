package gossip

// This file holds the tables' API: Put, Delete, Get, List, ListAll,
// Digest and Watch, and the local write they share.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

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
