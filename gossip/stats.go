package gossip

import (
	"sort"
	"sync"
	"sync/atomic"
)

// Stats are the counters of one Gossip instance since New.
type Stats struct {
	MsgsIn       uint64            // messages received and decoded (deltas, bulk, state)
	MsgsOut      uint64            // messages sent (broadcast batches, bulk, state)
	BytesIn      uint64            // bytes of received messages
	BytesOut     uint64            // bytes of sent messages
	EntriesIn    uint64            // entries that changed the local table
	Drops        map[string]uint64 // dropped messages or entries, by reason; refused members as member_name, member_addr, member_meta, member_version, merge
	BulkSyncs    uint64            // bulk syncs of a network sent to a peer
	StateOverCap uint64            // push/pull states that left out global entries (over MaxPushPullBytes)
	Reasserts    uint64            // own entries re-stamped above a newer remote version
	Reaped       uint64            // tombstones and dead owners' entries removed

	// LogSuppressed counts memberlist log lines over the rate limit, not
	// written (garbage at the gossip port logs a line per packet).
	LogSuppressed uint64
	// JoinError is why the last Join attempt failed, one clause per seed
	// ("join 192.0.2.1:7946: refused: ..."); "" before any attempt and
	// once one succeeded. A node with discovery and no seeds shows why
	// it could not join the last node found, while it is alone.
	JoinError string
}

// counters are what Gossip sends; what it takes in is counted by the
// Store, which decodes it.
type counters struct {
	msgsOut, bytesOut, bulkSyncs atomic.Uint64

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

func (c *counters) snapshot() Stats {
	s := Stats{
		MsgsOut: c.msgsOut.Load(), BytesOut: c.bytesOut.Load(),
		BulkSyncs: c.bulkSyncs.Load(), Drops: map[string]uint64{},
	}
	c.mu.Lock()
	for k, v := range c.drops {
		s.Drops[k] = v
	}
	c.mu.Unlock()
	return s
}

// snapshot is Stats: the counters, the tables' (what came in), and the
// guard's refusals, suppressed log lines and join error.
func (g *Gossip) snapshot() Stats {
	s := g.stats.snapshot()
	ts := g.store.Stats()
	s.MsgsIn, s.BytesIn, s.EntriesIn = ts.MsgsIn, ts.BytesIn, ts.EntriesIn
	s.StateOverCap, s.Reasserts, s.Reaped = ts.StateOverCap, ts.Reasserts, ts.Reaped
	for k, v := range ts.Drops {
		s.Drops[k] += v
	}
	if g.cfg == nil || g.cfg.guard == nil {
		return s
	}
	gd := g.cfg.guard
	_, s.LogSuppressed = gd.logs.counts()
	gd.mu.Lock()
	for k, v := range gd.refused {
		s.Drops[k] += v
	}
	s.JoinError = gd.joinErr
	gd.mu.Unlock()
	if s.JoinError == "" { // a node with discovery and no seeds: why it is alone
		g.mu.Lock()
		if len(g.mlNodes) <= 1 {
			s.JoinError = g.discoverErr
		}
		g.mu.Unlock()
	}
	return s
}

// DropReasons returns the reasons in s.Drops, sorted.
func (s Stats) DropReasons() []string {
	r := make([]string, 0, len(s.Drops))
	for k := range s.Drops {
		r = append(r, k)
	}
	sort.Strings(r)
	return r
}
