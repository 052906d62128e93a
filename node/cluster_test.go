package node

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/internal/testutil"
)

// clusterConfig is the configuration of a netstack gossip node on
// loopback (test profile, a fresh state directory, DNS off) that joins
// seeds.
func clusterConfig(t testing.TB, name string, seeds ...string) config.Config {
	cfg := config.Default()
	cfg.Name = name
	cfg.Mode = config.ModeNetstack
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Control = ""
	cfg.Gossip.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Gossip.Profile = gossip.ProfileTest
	cfg.Gossip.Join = seeds
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.DNS.Listen = config.DNSOff
	return cfg
}

// clusterNode starts a node of clusterConfig.
func clusterNode(t testing.TB, name string, seeds ...string) *Node {
	t.Helper()
	return startNode(t, clusterConfig(t, name, seeds...))
}

// startNode builds and starts a node of cfg, crashed at the end of the test.
func startNode(t testing.TB, cfg config.Config, opts ...Option) *Node {
	t.Helper()
	n, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		n.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { n.crash() })
	return n
}

// waitUntil is testutil.Eventually, kept under this name for the
// regression tests that call it.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	testutil.Eventually(t, timeout, what, cond)
}

// waitMembers waits until every node sees every other alive.
func waitMembers(t testing.TB, nodes ...*Node) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, "cluster formed", func() error {
		for _, n := range nodes {
			alive := 0
			for _, m := range n.gossip().Members() {
				if m.State == gossip.StateAlive {
					alive++
				}
			}
			if alive != len(nodes) {
				return fmt.Errorf("%s sees %d alive members, want %d", n.cfg.Name, alive, len(nodes))
			}
		}
		return nil
	})
}

// Two nodes apart (a partition, or two clusters) each create and join one
// name; when they merge, one definition wins and the node that joined the
// other says so, naming what to do; leave and join give it an address of
// the winner.
func TestJoinedNetworkRedefinedAfterMerge(t *testing.T) {
	ctx := context.Background()
	logs := map[string]*observer.ObservedLogs{}
	nodes := map[string]*Node{}
	for _, name := range []string{"a", "b"} {
		core, l := observer.New(zapcore.InfoLevel)
		logs[name] = l
		nodes[name] = startNode(t, clusterConfig(t, name), WithLogger(zap.New(core)))
	}
	cidrs := map[string]string{"a": "10.85.0.0/24", "b": "10.86.0.0/24"}
	for name, n := range nodes {
		if _, err := n.CreateNetwork(ctx, api.CreateNetwork{Name: "split", CIDR: cidrs[name]}); err != nil {
			t.Fatal(err)
		}
		if _, err := n.JoinNetwork(ctx, "split"); err != nil {
			t.Fatal(err)
		}
	}
	jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := nodes["b"].gossip().Join(jctx, []string{nodes["a"].gossip().Addr()}); err != nil {
		t.Fatal(err)
	}
	var winner string
	testutil.Eventually(t, 15*time.Second, "one definition on both", func() error {
		na, _ := nodes["a"].ctl.ipam.Network("split")
		nb, _ := nodes["b"].ctl.ipam.Network("split")
		if !na.Equal(nb) {
			return fmt.Errorf("a has %+v, b has %+v", na, nb)
		}
		winner = na.Creator
		return nil
	})
	loser := map[string]string{"a": "b", "b": "a"}[winner]
	testutil.Eventually(t, 10*time.Second, "the loser says so", func() error {
		if logs[loser].FilterMessageSnippet("defined again elsewhere").FilterField(zap.String("creator", winner)).Len() != 1 {
			return fmt.Errorf("%s logged %v", loser, logs[loser].All())
		}
		return nil
	})
	if n := logs[winner].FilterMessageSnippet("defined again elsewhere").Len(); n != 0 {
		t.Errorf("the winner %s reported %d redefinitions", winner, n)
	}
	ln := nodes[loser]
	if err := ln.LeaveNetwork(ctx, "split"); err != nil {
		t.Fatal(err)
	}
	ni, err := ln.JoinNetwork(ctx, "split")
	if err != nil {
		t.Fatal(err)
	}
	if p := netip.MustParsePrefix(ni.Addr); !netip.MustParsePrefix(cidrs[winner]).Contains(p.Addr()) {
		t.Errorf("after leave and join, %s has %v, want an address of %s", loser, p, cidrs[winner])
	}
}
