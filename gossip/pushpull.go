package gossip

// This file holds the push/pull state memberlist exchanges periodically:
// the cluster-wide entries and the networks' sync digests, whose
// differences start bulk syncs.

import (
	"fmt"
	"time"
)

// localState is the push/pull state: the cluster-wide entries (unless over
// the cap) and the sync digests of "" and the joined networks.
func (g *Gossip) localState() []byte {
	g.mu.Lock()
	var global []Entry
	for _, r := range g.nets[""].entries {
		global = append(global, r.Entry)
	}
	ds := []digest{{Network: "", Sum: g.nets[""].sum}}
	for n := range g.joined {
		ds = append(ds, digest{Network: n, Sum: g.nets[n].sum})
	}
	b := encodeState(g.name, global, true, ds)
	g.mu.Unlock()
	g.overCap.Store(len(b) > g.cfg.MaxPushPullBytes)
	if len(b) > g.cfg.MaxPushPullBytes {
		g.stats.stateOverCap.Add(1)
		b = encodeState(g.name, nil, false, ds)
	}
	g.stats.msgsOut.Add(1)
	g.stats.bytesOut.Add(uint64(len(b)))
	return b
}

// mergeRemoteState merges a push/pull state. Networks both nodes take part
// in whose digests differ are repaired by a bulk sync, started by the node
// with the smaller name (both ends of a push/pull see the same difference).
func (g *Gossip) mergeRemoteState(b []byte) {
	g.stats.bytesIn.Add(uint64(len(b)))
	m, err := decodeMessage(b)
	if err == nil && m.Type != msgState {
		err = fmt.Errorf("gossip: push/pull: %w", errType)
	}
	if err != nil {
		g.stats.drop(dropReason(err))
		return
	}
	g.stats.msgsIn.Add(1)
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	for _, e := range m.Entries {
		g.mergeLocked(e, now)
	}
	if m.Sender == g.name || g.name > m.Sender {
		return
	}
	for _, d := range m.Digests {
		if d.Network == "" && m.HasGlobal && !g.overCap.Load() {
			continue // both states carried their entries: merged on both ends
		}
		if d.Network != "" && !g.joined[d.Network] {
			continue
		}
		if g.nets[d.Network].sum != d.Sum {
			g.queueSyncLocked(syncTask{node: m.Sender, network: d.Network, reply: true})
		}
	}
}
