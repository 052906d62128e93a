package gossip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/gossip/table"
	"github.com/overlayd/overlayd/internal/testutil"
)

// TestConvergenceAfterJoins: nodes join the cluster one by one and, at
// once, the network, writing a route; right after each join an older node
// writes an entry too. Push/pull is an hour away, so whatever the deltas
// and bulk syncs miss stays missing: every entry must reach every
// participant within a few seconds (generous: it takes well under one at
// this profile). A node joins through every member it knows, so each one
// hears of it at once and the membership does not depend on memberlist's
// own broadcasts (a miss of those is memberlist's to repair, at push/pull).
//
// Before the fix, a route written right after a join reached only the
// participants its writer knew then, and died out there; the newcomer's
// request for the network's state was answered by nodes that did not yet
// know it, and nobody told it what it had missed.
func TestConvergenceAfterJoins(t *testing.T) {
	n := 16
	if testing.Short() {
		n = 10
	}
	for _, seedOnly := range []bool{false, true} {
		name := "join-all"
		if seedOnly {
			name = "join-one-seed"
		}
		t.Run(name, func(t *testing.T) { convergeAfterJoins(t, n, seedOnly) })
	}
}

func convergeAfterJoins(t *testing.T, n int, seedOnly bool) {
	c := newCluster(t)
	type want struct{ table, key, owner string }
	var wants []want
	var names []string
	for i := range n {
		name := fmt.Sprintf("n%02d", i)
		g, err := New(Options{Name: name, Profile: ProfileTest, Logger: testLogger(),
			PushPullInterval: time.Hour, Transport: c.net.NewTransport(name)})
		if err != nil {
			t.Fatal(err)
		}
		c.nodes[name] = g
		if i > 0 {
			var seeds []string
			for _, o := range names {
				seeds = append(seeds, c.net.Addr(o))
			}
			if seedOnly {
				seeds = seeds[:1]
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := g.Join(ctx, seeds)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
		names = append(names, name)
		if err := g.JoinNetwork("blue"); err != nil {
			t.Fatal(err)
		}
		if err := g.Put("routes", "blue", name, []byte("route of "+name)); err != nil {
			t.Fatal(err)
		}
		wants = append(wants, want{"routes", name, name})
		if i > 0 {
			o := c.nodes[names[rand.IntN(i)]]
			key := fmt.Sprintf("after-%s", name)
			if err := o.Put("services", "blue", key, []byte("x")); err != nil {
				t.Fatal(err)
			}
			wants = append(wants, want{"services", key, o.Name()})
		}
	}
	start := time.Now()
	testutil.Eventually(t, 5*time.Second, "every entry on every participant", func() error {
		var miss []string
		for _, name := range names {
			g := c.nodes[name]
			if !seedOnly && aliveCount(g) != n {
				return fmt.Errorf("%s sees %d members alive, want %d", name, aliveCount(g), n)
			}
			for _, w := range wants {
				if _, ok := g.Get(w.table, "blue", w.key); !ok {
					miss = append(miss, fmt.Sprintf("%s lacks %s/%s of %s", name, w.table, w.key, w.owner))
				}
			}
		}
		if len(miss) > 0 {
			slices.Sort(miss)
			return fmt.Errorf("%d missing: %s", len(miss), strings.Join(miss[:min(len(miss), 12)], "; "))
		}
		return nil
	})
	t.Logf("%d nodes: every entry everywhere %v after the last join", n, time.Since(start).Round(time.Millisecond))
}

// TestHelloFromUnknownNode: a node that says hello and that memberlist has
// not reported (its broadcast of the arrival missed this node) is joined
// at once: both ends learn each other, and the newcomer the rest of the
// cluster, without waiting for push/pull (an hour away here).
func TestHelloFromUnknownNode(t *testing.T) {
	c := newCluster(t)
	opts := func(name string) Options {
		return Options{Name: name, Profile: ProfileTest, Logger: testLogger(), PushPullInterval: time.Hour, Transport: c.net.NewTransport(name)}
	}
	for _, name := range []string{"a", "b", "c"} {
		g, err := New(opts(name))
		if err != nil {
			t.Fatal(err)
		}
		c.nodes[name] = g
	}
	a, b, cc := c.nodes["a"], c.nodes["b"], c.nodes["c"]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Join(ctx, []string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	if err := cc.JoinNetwork("blue"); err != nil {
		t.Fatal(err)
	}
	if err := cc.Put("routes", "blue", "c", []byte("route of c")); err != nil {
		t.Fatal(err)
	}
	if err := b.JoinNetwork("blue"); err != nil {
		t.Fatal(err)
	}
	// c knows nobody: its hello reaches b only (as if memberlist's news
	// of it had missed b, and b were the only one to hear from it).
	b.handle(table.EncodeHello("c", netip.MustParseAddrPort(cc.Addr())))
	testutil.Eventually(t, 5*time.Second, "b and c know each other, c knows a, b holds c's route", func() error {
		if n := aliveCount(b); n != 3 {
			return fmt.Errorf("b sees %d alive", n)
		}
		if n := aliveCount(cc); n != 3 {
			return fmt.Errorf("c sees %d alive", n)
		}
		if _, ok := b.Get("routes", "blue", "c"); !ok {
			return errors.New("b lacks c's route")
		}
		return nil
	})
	// A hello from a node already known does nothing.
	b.handle(table.EncodeHello("a", netip.MustParseAddrPort(a.Addr())))
	b.mu.Lock()
	n := len(b.intros)
	b.mu.Unlock()
	if n != 0 {
		t.Errorf("b keeps %d hellos of known nodes", n)
	}
}
