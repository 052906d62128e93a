package node

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/network"
	"github.com/overlayd/overlayd/router"
)

// evilMember is a third cluster member that is not an overlayd node: a bare
// gossip instance that writes route entries directly into the gossip table,
// as a compromised or buggy member could.
func evilMember(t *testing.T, name string, vtep netip.AddrPort, seed string, network string) *gossip.Gossip {
	t.Helper()
	g, err := gossip.New(gossip.Options{
		Name: name, BindAddr: "127.0.0.1:0", Profile: gossip.ProfileTest,
		Meta: gossip.Meta{VTEP: vtep, Version: Version},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Join(ctx, []string{seed}); err != nil {
		t.Fatal(err)
	}
	if err := g.JoinNetwork(network); err != nil {
		t.Fatal(err)
	}
	return g
}

func routeFor(n *Node, a netip.Addr) (router.Route, bool) {
	for _, r := range n.rt.Routes() {
		if r.Prefix == netip.PrefixFrom(a, 32) {
			return r, true
		}
	}
	return router.Route{}, false
}

// A member that announces another node's address (issue 10 §3: a node
// named aaa-evil, whose key sorts first, took 10.20.120.1/32) or an
// address nobody leased is refused: the route stays the lease holder's,
// the unleased one is not used, and both are counted in status.
func TestRouteOnlyFromLeaseHolder(t *testing.T) {
	ctx := context.Background()
	a := clusterNode(t, "observer")
	b := clusterNode(t, "victim", a.gossip().Addr())
	waitMembers(t, a, b)
	if _, err := a.CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.20.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.JoinNetwork(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	bi, err := b.JoinNetwork(ctx, "blue")
	if err != nil {
		t.Fatal(err)
	}
	victim := netip.MustParsePrefix(bi.Addr).Addr()
	testutil.Eventually(t, 10*time.Second, "observer routes the victim's address", func() error {
		if r, ok := routeFor(a, victim); !ok || r.Owner != "victim" {
			return fmt.Errorf("route %+v, %v", r, ok)
		}
		return nil
	})

	evilVTEP := netip.MustParseAddrPort("127.0.0.1:9")
	evil := evilMember(t, "aaa-evil", evilVTEP, a.gossip().Addr(), "blue")
	if err := evil.Put(catalog.TableRoutes, "blue", "aaa-evil", catalog.Route{Prefixes: []netip.Prefix{netip.PrefixFrom(victim, 32)}, VTEP: evilVTEP}.Encode()); err != nil {
		t.Fatal(err)
	}
	// The refusal counted is the event that proves the observer has seen
	// the forged entry.
	testutil.Eventually(t, 10*time.Second, "forged route refused", func() error {
		if got := a.ctl.refusedRoutes()[network.RefuseLease]; got != 1 {
			return fmt.Errorf("refused %v", a.ctl.refusedRoutes())
		}
		return nil
	})
	if r, ok := routeFor(a, victim); !ok || r.Owner != "victim" || r.VTEP != b.VTEP() {
		t.Errorf("route for %v after the forged entry = %+v, %v; want the victim's (VTEP %v)", victim, r, ok, b.VTEP())
	}

	// An address nobody holds a lease for.
	unleased := netip.MustParseAddr("10.20.200.200")
	if err := evil.Put(catalog.TableRoutes, "blue", "aaa-evil", catalog.Route{Prefixes: []netip.Prefix{netip.PrefixFrom(unleased, 32)}, VTEP: evilVTEP}.Encode()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "unleased route refused", func() error {
		if got := a.ctl.refusedRoutes()[network.RefuseNoLease]; got != 1 {
			return fmt.Errorf("refused %v", a.ctl.refusedRoutes())
		}
		return nil
	})
	if r, ok := routeFor(a, unleased); ok {
		t.Errorf("unleased %v routed: %+v", unleased, r)
	}
	st, err := a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.RoutesRefused[network.RefuseLease] != 1 || st.RoutesRefused[network.RefuseNoLease] != 1 {
		t.Errorf("status routes_refused = %v, want %s 1 and %s 1", st.RoutesRefused, network.RefuseLease, network.RefuseNoLease)
	}
	if got := refusedMetric(t, a, network.RefuseLease); got != 1 {
		t.Errorf("overlayd_routes_refused_total{reason=%q} = %v, want 1", network.RefuseLease, got)
	}
	// Repeated syncs do not count one entry again.
	if err := a.setRoutes(a.snapshot()); err != nil {
		t.Fatal(err)
	}
	if err := a.setRoutes(a.snapshot()); err != nil {
		t.Fatal(err)
	}
	if got := a.ctl.refusedRoutes(); got[network.RefuseLease] != 1 || got[network.RefuseNoLease] != 1 {
		t.Errorf("after more syncs: refused %v", got)
	}
}

// refusedMetric is the node's overlayd_routes_refused_total of one
// reason, as a scrape of its MetricsRegistry reads it (-1: not there).
func refusedMetric(t *testing.T, n *Node, reason string) float64 {
	t.Helper()
	mfs, err := n.MetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "overlayd_routes_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if l := m.GetLabel(); len(l) == 1 && l[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}
