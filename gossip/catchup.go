package gossip

// This file holds what a node does once Join has found the cluster, so
// that it and the others learn each other without waiting for push/pull:
// introductions, hellos, and the sync of the networks it had joined.

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"
)

// introduce exchanges state (a memberlist push/pull) with a few random
// members besides the seeds, so that more of the cluster hears of this
// node at once: the others learn it from memberlist's broadcast of its
// arrival, which takes a few gossip rounds more per tenfold of nodes, and
// until then they hide its entries and send it nothing.
func (g *Gossip) introduce(seeds []string) {
	g.mu.Lock()
	var addrs []string
	for name, n := range g.mlNodes {
		if a := n.Address(); name != g.name && !slices.Contains(seeds, a) {
			addrs = append(addrs, a)
		}
	}
	g.mu.Unlock()
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	addrs = addrs[:min(len(addrs), introduceTo)]
	if len(addrs) > 0 {
		// In maintLoop: a member that died unnoticed would hold Join
		// for the TCP timeout.
		select {
		case g.introCh <- addrs:
		default:
		}
	}
}

// intro is a hello from a node memberlist has not reported here.
type intro struct {
	addr  netip.AddrPort
	since time.Time
}

// maxIntros bounds the hellos waiting to be checked.
const maxIntros = 64

// hello tells every member this node knows its name and address. One that
// does not hear of it from memberlist within a few gossip rounds (its
// broadcast of a node's arrival misses a node now and then, and only
// push/pull, 30 s or more away, repairs that) exchanges state with it
// (introsDueLocked): until then it would hide this node's entries and
// send it nothing.
func (g *Gossip) hello() {
	ap, err := netip.ParseAddrPort(g.addr)
	if err != nil {
		return
	}
	b := encodeHello(g.name, ap)
	for name, n := range g.nodeMap() {
		if name == g.name {
			continue
		}
		if err := g.ml.SendBestEffort(n, b); err != nil {
			g.stats.drop("send_failed")
			continue
		}
		g.stats.msgsOut.Add(1)
		g.stats.bytesOut.Add(uint64(len(b)))
	}
}

// introsDueLocked returns the addresses of the nodes that said hello more
// than three gossip rounds ago and that memberlist has still not reported,
// and forgets the hellos of the nodes it has.
func (g *Gossip) introsDueLocked(now time.Time) []string {
	var due []string
	for name, in := range g.intros {
		if _, ok := g.mlNodes[name]; ok {
			delete(g.intros, name)
		} else if now.Sub(in.since) > 3*g.cfg.gossipInterval {
			due = append(due, in.addr.String())
		}
	}
	return due
}

// introduceTo is how many members besides the seeds a joining node
// exchanges state with.
const introduceTo = 3

// syncJoined fetches the state of every joined network from a few of its
// participants, as JoinNetwork does: a node that joined its networks
// before it found the cluster (a restart) would otherwise wait for
// push/pull anti-entropy (30 s at the default profile) to learn them.
//
// It also queues this node's own cluster-wide entries (its network
// participation among them) for broadcast again: written before the node
// had found anyone, their first broadcasts reached nobody, and the nodes
// that joined earlier would otherwise learn them only at the next
// push/pull.
func (g *Gossip) syncJoined() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ns := g.nets[""]; ns != nil {
		for _, r := range ns.entries {
			if r.Owner == g.name {
				g.announceLocked(ns, &r.Entry)
			}
		}
	}
	for network := range g.joined {
		ps := g.participantsLocked(network)
		rand.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		for _, p := range ps[:min(len(ps), 3)] {
			g.queueSyncLocked(syncTask{node: p, network: network, reply: true})
		}
	}
}
