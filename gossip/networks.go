package gossip

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
func (g *Gossip) JoinNetwork(network string) error {
	if !validName(network, MaxNetworkLen) {
		return fmt.Errorf("gossip: network name %q must be 1 to %d bytes without NUL", network, MaxNetworkLen)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	if g.joined[network] {
		return nil
	}
	g.joined[network] = true
	g.netLocked(network)
	g.putLocked(tableNet, "", network+"\x00"+g.name, []byte(network), false)
	n := 0
	for _, p := range g.participantsLocked(network) {
		if n == 3 {
			break
		}
		g.queueSyncLocked(syncTask{node: p, network: network, reply: true})
		n++
	}
	return nil
}

// LeaveNetwork stops participating in network: this node's entries in it
// are deleted (tombstones are still sent to the participants), the others
// are dropped locally, and watchers of the network see them deleted.
func (g *Gossip) LeaveNetwork(network string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	if !g.joined[network] {
		return nil
	}
	ns := g.nets[network]
	for k, r := range ns.entries {
		if r.Owner == g.name && !r.Deleted {
			g.putLocked(k.table, network, k.key, nil, true)
		}
	}
	g.putLocked(tableNet, "", network+"\x00"+g.name, nil, true)
	delete(g.joined, network)
	for k, r := range ns.entries {
		if r.Owner != g.name {
			g.setVisibleLocked(r, false)
			g.removeLocked(ns, k, r)
		}
	}
	return nil
}

// Networks returns the networks this node participates in, sorted.
func (g *Gossip) Networks() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var ns []string
	for n := range g.joined {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

// Participants returns the live nodes participating in network, sorted.
func (g *Gossip) Participants(network string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	ps := g.participantsLocked(network)
	if g.joined[network] {
		ps = append(ps, g.name)
	}
	slices.Sort(ps)
	return ps
}

// participantsLocked returns the up participants of network other than self.
func (g *Gossip) participantsLocked(network string) []string {
	var ps []string
	for p, ok := range g.parts[network] {
		if ok && p != g.name && g.up[p] {
			ps = append(ps, p)
		}
	}
	return ps
}

// participationLocked applies a changed gossip.net entry: the owner's
// entries in that network become visible or hidden.
func (g *Gossip) participationLocked(e *Entry) {
	network, node, ok := strings.Cut(e.Key, "\x00")
	if !ok || node != e.Owner {
		return
	}
	p := g.parts[network]
	if p == nil {
		p = map[string]bool{}
		g.parts[network] = p
	}
	was := p[node]
	if e.Deleted {
		delete(p, node)
	} else {
		p[node] = true
	}
	if !e.Deleted && !was && node != g.name && g.joined[network] {
		// A participant we did not know of. Every delta of ours sent
		// before now went to the participants we knew then, and its
		// epidemic may have died out before anyone knew of this one:
		// send it our own entries of the network (every live owner
		// does the same, so it gets each entry from its writer).
		g.queueSyncLocked(syncTask{node: node, network: network, own: true})
	}
	if ns := g.nets[network]; ns != nil {
		n := 0
		for q := range p {
			if q != g.name && g.up[q] {
				n++
			}
		}
		ns.nparts.Store(int32(n))
		g.revisitLocked(ns, node)
	}
}
