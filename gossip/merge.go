package gossip

// This file holds the stored versions: storing and merging them, the sync
// digest, visibility, and the notification of watchers.

import (
	"encoding/binary"
	"hash/fnv"
	"time"

	"github.com/hashicorp/memberlist"
)

// netLocked returns the state of network, creating it.
func (g *Gossip) netLocked(network string) *netState {
	ns := g.nets[network]
	if ns == nil {
		ns = &netState{entries: map[ekey]*record{}}
		ns.q = &memberlist.TransmitLimitedQueue{
			NumNodes:       func() int { return int(ns.nparts.Load()) + 1 },
			RetransmitMult: g.cfg.ml.RetransmitMult,
		}
		g.nets[network] = ns
	}
	return ns
}

// visibleLocked: a live entry whose owner is up and takes part in the network.
func (g *Gossip) visibleLocked(r *record) bool {
	if r.Deleted || !g.up[r.Owner] {
		return false
	}
	return r.Network == "" || g.parts[r.Network][r.Owner]
}

// setVisibleLocked reports a change of r's visibility to watchers.
func (g *Gossip) setVisibleLocked(r *record, vis bool) {
	if r.visible == vis {
		return
	}
	r.visible = vis
	t := EventDelete
	if vis {
		t = EventPut
	}
	g.notifyLocked(Event{Type: t, Entry: r.Entry})
}

func (g *Gossip) notifyLocked(ev Event) {
	k := watchKey{ev.Entry.Table, ev.Entry.Network}
	first := true
	for w, wk := range g.watchers {
		if wk != k {
			continue
		}
		if first {
			ev.Entry = ev.Entry.clone() // stored entries are never handed out
			first = false
		}
		w.send(ev)
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
func (g *Gossip) storeLocked(ns *netState, e Entry, now time.Time, adopted bool) {
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
	if !g.up[e.Owner] {
		if _, ok := g.down[e.Owner]; !ok {
			g.down[e.Owner] = now
		}
	}
	vis := g.visibleLocked(r)
	r.visible = vis
	switch {
	case vis:
		g.notifyLocked(Event{Type: EventPut, Entry: r.Entry})
	case wasVisible:
		g.notifyLocked(Event{Type: EventDelete, Entry: old.Entry})
	}
	if e.Table == tableNet && e.Network == "" {
		g.participationLocked(&r.Entry)
	}
}

func (g *Gossip) removeLocked(ns *netState, k ekey, r *record) {
	if !r.Deleted {
		ns.sum ^= entryHash(&r.Entry)
	}
	delete(ns.entries, k)
}

// revisitLocked recomputes the visibility of owner's entries in ns.
func (g *Gossip) revisitLocked(ns *netState, owner string) {
	for _, r := range ns.entries {
		if r.Owner == owner {
			g.setVisibleLocked(r, g.visibleLocked(r))
		}
	}
}

// mergeLocked merges a remote version into the table and reports whether
// it changed anything (so that a delta is relayed).
func (g *Gossip) mergeLocked(e Entry, now time.Time) bool {
	if e.Network != "" && !g.joined[e.Network] {
		g.stats.drop("not_participating")
		return false
	}
	g.clock = max(g.clock, e.Time)
	ns := g.netLocked(e.Network)
	cur := ns.entries[ekey{e.Table, e.Key}]
	if e.Owner == g.name && cur != nil && cur.Owner == g.name && !cur.adopted {
		// Our own key, written by this run. We are its only writer, so a
		// different version at the same or a later time comes from an
		// earlier run of this node (or is forged): re-assert ours above it,
		// so a stale tombstone can never hide a live entry.
		c := compareEntries(&e, &cur.Entry)
		if c == 0 || e.Time < cur.Time {
			return false
		}
		g.clock++
		re := cur.Entry
		re.Time = g.clock
		g.storeLocked(ns, re, now, false)
		g.announceLocked(ns, &re)
		g.stats.reasserts.Add(1)
		return false
	}
	if cur != nil && compareEntries(&e, &cur.Entry) <= 0 {
		return false
	}
	g.storeLocked(ns, e, now, e.Owner == g.name)
	g.stats.entriesIn.Add(1)
	return true
}
