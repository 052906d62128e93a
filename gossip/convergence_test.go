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
	b.handle(encodeHello("c", netip.MustParseAddrPort(cc.Addr())))
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
	b.handle(encodeHello("a", netip.MustParseAddrPort(a.Addr())))
	b.mu.Lock()
	n := len(b.intros)
	b.mu.Unlock()
	if n != 0 {
		t.Errorf("b keeps %d hellos of known nodes", n)
	}
}

// TestBulkCarriesParticipation: a bulk sync of a network may carry the
// network's participation entries (and only those besides its own), and
// the receiver learns from them that the sender takes part.
func TestBulkCarriesParticipation(t *testing.T) {
	part := Entry{Table: tableNet, Key: "blue\x00a", Value: []byte("blue"), Owner: "a", Time: 3}
	route := Entry{Table: "routes", Network: "blue", Key: "a", Value: []byte("r"), Owner: "a", Time: 4}
	m, err := decodeMessage(encodeBulk("a", "blue", 0, []Entry{part, route}))
	if err != nil || len(m.Entries) != 2 {
		t.Fatalf("decode = %+v, %v", m, err)
	}
	for _, bad := range []Entry{
		{Table: tableNet, Key: "red\x00a", Value: []byte("red"), Owner: "a", Time: 3}, // another network's
		{Table: "other", Key: "blue\x00a", Value: []byte("x"), Owner: "a", Time: 3},   // not participation
	} {
		if _, err := decodeMessage(encodeBulk("a", "blue", 0, []Entry{bad})); err == nil {
			t.Errorf("bulk of blue carrying %+v decoded", bad)
		}
	}
	g := newTestStore()
	g.joined["blue"] = true
	g.netLocked("blue")
	g.handle(encodeBulk("a", "blue", 0, []Entry{part, route}))
	if _, ok := g.Get("routes", "blue", "a"); !ok {
		t.Error("the route of a bulk's sender is hidden: its participation was not taken")
	}
	for _, bad := range []string{"", "x", "nope:1", "0.0.0.0:7946", "10.0.0.1:0"} {
		b := appendString(appendString(appendHeader(nil, msgHello), "c"), bad)
		if _, err := decodeMessage(b); err == nil {
			t.Errorf("hello with address %q decoded", bad)
		}
	}
}

// FuzzHello: a hello decodes to a name and a usable address, or is a
// counted drop; never a panic.
func FuzzHello(f *testing.F) {
	f.Add(encodeHello("c", netip.MustParseAddrPort("198.18.0.3:7946")))
	f.Add(encodeHello("n", netip.MustParseAddrPort("[2001:db8::1]:7946")))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil || m.Type != msgHello {
			return
		}
		if m.Sender == "" || !m.Addr.IsValid() || m.Addr.Port() == 0 {
			t.Fatalf("hello %+v accepted", m)
		}
		if got, err := decodeMessage(encodeHello(m.Sender, m.Addr)); err != nil || got.Sender != m.Sender || got.Addr != m.Addr {
			t.Fatalf("re-encoded hello = %+v, %v; want %+v", got, err, m)
		}
		g := newTestStore()
		g.handle(b)
	})
}
