package node

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
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

// clusterNode starts a node of clusterConfig. setup, if not nil, changes
// the node before Start (hooks).
func clusterNode(t testing.TB, name string, setup func(*Node), seeds ...string) *Node {
	t.Helper()
	return startNode(t, clusterConfig(t, name, seeds...), setup)
}

// startNode builds and starts a node of cfg, crashed at the end of the test.
func startNode(t testing.TB, cfg config.Config, setup func(*Node), opts ...Option) *Node {
	t.Helper()
	n, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(n)
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

// racePair starts two clustered nodes whose network creations pass their
// checks, then wait for each other before writing: each writes before the
// other's definition can reach it, the race of issue 9 item 6.
func racePair(t *testing.T) (a, b *Node) {
	var barrier sync.WaitGroup
	barrier.Add(2)
	hook := func(n *Node) {
		n.ctl.hooks.beforeCreate = func(string) {
			barrier.Done()
			barrier.Wait()
		}
	}
	a = clusterNode(t, "a", hook)
	b = clusterNode(t, "b", hook, a.gossip().Addr())
	waitMembers(t, a, b)
	return a, b
}

type createResult struct {
	node string
	info api.NetworkInfo
	err  error
}

func createAtOnce(a, b *Node, name, cidrA, cidrB string) []createResult {
	res := make([]createResult, 2)
	var wg sync.WaitGroup
	for i, c := range []struct {
		n    *Node
		cidr string
	}{{a, cidrA}, {b, cidrB}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			info, err := c.n.CreateNetwork(ctx, api.CreateNetwork{Name: name, CIDR: c.cidr})
			res[i] = createResult{c.n.cfg.Name, info, err}
		}()
	}
	wg.Wait()
	return res
}

// Two nodes create one network name with different CIDRs at the same
// moment: exactly one is told success, the other a conflict that names the
// winner and its CIDR; both end with the winner's definition, and the
// loser's join gets an address of it.
func TestCreateNetworkRaceLoserIsTold(t *testing.T) {
	a, b := racePair(t)
	cidrs := map[string]string{"a": "10.81.0.0/16", "b": "10.82.0.0/16"}
	res := createAtOnce(a, b, "race2", cidrs["a"], cidrs["b"])
	var won, lost []createResult
	for _, r := range res {
		if r.err == nil {
			won = append(won, r)
		} else {
			lost = append(lost, r)
		}
	}
	if len(won) != 1 || len(lost) != 1 {
		t.Fatalf("CreateNetwork on both at once = %+v; want one success and one conflict", res)
	}
	w, l := won[0], lost[0]
	if w.info.CIDR != cidrs[w.node] || w.info.Creator != w.node {
		t.Errorf("winner %s: %+v, want CIDR %s created by %s", w.node, w.info, cidrs[w.node], w.node)
	}
	if api.StatusOf(l.err) != 409 {
		t.Fatalf("loser %s: %v, want a 409 conflict", l.node, l.err)
	}
	for _, want := range []string{"node " + w.node, cidrs[w.node], cidrs[l.node], "won"} {
		if !strings.Contains(l.err.Error(), want) {
			t.Errorf("loser %s: %q does not say %q", l.node, l.err.Error(), want)
		}
	}
	loser := map[string]*Node{"a": a, "b": b}[l.node]
	ni, err := loser.JoinNetwork(context.Background(), "race2")
	if err != nil {
		t.Fatal(err)
	}
	if p := netip.MustParsePrefix(ni.Addr); !netip.MustParsePrefix(cidrs[w.node]).Contains(p.Addr()) {
		t.Errorf("loser's join: address %v, want one of the winner's %s", p, cidrs[w.node])
	}
}

// The same network created on two nodes at once (say, every node's
// configuration lists it) is what both asked for: both succeed, and
// agree on the creator.
func TestCreateNetworkRaceAlike(t *testing.T) {
	a, b := racePair(t)
	res := createAtOnce(a, b, "same", "10.83.0.0/16", "10.83.0.0/16")
	for _, r := range res {
		if r.err != nil {
			t.Fatalf("%s: %v", r.node, r.err)
		}
	}
	if res[0].info.Creator != res[1].info.Creator || res[0].info.VNI != res[1].info.VNI {
		t.Errorf("the two creations disagree: %+v / %+v", res[0].info, res[1].info)
	}
}

// A join waiting for a network it does not know yet does not hold the
// operations lock: a create on the same node goes ahead meanwhile (and
// here brings the network the join waits for).
func TestJoinWaitDoesNotBlockCreate(t *testing.T) {
	waiting := make(chan struct{})
	n := clusterNode(t, "solo", func(n *Node) {
		n.ctl.hooks.waitingNetwork = func(string) { close(waiting) }
	})
	joined := make(chan error, 1)
	go func() {
		_, err := n.JoinNetwork(context.Background(), "later")
		joined <- err
	}()
	<-waiting
	if _, err := n.CreateNetwork(context.Background(), api.CreateNetwork{Name: "later", CIDR: "10.84.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if err := <-joined; err != nil {
		t.Errorf("join of a network created while it waited: %v", err)
	}
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
		nodes[name] = startNode(t, clusterConfig(t, name), nil, WithLogger(zap.New(core)))
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
		if na != nb {
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
