package gossip

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
)

// TestRestartLearnsNetworksWithoutPushPull: a node that restarts, joins
// its network before it finds the cluster (as overlayd does with its kept
// state) and then re-joins, learns the network's entries at once by bulk
// sync, not at the next push/pull (here an hour away).
func TestRestartLearnsNetworksWithoutPushPull(t *testing.T) {
	c := newCluster(t)
	start := func(name string, seeds ...string) *Gossip {
		t.Helper()
		g, err := New(Options{Name: name, Profile: ProfileTest, Logger: testLogger(),
			PushPullInterval: time.Hour, Transport: c.net.NewTransport(name)})
		if err != nil {
			t.Fatal(err)
		}
		c.nodes[name] = g
		if err := g.JoinNetwork("blue"); err != nil {
			t.Fatal(err)
		}
		if err := g.Put("routes", "blue", name, []byte("route of "+name)); err != nil {
			t.Fatal(err)
		}
		if len(seeds) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := g.Join(ctx, []string{c.net.Addr(seeds[0])}); err != nil {
				t.Fatal(err)
			}
		}
		return g
	}
	start("a")
	start("b", "a")
	start("c", "a")
	all := func(want int) func() error {
		return func() error {
			for name, g := range c.nodes {
				if got := len(g.List("routes", "blue")); got != want {
					return fmt.Errorf("%s lists %d routes, want %d", name, got, want)
				}
			}
			return nil
		}
	}
	testutil.Eventually(t, 5*time.Second, "three routes everywhere", all(3))
	c.kill("c")
	testutil.Eventually(t, 5*time.Second, "c's route withdrawn", all(2))
	begin := time.Now()
	start("c", "a")
	testutil.Eventually(t, 5*time.Second, "the restarted node and its peers hold all three routes", all(3))
	t.Logf("restarted node in sync after %v (push/pull every hour)", time.Since(begin).Round(time.Millisecond))
}
