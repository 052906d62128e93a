package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/testutil"
)

// The dual-stack network of TestNetnsDualStack.
const (
	dsCIDR4 = "10.40.0.0/24"
	dsCIDR6 = "fd00:40::/64"
	dsDNS6  = "fd00:40::1" // the IPv6 CIDR's first usable address
)

// TestNetnsDualStack is issue 14's namespace e2e: two hosts in tun mode
// whose VXLAN and gossip run over the IPv6 underlay (2001:2::N), a network
// with an IPv4 and an IPv6 CIDR created and joined with the CLI, and an
// endpoint namespace attached to each host. Nodes and endpoints get an
// address of each family; both families ping between every pair and carry
// TCP byte-exact, node to node and endpoint to endpoint across the hosts;
// the routes' VTEPs are IPv6; names resolve to AAAA and back under
// ip6.arpa; a service gets an IPv6 VIP balanced over IPv6 backends on both
// hosts.
func TestNetnsDualStack(t *testing.T) {
	RequireRoot(t, "ping", "dig", "curl")
	began := time.Now()
	el := &epLab{gossipLab: newGossipLab(t, 2, "test")}
	el.v6 = true
	el.start(0)
	el.start(1)
	h1, h2 := el.lab.Hosts[0], el.lab.Hosts[1]

	out := el.mustOverlayd(0, "network", "create", "blue", "--cidr", dsCIDR4, "--cidr", dsCIDR6)
	t.Logf("h1: overlayd network create blue --cidr %s --cidr %s\n%s", dsCIDR4, dsCIDR6, strings.TrimSpace(out))
	ctx := context.Background()
	var v4, v6 [2]netip.Addr
	for i, o := range el.ods {
		testutil.Eventually(t, 20*time.Second, el.lab.Hosts[i].Name+": join blue", func() error {
			ni, err := o.Client().JoinNetwork(ctx, "blue")
			if err != nil {
				return err
			}
			v4[i], v6[i] = dsAddrs(t, ni.Addrs)
			return nil
		})
		t.Logf("%s: joined blue as %v and %v", el.lab.Hosts[i].Name, v4[i], v6[i])
	}
	el.waitRoutes(15*time.Second, "both hosts learn each other's routes", func(int, map[string]string) bool { return el.converged("blue") })

	// The routes h1 learned from h2 point at h2's IPv6 underlay address.
	routes := el.mustOverlayd(0, "routes")
	t.Logf("h1: overlayd routes\n%s", strings.TrimSpace(routes))
	for _, want := range []string{v4[1].String() + "/32", v6[1].String() + "/128", "[" + h2.Underlay6.String() + "]:4789"} {
		if !strings.Contains(routes, want) {
			t.Errorf("h1's routes lack %s", want)
		}
	}

	t.Run("nodes", func(t *testing.T) {
		// The network's IPv6 DNS address sits on ovl0 beside the node's
		// own; deprecated, so that the kernel never takes it as a source.
		if got := h1.Run("ip", "-6", "addr", "show", "dev", "ovl0", "to", dsDNS6+"/128"); !strings.Contains(got, "deprecated") {
			t.Errorf("h1: ovl0's %s is not deprecated:\n%s", dsDNS6, got)
		}
		pings(t, []pingCase{
			{from: h1, to: v4[1].String(), ok: true}, {from: h1, to: v6[1].String(), ok: true},
			{from: h2, to: v4[0].String(), ok: true}, {from: h2, to: v6[0].String(), ok: true},
		})
		if t.Failed() {
			for i, h := range []*Host{h1, h2} {
				t.Logf("%s: drops %v\n%s%s", h.Name, el.status(t, i).Traffic.Drops, h.Run("ip", "-6", "addr", "show", "dev", "ovl0"), h.Run("ip", "-6", "route"))
			}
		}
		transfer(t, h1, h2, netip.AddrPortFrom(v6[1], 9600), 8<<20)
		transfer(t, h2, h1, netip.AddrPortFrom(v6[0], 9601), 8<<20)
		transfer(t, h1, h2, netip.AddrPortFrom(v4[1], 9602), 1<<20)
	})

	// An endpoint on each host, with the default routes of both families
	// (the namespaces outlive the subtest: the DNS one asks from them).
	e1, e2 := el.netns(t, "ds1", 0), el.netns(t, "ds2", 1)
	var ep4, ep6 [2]netip.Addr
	t.Run("endpoints", func(t *testing.T) {
		for k, e := range []*epNS{e1, e2} {
			in := el.attach(t, e, e.Name, "--network", "blue", "--default-route")
			ep4[k], ep6[k] = dsAddrs(t, in.Addrs)
			e.Addr = ep6[k].String()
			t.Logf("%s on %s: %v and %v", e.Name, el.lab.Hosts[e.On].Name, ep4[k], ep6[k])
			if got := e.Run("ip", "-6", "route", "show", "default"); !strings.Contains(got, "default dev eth0") {
				t.Errorf("%s: no IPv6 default route on eth0: %q", e.Name, got)
			}
		}
		el.waitRouted(t, 0, ep6[1].String(), true, 15*time.Second)
		pings(t, []pingCase{
			{from: e1.Host, to: ep6[1].String(), ok: true}, {from: e2.Host, to: ep6[0].String(), ok: true},
			{from: e1.Host, to: ep4[1].String(), ok: true}, {from: e1.Host, to: v6[1].String(), ok: true},
			{from: h2, to: ep6[0].String(), ok: true},
		})
		transfers(t, []xfer{{src: e1, dst: e2, port: 9700, size: 8 << 20}, {src: e2, dst: e1, port: 9701, size: 8 << 20}})
	})

	t.Run("dns", func(t *testing.T) {
		digUntil(t, h1, 10*time.Second, v6[1].String(), "@127.0.0.1", "-p", "5353", "AAAA", "h2.blue.overlay")
		digUntil(t, h1, 10*time.Second, v4[1].String(), "@127.0.0.1", "-p", "5353", "A", "h2.blue.overlay")
		digUntil(t, h1, 10*time.Second, "h2.blue.overlay.", "@127.0.0.1", "-p", "5353", "-x", v6[1].String())
		digUntil(t, h2, 10*time.Second, v6[0].String(), "@"+dsDNS6, "AAAA", "h1.blue.overlay")
		if !ep6[1].IsValid() {
			t.Fatal("no endpoint names to ask for (the endpoints subtest failed)")
		}
		name := "ds2.blue.overlay"
		digUntil(t, e1.Host, 10*time.Second, ep6[1].String(), "@"+dsDNS6, "AAAA", name)
		digUntil(t, e1.Host, 10*time.Second, ep4[1].String(), "@"+dsDNS6, "A", name)
		digUntil(t, e1.Host, 10*time.Second, name+".", "@"+dsDNS6, "-x", ep6[1].String())
	})

	t.Run("vip", func(t *testing.T) {
		// The client is h1's endpoint; the backends are on h2 (a node
		// balances its clients over the other nodes' backends): h2 itself
		// at its IPv6 address, and h2's endpoint ds2 by name, which is a
		// backend of each family.
		if !ep6[0].IsValid() {
			t.Fatal("no endpoint to be the client (the endpoints subtest failed)")
		}
		h2.helper("backend", netip.AddrPortFrom(v6[1], 8080).String(), "h2").WaitOutput(t, 10*time.Second, "listening")
		e2.helper("backend", "[::]:8080", "ds2").WaitOutput(t, 10*time.Second, "listening")
		svc, err := el.ods[0].Client().CreateService(ctx, api.CreateService{Name: "web", Network: "blue", Ports: []string{"80/tcp"}})
		if err != nil {
			t.Fatal(err)
		}
		var vip4, vip6 netip.Addr
		for _, a := range svc.VIPs {
			if p := netip.MustParseAddr(a); p.Is6() {
				vip6 = p
			} else {
				vip4 = p
			}
		}
		if !vip4.IsValid() || !vip6.IsValid() {
			t.Fatalf("service web on a dual-stack network has VIPs %v, want one of each family", svc.VIPs)
		}
		t.Logf("service web: VIPs %v", svc.VIPs)
		testutil.Eventually(t, 10*time.Second, "h2: add-backend", func() error {
			_, err := el.ods[1].Client().AddBackend(ctx, api.AddBackend{Service: "web", Network: "blue",
				Addr: netip.AddrPortFrom(v6[1], 8080).String(), Weight: 1, Check: "tcp", ServicePort: 80})
			return err
		})
		out := el.mustOverlayd(1, "service", "add-backend", "web", "ds2:8080", "--network", "blue")
		t.Logf("h2: overlayd service add-backend web ds2:8080\n%s", strings.TrimSpace(out))

		curl := func(vip, client netip.Addr, want int) (map[string]int, error) {
			url := "http://" + netip.AddrPortFrom(vip, 80).String() + "/"
			seen := map[string]int{}
			_, err := testutil.Poll(15*time.Second, func() error {
				out, err := e1.Try("curl", "-sS", "-g", "--max-time", "5", url)
				if err != nil {
					return fmt.Errorf("curl %s: %v\n%s", url, err, out)
				}
				f := strings.Fields(out)
				if len(f) != 2 || !strings.HasPrefix(f[1], strings.TrimSuffix(netip.AddrPortFrom(client, 0).String(), "0")) {
					return fmt.Errorf("curl %s = %q, want a backend's name and the client's real address %s", url, out, client)
				}
				seen[f[0]]++
				if len(seen) < want || seen[f[0]] < 3 {
					return fmt.Errorf("reached %v so far", seen)
				}
				return nil
			})
			t.Logf("curl %s from ds1: %v", url, seen)
			return seen, err
		}
		if seen, err := curl(vip6, ep6[0], 2); err != nil || len(seen) != 2 {
			si, _ := el.ods[0].Client().Service(ctx, "blue", "web")
			t.Fatalf("the IPv6 VIP does not reach both IPv6 backends (%v): %v\nh1: overlayd service show web\n%s\n%+v", seen, err, el.mustOverlayd(0, "service", "show", "web"), si)
		}
		// The IPv4 VIP has one backend: ds2's IPv4 address (h2's is
		// IPv6 only).
		if seen, err := curl(vip4, ep4[0], 1); err != nil || len(seen) != 1 || seen["ds2"] == 0 {
			t.Fatalf("the IPv4 VIP reached %v (%v), want ds2 alone", seen, err)
		}
	})
	t.Logf("took %v", time.Since(began).Round(time.Millisecond))
}

// dsAddrs splits a dual-stack attachment's addresses (with or without
// prefix lengths) into its IPv4 and IPv6 one; both must be there.
func dsAddrs(t *testing.T, addrs []string) (v4, v6 netip.Addr) {
	t.Helper()
	for _, s := range addrs {
		a, err := netip.ParseAddr(s)
		if p, perr := netip.ParsePrefix(s); perr == nil {
			a, err = p.Addr(), nil
		}
		switch {
		case err != nil:
			t.Fatalf("address %q: %v", s, err)
		case a.Is4():
			v4 = a
		default:
			v6 = a
		}
	}
	if !v4.IsValid() || !v6.IsValid() {
		t.Fatalf("addresses %v: want one IPv4 and one IPv6", addrs)
	}
	return v4, v6
}
