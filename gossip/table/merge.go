package table

// This file holds the stored versions: storing and merging them, the sync
// digest, visibility, and the notification of watchers.

import (
	"encoding/binary"
	"hash/fnv"
	"time"
)

// netLocked returns the state of network, creating it.
func (s *Store) netLocked(network string) *netState {
	ns := s.nets[network]
	if ns == nil {
		ns = &netState{entries: map[ekey]*record{}}
		ns.q = s.opts.NewQueue(func() int { return int(ns.nparts.Load()) + 1 })
		s.nets[network] = ns
	}
	return ns
}

// visibleLocked: a live entry whose owner is up and takes part in the network.
func (s *Store) visibleLocked(r *record) bool {
	if r.Deleted || !s.up[r.Owner] {
		return false
	}
	return r.Network == "" || s.parts[r.Network][r.Owner]
}

// setVisibleLocked reports a change of r's visibility to watchers.
func (s *Store) setVisibleLocked(r *record, vis bool) {
	if r.visible == vis {
		return
	}
	r.visible = vis
	t := EventDelete
	if vis {
		t = EventPut
	}
	s.notifyLocked(Event{Type: t, Entry: r.Entry})
}

func (s *Store) notifyLocked(ev Event) {
	k := watchKey{ev.Entry.Table, ev.Entry.Network}
	first := true
	for w, wk := range s.watchers {
		if wk != k {
			continue
		}
		if first {
			ev.Entry = ev.Entry.clone() // stored entries are never handed out
			first = false
		}
		w.Send(ev)
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
func (s *Store) storeLocked(ns *netState, e Entry, now time.Time, adopted bool) {
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
	if !s.up[e.Owner] {
		if _, ok := s.down[e.Owner]; !ok {
			s.down[e.Owner] = now
		}
	}
	vis := s.visibleLocked(r)
	r.visible = vis
	switch {
	case vis:
		s.notifyLocked(Event{Type: EventPut, Entry: r.Entry})
	case wasVisible:
		s.notifyLocked(Event{Type: EventDelete, Entry: old.Entry})
	}
	if e.Table == tableNet && e.Network == "" {
		s.participationLocked(&r.Entry)
	}
}

func (s *Store) removeLocked(ns *netState, k ekey, r *record) {
	if !r.Deleted {
		ns.sum ^= entryHash(&r.Entry)
	}
	delete(ns.entries, k)
}

// revisitLocked recomputes the visibility of owner's entries in ns.
func (s *Store) revisitLocked(ns *netState, owner string) {
	for _, r := range ns.entries {
		if r.Owner == owner {
			s.setVisibleLocked(r, s.visibleLocked(r))
		}
	}
}

// mergeLocked merges a remote version into the table and reports whether
// it changed anything (so that a delta is relayed).
func (s *Store) mergeLocked(e Entry, now time.Time) bool {
	if e.Network != "" && !s.joined[e.Network] {
		s.stats.drop("not_participating")
		return false
	}
	s.clock = max(s.clock, e.Time)
	ns := s.netLocked(e.Network)
	cur := ns.entries[ekey{e.Table, e.Key}]
	if e.Owner == s.name && cur != nil && cur.Owner == s.name && !cur.adopted {
		// Our own key, written by this run. We are its only writer, so a
		// different version at the same or a later time comes from an
		// earlier run of this node (or is forged): re-assert ours above it,
		// so a stale tombstone can never hide a live entry.
		c := compareEntries(&e, &cur.Entry)
		if c == 0 || e.Time < cur.Time {
			return false
		}
		s.clock++
		re := cur.Entry
		re.Time = s.clock
		s.storeLocked(ns, re, now, false)
		s.announceLocked(ns, &re)
		s.stats.reasserts.Add(1)
		return false
	}
	if cur != nil && compareEntries(&e, &cur.Entry) <= 0 {
		return false
	}
	s.storeLocked(ns, e, now, e.Owner == s.name)
	s.stats.entriesIn.Add(1)
	return true
}
