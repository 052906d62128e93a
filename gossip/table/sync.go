package table

// This file holds bulk syncs: what one sends (a network's whole state, or
// this node's own entries, to one node), and the syncs of a node that has
// just found the cluster. Package gossip queues them (Options.Sync) and
// sends them over TCP.

import (
	"iter"
	"math/rand/v2"
	"strings"
)

// SyncTask is a bulk sync of a network to a node.
type SyncTask struct {
	Node    string
	Network string
	Reply   bool // the receiver answers with its own versions of the network
	Own     bool // only this node's own entries: a new participant catching up
}

// Bulk returns the messages of the bulk sync t: all stored versions of
// its network (tombstones and hidden entries included), or only this
// node's own ones, in messages of at most MaxPushPullBytes; at least one,
// empty when there is nothing to send (or the network is not joined). The
// first message carries the network's participation entries
// (cluster-wide), so the receiver knows at once whom the entries belong
// to and that the sender takes part. The versions are read at the call;
// the messages are encoded as the sequence is walked, once.
func (s *Store) Bulk(t SyncTask) iter.Seq[[]byte] {
	s.mu.Lock()
	es := s.syncEntriesLocked(t)
	s.mu.Unlock()
	return func(yield func([]byte) bool) {
		var flags byte
		if t.Reply {
			flags = bulkReply
		}
		maxBytes := max(s.opts.MaxPushPullBytes, 4096) - 64 - 2*MaxNameLen
		for first := true; first || len(es) > 0; first = false {
			size, i := 0, 0
			for ; i < len(es); i++ {
				l := entryLen(&es[i])
				if size+l > maxBytes && i > 0 {
					break
				}
				size += l
			}
			b := encodeBulk(s.name, t.Network, flags, es[:i])
			es = es[i:]
			flags = 0
			if !yield(b) {
				return
			}
		}
	}
}

// syncEntriesLocked returns what a bulk sync sends: the participation
// entries of the network first (all of them, or only this node's for an
// own-entries sync), then the network's stored versions.
func (s *Store) syncEntriesLocked(t SyncTask) []Entry {
	var es []Entry
	if t.Network != "" && !s.joined[t.Network] {
		return nil
	}
	if t.Network != "" {
		prefix := t.Network + "\x00"
		for k, r := range s.nets[""].entries {
			if k.table == tableNet && strings.HasPrefix(k.key, prefix) && (!t.Own || r.Owner == s.name) {
				es = append(es, r.Entry)
			}
		}
	}
	if ns := s.nets[t.Network]; ns != nil {
		for _, r := range ns.entries {
			if !t.Own || r.Owner == s.name {
				es = append(es, r.Entry)
			}
		}
	}
	return es
}

// SyncJoined fetches the state of every joined network from a few of its
// participants, as JoinNetwork does: a node that joined its networks
// before it found the cluster (a restart) would otherwise wait for
// push/pull anti-entropy (30 s at the default profile) to learn them.
//
// It also queues this node's own cluster-wide entries (its network
// participation among them) for broadcast again: written before the node
// had found anyone, their first broadcasts reached nobody, and the nodes
// that joined earlier would otherwise learn them only at the next
// push/pull.
func (s *Store) SyncJoined() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ns := s.nets[""]; ns != nil {
		for _, r := range ns.entries {
			if r.Owner == s.name {
				s.announceLocked(ns, &r.Entry)
			}
		}
	}
	for network := range s.joined {
		ps := s.participantsLocked(network)
		rand.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		for _, p := range ps[:min(len(ps), 3)] {
			s.queueSyncLocked(SyncTask{Node: p, Network: network, Reply: true})
		}
	}
}
