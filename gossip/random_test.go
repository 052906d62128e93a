package gossip

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
)

// TestRandomizedConvergence runs random writes, deletes, network joins and
// leaves, node kills and restarts and partitions on 2–25 nodes (2–8 with
// -short), heals, and checks that every network's digest is the same on
// all its participants and that no node stores a network it left.
func TestRandomizedConvergence(t *testing.T) {
	rounds, maxNodes, steps := 3, 25, 60
	if testing.Short() {
		rounds, maxNodes, steps = 2, 8, 30
	}
	for r := range rounds {
		seed := uint64(time.Now().UnixNano())
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			n := 2 + int(seed%uint64(maxNodes-1))
			if r == 0 {
				n = maxNodes
			}
			randomRun(t, rand.New(rand.NewPCG(seed, uint64(r))), n, steps)
		})
	}
}

func randomRun(t *testing.T, rng *rand.Rand, n, steps int) {
	c := newCluster(t)
	names := make([]string, n)
	networks := []string{"red", "green", "blue"}
	for i := range names {
		names[i] = fmt.Sprintf("n%02d", i)
		if i == 0 {
			c.start(names[i])
		} else {
			c.start(names[i], names[rng.IntN(i)])
		}
	}
	for _, g := range c.nodes {
		g.JoinNetwork(networks[rng.IntN(len(networks))])
	}
	t.Logf("%d nodes, %d steps", n, steps)
	pick := func() *Gossip { return c.nodes[names[rng.IntN(n)]] }
	for step := range steps {
		switch op := rng.IntN(20); {
		case op < 10: // write
			g := pick()
			nw := networks[rng.IntN(len(networks))]
			if rng.IntN(3) == 0 {
				nw = ""
			}
			g.Put("t", nw, fmt.Sprintf("%s-%d", g.Name(), rng.IntN(4)), []byte{byte(step)}) // may be ErrNotJoined
		case op < 12: // delete one of its own
			g := pick()
			for _, nw := range append(g.Networks(), "") {
				for _, e := range g.List("t", nw) {
					if e.Owner == g.Name() {
						g.Delete("t", nw, e.Key)
						break
					}
				}
			}
		case op < 14:
			pick().JoinNetwork(networks[rng.IntN(len(networks))])
		case op < 15:
			pick().LeaveNetwork(networks[rng.IntN(len(networks))])
		case op < 16 && n > 2: // kill and restart with the same name
			name := names[1+rng.IntN(n-1)]
			nets := c.nodes[name].Networks()
			c.kill(name)
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
			g := c.start(name)
			for _, nw := range nets {
				g.JoinNetwork(nw)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			g.Join(ctx, []string{c.net.Addr(names[0])}) // may fail in a partition; rejoin retries
			cancel()
		case op < 18: // partition in two
			var a, b []string
			for _, name := range names {
				if rng.IntN(2) == 0 {
					a = append(a, name)
				} else {
					b = append(b, name)
				}
			}
			c.net.Partition(a, b)
		default:
			c.net.Heal()
		}
		time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
	}
	c.net.Heal()
	start := time.Now()
	testutil.Eventually(t, 40*time.Second, "convergence after heal", func() error {
		for name, g := range c.nodes {
			if a := aliveCount(g); a != n {
				return fmt.Errorf("%s sees %d alive, want %d", name, a, n)
			}
		}
		return c.converged(networks...)
	})
	t.Logf("converged %v after heal", time.Since(start).Round(time.Millisecond))
	for name, g := range c.nodes {
		for _, nw := range networks {
			if g.isJoined(nw) {
				continue
			}
			for _, e := range g.store.Versions(nw) {
				if e.Owner != name {
					t.Errorf("%s stores %s's entry of %s, a network it left", name, e.Owner, nw)
				}
			}
		}
	}
}
