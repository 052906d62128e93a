package e2e

import (
	"context"
	"errors"
	"fmt"

	"github.com/overlayd/overlayd/node"
	"github.com/overlayd/overlayd/node/nodetest"
)

// Conditions for testutil.Eventually over a GossipCluster: each returns
// nil when it holds and otherwise says what it saw, which is what a
// timed-out wait reports.

// routesConverged: each of nodes 0..n-1 routes the n-1 others.
func (c *GossipCluster) routesConverged(n int) func() error {
	return func() error {
		for i := range n {
			if rs := c.RoutesOf(i); len(rs) != n-1 {
				return fmt.Errorf("%s has %d routes, want %d: %v", c.Name(i), len(rs), n-1, rs)
			}
		}
		return nil
	}
}

// knowsService: node i knows service name on network nw.
func (c *GossipCluster) knowsService(i int, nw, name string) func() error {
	return func() error {
		_, err := c.Node(i).Service(context.Background(), nw, name)
		if err != nil {
			return fmt.Errorf("%s: %v", c.Name(i), err)
		}
		return nil
	}
}

// tableHolds: every backend addr of service name is in node i's
// balancer table (with a weight); with in false, none is.
func (c *GossipCluster) tableHolds(i int, in bool, name string, addrs ...string) error {
	nd := c.Node(i)
	for _, a := range addrs {
		if inTable(nd, name, a) != in {
			return fmt.Errorf("%s in %s's table of %s: %v, want %v; the table holds %v", a, c.Name(i), name, !in, in, tableOf(nd, name))
		}
	}
	return nil
}

// tableOf lists the backends (addr and weight) of service name in nd's
// balancer table.
func tableOf(nd *node.Node, name string) []string {
	var out []string
	for _, s := range nodetest.Balancer(nd).Stats().Services {
		if s.Name != name {
			continue
		}
		for _, b := range s.Backends {
			out = append(out, fmt.Sprintf("%s/%d", b.Addr, b.Weight))
		}
	}
	return out
}

// errIf returns an error saying what when bad holds.
func errIf(bad bool, what string) error {
	if bad {
		return errors.New(what)
	}
	return nil
}
