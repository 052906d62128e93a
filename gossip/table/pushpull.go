package table

// This file holds the push/pull state that package gossip has memberlist
// exchange periodically: the cluster-wide entries and the networks' sync
// digests, whose differences start bulk syncs.

import (
	"fmt"
	"time"
)

// State is this node's push/pull state: the cluster-wide entries (unless
// over MaxPushPullBytes) and the sync digests of "" and the joined
// networks.
func (s *Store) State() []byte {
	s.mu.Lock()
	var global []Entry
	for _, r := range s.nets[""].entries {
		global = append(global, r.Entry)
	}
	ds := []digest{{Network: "", Sum: s.nets[""].sum}}
	for n := range s.joined {
		ds = append(ds, digest{Network: n, Sum: s.nets[n].sum})
	}
	b := encodeState(s.name, global, true, ds)
	s.mu.Unlock()
	s.overCap.Store(len(b) > s.opts.MaxPushPullBytes)
	if len(b) > s.opts.MaxPushPullBytes {
		s.stats.stateOverCap.Add(1)
		b = encodeState(s.name, nil, false, ds)
	}
	return b
}

// MergeState merges a peer's push/pull state; b is not retained.
// Networks both nodes take part in whose digests differ are repaired by a
// bulk sync, started by the node with the smaller name (both ends of a
// push/pull see the same difference). A state that does not decode is a
// counted drop.
func (s *Store) MergeState(b []byte) {
	s.stats.bytesIn.Add(uint64(len(b)))
	m, err := decodeMessage(b)
	if err == nil && m.Type != msgState {
		err = fmt.Errorf("gossip: push/pull: %w", errType)
	}
	if err != nil {
		s.stats.drop(dropReason(err))
		return
	}
	s.stats.msgsIn.Add(1)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for _, e := range m.Entries {
		s.mergeLocked(e, now)
	}
	if m.Sender == s.name || s.name > m.Sender {
		return
	}
	for _, d := range m.Digests {
		if d.Network == "" && m.HasGlobal && !s.overCap.Load() {
			continue // both states carried their entries: merged on both ends
		}
		if d.Network != "" && !s.joined[d.Network] {
			continue
		}
		if s.nets[d.Network].sum != d.Sum {
			s.queueSyncLocked(SyncTask{Node: m.Sender, Network: d.Network, Reply: true})
		}
	}
}
