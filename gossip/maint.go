package gossip

// This file holds maintLoop: reaping tombstones and the entries of
// long-dead owners, rejoining lost seeds and dead nodes, and the state
// exchanges catchup.go asks for.

import (
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// maintLoop reaps tombstones and the entries of long-dead owners, and
// re-joins lost seeds and dead nodes.
func (g *Gossip) maintLoop() {
	defer g.wg.Done()
	reap := time.NewTicker(g.cfg.reapInterval)
	defer reap.Stop()
	rejoin := time.NewTicker(g.cfg.RejoinInterval)
	defer rejoin.Stop()
	for {
		select {
		case <-g.stop:
			return
		case now := <-reap.C:
			g.reap(now)
		case <-rejoin.C:
			g.rejoin()
		case addrs := <-g.introCh:
			// Push/pull with members a joining node introduces itself
			// to, or with nodes that said hello and that memberlist did
			// not report: both ends learn each other at once.
			if _, err := g.ml.Join(addrs); err != nil {
				g.log.Debug("exchanging state", zap.Strings("addrs", addrs), zap.Error(err))
			}
		}
	}
}

// reap reaps the tables, and forgets the members the tables forgot:
// down for longer than DeadOwnerGrace, unless back since.
func (g *Gossip) reap(now time.Time) {
	forgotten := g.store.Reap(now)
	if len(forgotten) == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, o := range forgotten {
		if m := g.members[o]; m != nil && m.State != StateAlive && m.State != StateSuspect {
			delete(g.members, o)
		}
	}
}

// rejoin joins again every seed that is not a live member, and one random
// dead (not left) node: memberlist alone does not heal a partition once
// both sides have declared each other dead.
func (g *Gossip) rejoin() {
	live := map[string]bool{}
	for _, n := range g.nodeMap() {
		live[n.Address()] = true
	}
	g.mu.Lock()
	if g.left {
		g.mu.Unlock()
		return
	}
	var try []string
	for _, s := range g.seeds {
		if !live[s] {
			try = append(try, s)
		}
	}
	var dead []string
	for _, m := range g.members {
		if m.State == StateDead && m.Addr.IsValid() && !live[m.Addr.String()] {
			dead = append(dead, m.Addr.String())
		}
	}
	g.mu.Unlock()
	if len(dead) > 0 {
		try = append(try, dead[rand.IntN(len(dead))])
	}
	for _, a := range try {
		if a == g.addr {
			continue
		}
		select {
		case <-g.stop:
			return
		default:
		}
		if _, err := g.ml.Join([]string{a}); err != nil {
			g.log.Debug("rejoin failed", zap.String("addr", a), zap.Error(err))
		}
	}
}
