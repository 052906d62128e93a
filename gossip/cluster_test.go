package gossip

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/overlayd/overlayd/gossip/table"
	"github.com/overlayd/overlayd/internal/testutil"
)

func TestReplication(t *testing.T) {
	c := newCluster(t)
	a := c.start("a")
	b := c.start("b", "a")
	cc := c.start("c", "a")
	c.waitMembers(5 * time.Second)
	for _, g := range []*Gossip{a, b} {
		if err := g.JoinNetwork("blue"); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Put("networks", "", "blue", []byte("10.1.0.0/24")); err != nil {
		t.Fatal(err)
	}
	if err := a.Put("routes", "blue", "10.1.0.2", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := cc.Put("routes", "blue", "x", []byte("c")); !errors.Is(err, ErrNotJoined) {
		t.Errorf("Put on a network not joined = %v, want ErrNotJoined", err)
	}
	testutil.Eventually(t, 5*time.Second, "replication", func() error {
		for _, g := range []*Gossip{a, b, cc} {
			if _, ok := g.Get("networks", "", "blue"); !ok {
				return fmt.Errorf("%s lacks networks/blue", g.Name())
			}
		}
		if e, ok := b.Get("routes", "blue", "10.1.0.2"); !ok || string(e.Value) != "a" || e.Owner != "a" {
			return fmt.Errorf("b: Get(routes/blue/10.1.0.2) = %+v, %v", e, ok)
		}
		return nil
	})
	if err := b.Put("routes", "blue", "10.1.0.2", []byte("b")); !errors.Is(err, ErrNotOwner) {
		t.Errorf("b.Put on a's key = %v, want ErrNotOwner", err)
	}
	if err := b.Delete("routes", "blue", "10.1.0.2"); !errors.Is(err, ErrNotOwner) {
		t.Errorf("b.Delete on a's key = %v, want ErrNotOwner", err)
	}
	if n := cc.stored("blue"); n != 0 {
		t.Errorf("c (not in blue) stores %d entries of blue", n)
	}
	// Delete replicates.
	if err := a.Delete("routes", "blue", "10.1.0.2"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "delete", func() error {
		if _, ok := b.Get("routes", "blue", "10.1.0.2"); ok {
			return errors.New("b still sees the deleted entry")
		}
		return nil
	})
	if err := c.converged("blue"); err != nil {
		t.Error(err)
	}
	if got := b.Participants("blue"); fmt.Sprint(got) != "[a b]" {
		t.Errorf("Participants(blue) = %v, want [a b]", got)
	}
	ms := a.Members()
	if len(ms) != 3 || ms[0].Name != "a" || ms[0].State != StateAlive {
		t.Errorf("Members() = %+v", ms)
	}
}

// TestKillRestart: a killed node's entries are withdrawn on the survivors and
// come back when it restarts with the same name, even over a tombstone
// with a later Lamport time (its own from the earlier run, or a forged one
// injected on a survivor).
func TestKillRestart(t *testing.T) {
	c := newCluster(t)
	a := c.start("a")
	for _, n := range []string{"b", "c", "d"} {
		c.start(n, "a")
	}
	c.waitMembers(5 * time.Second)
	for _, g := range c.nodes {
		if err := g.JoinNetwork("blue"); err != nil {
			t.Fatal(err)
		}
	}
	b := c.nodes["b"]
	events, cancel := b.Watch("routes", "blue")
	defer cancel()
	for _, k := range []string{"k1", "k2", "k3"} {
		if err := a.Put("routes", "blue", k, []byte("v-"+k)); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 { // move a's clock well ahead of the restarted run's
		if err := a.Put("routes", "blue", "k3", []byte("churn")); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Delete("routes", "blue", "k2"); err != nil { // tombstone at a high time
		t.Fatal(err)
	}
	see := func(want int) func() error {
		return func() error {
			for name, g := range c.nodes {
				if name == "a" {
					continue
				}
				if got := len(g.List("routes", "blue")); got != want {
					return fmt.Errorf("%s lists %d routes of a, want %d", name, got, want)
				}
			}
			return nil
		}
	}
	testutil.Eventually(t, 5*time.Second, "a's routes everywhere", see(2))

	c.kill("a")
	start := time.Now()
	testutil.Eventually(t, 10*time.Second, "a's routes withdrawn", see(0))
	t.Logf("withdrawn on all survivors %v after kill", time.Since(start).Round(time.Millisecond))
	deletes := map[string]bool{}
	for len(deletes) < 2 {
		select {
		case ev := <-events:
			if ev.Type == EventDelete && ev.Entry.Owner == "a" {
				deletes[ev.Entry.Key] = true
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("watcher saw deletes of %v, want k1 and k3", deletes)
		}
	}
	// A forged tombstone for a's k1, far ahead in Lamport time, reaches b.
	forged := Entry{Table: "routes", Network: "blue", Key: "k1", Owner: "a", Time: 1 << 40, Deleted: true}
	b.handle(table.EncodeDeltas([]Entry{forged}))

	// Restart a: a fresh run, clock at zero, that writes its routes again
	// before joining (as a node re-supplying persisted state would).
	a = c.start("a")
	if err := a.JoinNetwork("blue"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"k1", "k2"} {
		if err := a.Put("routes", "blue", k, []byte("new-"+k)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := a.Join(ctx, []string{c.net.Addr("b")}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "a's routes back everywhere", func() error {
		for name, g := range c.nodes {
			for _, k := range []string{"k1", "k2"} {
				e, ok := g.Get("routes", "blue", k)
				if !ok || string(e.Value) != "new-"+k {
					return fmt.Errorf("%s: Get(%s) = %q, %v; want new-%s", name, k, e.Value, ok, k)
				}
			}
			// k3 was not re-written: adopted from the cluster, visible again.
			if e, ok := g.Get("routes", "blue", "k3"); !ok || string(e.Value) != "churn" {
				return fmt.Errorf("%s: Get(k3) = %q, %v; want churn", name, e.Value, ok)
			}
		}
		return c.converged("blue")
	})
	if a.Stats().Reasserts == 0 {
		t.Errorf("a re-asserted nothing; Stats = %+v", a.Stats())
	}
}

// TestKeys: a node with a wrong key or no key cannot join a keyed cluster,
// and the cluster is unchanged.
func TestKeys(t *testing.T) {
	key := func(b byte) []byte { k := make([]byte, 32); k[0] = b; return k }
	c := newCluster(t)
	c.keys = [][]byte{key(1)}
	a := c.start("a")
	b := c.start("b", "a")
	c.waitMembers(5 * time.Second)
	if err := a.Put("t", "", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		keys [][]byte
	}{{"wrongkey", [][]byte{key(2)}}, {"nokey", nil}} {
		g, err := New(Options{Name: tc.name, Profile: ProfileTest, Keys: tc.keys, Transport: c.net.NewTransport(tc.name)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		err = g.Join(ctx, []string{c.net.Addr("a")})
		cancel()
		if err == nil {
			t.Errorf("%s: Join succeeded, want refused", tc.name)
		}
		if err := g.Put("t", "", "evil", []byte("x")); err != nil {
			t.Fatal(err)
		}
		// One more join, whose push/pull carries the evil entry: when it
		// returns, the cluster has answered it (and refused it).
		ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
		err = g.Join(ctx, []string{c.net.Addr("a")})
		cancel()
		if err == nil {
			t.Errorf("%s: second Join succeeded, want refused", tc.name)
		}
		g.Close()
		// A write of b's, sent after everything the refused node sent,
		// reaching a proves a has handled all of that.
		marker := "after-" + tc.name
		if err := b.Put("t", "", marker, []byte("m")); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, "b's marker on a", func() error {
			if _, ok := a.Get("t", "", marker); !ok {
				return errors.New("a lacks it")
			}
			return nil
		})
	}
	for _, g := range []*Gossip{a, b} {
		if n := len(g.Members()); n != 2 {
			t.Errorf("%s: %d members after refused joins, want 2: %+v", g.Name(), n, g.Members())
		}
		if _, ok := g.Get("t", "", "evil"); ok {
			t.Errorf("%s: accepted an entry from a refused node", g.Name())
		}
	}
	if _, ok := b.Get("t", "", "k"); !ok {
		t.Error("b lacks a's entry")
	}
	if _, err := New(Options{Name: "x", Keys: [][]byte{make([]byte, 16)}}); err == nil {
		t.Error("New with a 16-byte key succeeded")
	}
}

// TestRealSockets runs three encrypted nodes on 127.0.0.1.
func TestRealSockets(t *testing.T) {
	key := make([]byte, 32)
	key[5] = 7
	var gs []*Gossip
	defer func() {
		for _, g := range gs {
			g.Close()
		}
	}()
	for i := range 3 {
		g, err := New(Options{Name: fmt.Sprintf("n%d", i), BindAddr: "127.0.0.1:0", Profile: ProfileTest, Keys: [][]byte{key}, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
		if i > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := g.Join(ctx, []string{gs[0].Addr()})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := g.JoinNetwork("blue"); err != nil {
			t.Fatal(err)
		}
		if err := g.Put("routes", "blue", g.Name(), []byte(g.Addr())); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, "convergence over sockets", func() error {
		for _, g := range gs {
			if n := len(g.List("routes", "blue")); n != 3 {
				return fmt.Errorf("%s lists %d routes, want 3", g.Name(), n)
			}
			if n := aliveCount(g); n != 3 {
				return fmt.Errorf("%s sees %d alive", g.Name(), n)
			}
		}
		if gs[0].Digest("blue") != gs[1].Digest("blue") || gs[1].Digest("blue") != gs[2].Digest("blue") {
			return errors.New("digests differ")
		}
		return nil
	})
	if err := gs[2].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "left node withdrawn", func() error {
		for _, m := range gs[0].Members() {
			if m.Name == "n2" && m.State != StateLeft {
				return fmt.Errorf("n2 is %v", m.State)
			}
		}
		if n := len(gs[0].List("routes", "blue")); n != 2 {
			return fmt.Errorf("n0 lists %d routes, want 2", n)
		}
		return nil
	})
}
