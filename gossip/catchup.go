package gossip

// This file holds what a node does once Join has found the cluster, so
// that it and the others learn each other without waiting for push/pull:
// introductions and hellos (the sync of the networks it had joined is
// package table's SyncJoined).

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/overlayd/overlayd/gossip/table"
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
	b := table.EncodeHello(g.name, ap)
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
