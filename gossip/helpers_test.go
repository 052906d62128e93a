package gossip

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/overlayd/overlayd/gossip/gossiptest"
	"github.com/overlayd/overlayd/internal/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger logs memberlist and gossip when GOSSIP_DEBUG is set.
func testLogger() *zap.Logger {
	if os.Getenv("GOSSIP_DEBUG") != "" {
		l, _ := zap.NewDevelopment()
		return l
	}
	return zap.NewNop()
}

// cluster is a set of nodes on one in-memory network.
type cluster struct {
	t     testing.TB
	net   *gossiptest.Network
	nodes map[string]*Gossip
	keys  [][]byte
}

func newCluster(t testing.TB) *cluster {
	c := &cluster{t: t, net: gossiptest.NewNetwork(), nodes: map[string]*Gossip{}}
	t.Cleanup(func() {
		for _, g := range c.nodes {
			g.Close()
		}
	})
	return c
}

// start starts (or restarts) a node and joins it to the given seeds.
func (c *cluster) start(name string, seeds ...string) *Gossip {
	c.t.Helper()
	g, err := New(Options{
		Name:      name,
		Profile:   ProfileTest,
		Keys:      c.keys,
		Logger:    testLogger(),
		Transport: c.net.NewTransport(name),
	})
	if err != nil {
		c.t.Fatalf("New(%s): %v", name, err)
	}
	c.nodes[name] = g
	if len(seeds) > 0 {
		var addrs []string
		for _, s := range seeds {
			addrs = append(addrs, c.net.Addr(s))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Join(ctx, addrs); err != nil {
			c.t.Fatalf("%s: Join(%v): %v", name, seeds, err)
		}
	}
	return g
}

// kill stops a node without Leave.
func (c *cluster) kill(name string) {
	c.nodes[name].Close()
	delete(c.nodes, name)
}

func aliveCount(g *Gossip) int {
	n := 0
	for _, m := range g.Members() {
		if m.State == StateAlive {
			n++
		}
	}
	return n
}

// waitMembers waits until every node sees all the others alive.
func (c *cluster) waitMembers(timeout time.Duration) {
	c.t.Helper()
	testutil.Eventually(c.t, timeout, "membership", func() error {
		for name, g := range c.nodes {
			if n := aliveCount(g); n != len(c.nodes) {
				return fmt.Errorf("%s sees %d alive, want %d", name, n, len(c.nodes))
			}
		}
		return nil
	})
}

// converged reports nil when every node participating in each network has
// the same digest of it.
func (c *cluster) converged(networks ...string) error {
	for _, nw := range append([]string{""}, networks...) {
		var first, firstName string
		for name, g := range c.nodes {
			if nw != "" && !g.isJoined(nw) {
				continue
			}
			d := g.Digest(nw)
			if first == "" {
				first, firstName = d, name
			} else if d != first {
				return fmt.Errorf("network %q: %s has digest %s, %s has %s", nw, firstName, first, name, d)
			}
		}
	}
	return nil
}

func (g *Gossip) isJoined(network string) bool {
	return slices.Contains(g.Networks(), network)
}

// stored reports how many versions of network's entries the node stores.
func (g *Gossip) stored(network string) int {
	return len(g.store.Versions(network))
}
