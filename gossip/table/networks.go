package table

// This file holds network participation: joining and leaving a network,
// who takes part, and applying a changed gossip.net entry.

import (
	"fmt"
	"slices"
	"strings"
)

func validName(s string, max int) bool {
	return s != "" && len(s) <= max && !strings.ContainsRune(s, 0)
}

// JoinNetwork makes this node a participant of network: from now on it
// stores and receives the network's entries and may write its own. The
// participation is itself a cluster-wide entry, so peers learn whom to send
// the network's deltas to. The current state is fetched from a few
// participants at once and from every push/pull partner whose digest differs.
func (s *Store) JoinNetwork(network string) error {
	if !validName(network, MaxNetworkLen) {
		return fmt.Errorf("gossip: network name %q must be 1 to %d bytes without NUL", network, MaxNetworkLen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.joined[network] {
		return nil
	}
	s.joined[network] = true
	s.netLocked(network)
	s.putLocked(tableNet, "", network+"\x00"+s.name, []byte(network), false)
	n := 0
	for _, p := range s.participantsLocked(network) {
		if n == 3 {
			break
		}
		s.queueSyncLocked(SyncTask{Node: p, Network: network, Reply: true})
		n++
	}
	return nil
}

// LeaveNetwork stops participating in network: this node's entries in it
// are deleted (tombstones are still sent to the participants), the others
// are dropped locally, and watchers of the network see them deleted.
func (s *Store) LeaveNetwork(network string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if !s.joined[network] {
		return nil
	}
	ns := s.nets[network]
	for k, r := range ns.entries {
		if r.Owner == s.name && !r.Deleted {
			s.putLocked(k.table, network, k.key, nil, true)
		}
	}
	s.putLocked(tableNet, "", network+"\x00"+s.name, nil, true)
	delete(s.joined, network)
	for k, r := range ns.entries {
		if r.Owner != s.name {
			s.setVisibleLocked(r, false)
			s.removeLocked(ns, k, r)
		}
	}
	return nil
}

// Networks returns the networks this node participates in, sorted.
func (s *Store) Networks() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ns []string
	for n := range s.joined {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

// Participants returns the live nodes participating in network, sorted.
func (s *Store) Participants(network string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.participantsLocked(network)
	if s.joined[network] {
		ps = append(ps, s.name)
	}
	slices.Sort(ps)
	return ps
}

// participantsLocked returns the up participants of network other than self.
func (s *Store) participantsLocked(network string) []string {
	var ps []string
	for p, ok := range s.parts[network] {
		if ok && p != s.name && s.up[p] {
			ps = append(ps, p)
		}
	}
	return ps
}

// participationLocked applies a changed gossip.net entry: the owner's
// entries in that network become visible or hidden.
func (s *Store) participationLocked(e *Entry) {
	network, node, ok := strings.Cut(e.Key, "\x00")
	if !ok || node != e.Owner {
		return
	}
	p := s.parts[network]
	if p == nil {
		p = map[string]bool{}
		s.parts[network] = p
	}
	was := p[node]
	if e.Deleted {
		delete(p, node)
	} else {
		p[node] = true
	}
	if !e.Deleted && !was && node != s.name && s.joined[network] {
		// A participant we did not know of. Every delta of ours sent
		// before now went to the participants we knew then, and its
		// epidemic may have died out before anyone knew of this one:
		// send it our own entries of the network (every live owner
		// does the same, so it gets each entry from its writer).
		s.queueSyncLocked(SyncTask{Node: node, Network: network, Own: true})
	}
	if ns := s.nets[network]; ns != nil {
		n := 0
		for q := range p {
			if q != s.name && s.up[q] {
				n++
			}
		}
		ns.nparts.Store(int32(n))
		s.revisitLocked(ns, node)
	}
}
