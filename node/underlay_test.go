package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/vxlan"
)

// TestUnderlayMTU: the overhead and the largest path MTU follow the
// underlay's family, and config's rule (which may not import vxlan)
// agrees with vxlan's constants.
func TestUnderlayMTU(t *testing.T) {
	for _, tc := range []struct {
		listen            string
		overhead, maxPath int
	}{
		{"0.0.0.0", vxlan.Overhead, 65507 - vxlan.EncapLen},
		{"192.0.2.1", 50, 65485},
		{"::ffff:192.0.2.1", 50, 65485},
		{"::", vxlan.Overhead6, 65527 - vxlan.EncapLen},
		{"2001:db8::1", 70, 65505},
	} {
		a := netip.MustParseAddr(tc.listen)
		if got := underlayOverhead(a); got != tc.overhead {
			t.Errorf("underlayOverhead(%v) = %d, want %d", a, got, tc.overhead)
		}
		if got := config.Overhead(a); got != tc.overhead {
			t.Errorf("config.Overhead(%v) = %d, want %d (vxlan's)", a, got, tc.overhead)
		}
		if got := maxPathMTU(a); got != tc.maxPath {
			t.Errorf("maxPathMTU(%v) = %d, want %d", a, got, tc.maxPath)
		}
	}
}

// TestExtraRoutes: a static peer's prefix inside one of the node's own
// prefixes (of either family) needs no route of its own.
func TestExtraRoutes(t *testing.T) {
	cfg := config.Default()
	cfg.Addr = netip.MustParsePrefix("10.200.1.1/16")
	cfg.Addr6 = netip.MustParsePrefix("fd00::1/64")
	for _, s := range []string{"10.200.2.0/24@192.0.2.2", "10.201.0.0/16@192.0.2.2", "fd00::2@192.0.2.2", "fd01::/64@192.0.2.2"} {
		p, err := config.ParsePeer(s)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Peers = append(cfg.Peers, p)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.201.0.0/16"), netip.MustParsePrefix("fd01::/64")}
	if got := extraRoutes(cfg); !slices.Equal(got, want) {
		t.Errorf("extraRoutes = %v, want %v", got, want)
	}
}

// TestAdvertiseVTEP: a VTEP listening on an unspecified address is told
// to peers with an IP of its own family: the gossip address's, else the
// one that routes to the first seed; never the other family's.
func TestAdvertiseVTEP(t *testing.T) {
	for _, tc := range []struct {
		listen, gossip string
		seeds          []string
		want           string // "" for an error
	}{
		{"[::]:4789", "[::1]:7946", nil, "[::1]:4789"},
		{"[::]:4789", "[::]:7946", []string{"[::1]:7946"}, "[::1]:4789"},
		{"[::]:4789", "127.0.0.1:7946", nil, ""},
		{"[::]:4789", "127.0.0.1:7946", []string{"127.0.0.1:7946"}, ""},
		{"[::]:4789", "127.0.0.1:7946", []string{"[::1]:7946"}, "[::1]:4789"},
		{"0.0.0.0:4789", "[::1]:7946", []string{"127.0.0.1:7946"}, "127.0.0.1:4789"},
		{"0.0.0.0:4789", "127.0.0.1:7946", nil, "127.0.0.1:4789"},
		{"[2001:db8::1]:4789", "127.0.0.1:7946", nil, "[2001:db8::1]:4789"},
	} {
		cfg := config.Default()
		cfg.Gossip.Listen = netip.MustParseAddrPort(tc.gossip)
		got, err := advertiseVTEP(cfg, netip.MustParseAddrPort(tc.listen), tc.seeds)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("advertiseVTEP(%s, gossip %s, seeds %v) = %v, want an error", tc.listen, tc.gossip, tc.seeds, got)
		case tc.want == "" && !strings.Contains(err.Error(), "has no IP peers could send to"):
			t.Errorf("advertiseVTEP(%s, gossip %s) error %q", tc.listen, tc.gossip, err)
		case tc.want != "" && (err != nil || got.String() != tc.want):
			t.Errorf("advertiseVTEP(%s, gossip %s, seeds %v) = %v, %v, want %s", tc.listen, tc.gossip, tc.seeds, got, err, tc.want)
		}
	}
}

// TestDualStackStaticOverIPv6: two netstack nodes on a dual-stack static
// network (Addr and Addr6) over an IPv6 underlay ([::1]): the router's
// static network holds both addresses, IPv4 first, also after the
// networks are applied again (with gossip on), the path MTU is the
// loopback's less 70, and TCP exchanges over IPv4 and IPv6 inside, with
// one listener on ":7" (both families), cross the IPv6 underlay.
func TestDualStackStaticOverIPv6(t *testing.T) {
	nodes := make([]*Node, 2)
	for i := range nodes {
		cfg := clusterConfig(t, fmt.Sprintf("n%d", i+1))
		cfg.Listen = netip.MustParseAddrPort("[::1]:0")
		cfg.Addr = netip.MustParsePrefix(fmt.Sprintf("10.78.0.%d/24", i+1))
		cfg.Addr6 = netip.MustParsePrefix(fmt.Sprintf("fd00:78::%d/64", i+1))
		n, err := New(cfg)
		if err != nil {
			if strings.Contains(err.Error(), "address not available") {
				t.Skipf("no IPv6 loopback: %v", err)
			}
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
	}
	a, b := nodes[0], nodes[1]
	want := []netip.Prefix{a.cfg.Addr, a.cfg.Addr6}
	if err := a.applyNetworks(); err != nil {
		t.Fatal(err)
	}
	if nets := a.rt.Networks(); len(nets) == 0 || !slices.Equal(nets[0].Addrs, want) {
		t.Errorf("router networks %+v, want the static one with %v", nets, want)
	}
	if got, want := a.pathMTU, interfaceMTU(netip.IPv6Loopback())-70; got != min(want, maxPathMTU(netip.IPv6Loopback())) {
		t.Errorf("path MTU %d over [::1], want %d", got, want)
	}
	if !a.VTEP().Addr().Is6() {
		t.Fatalf("VTEP %v, want an IPv6 one", a.VTEP())
	}
	peer := func(n *Node, s string) []config.Peer {
		var ps []config.Peer
		for _, pfx := range strings.Fields(s) {
			ps = append(ps, config.Peer{Prefix: netip.MustParsePrefix(pfx), VTEP: n.VTEP()})
		}
		return ps
	}
	if err := a.SetStaticRoutes(peer(b, "10.78.0.2/32 fd00:78::2/128")); err != nil {
		t.Fatal(err)
	}
	if err := b.SetStaticRoutes(peer(a, "10.78.0.1/32 fd00:78::1/128")); err != nil {
		t.Fatal(err)
	}
	if err := a.SetStaticRoutes(peer(b, "fd00:78::/64")); err == nil {
		t.Error("SetStaticRoutes with a peer covering the node's IPv6 address succeeded")
	}
	if err := a.SetStaticRoutes(peer(b, "10.78.0.2/32 fd00:78::2/128")); err != nil {
		t.Fatal(err)
	}
	ln, err := b.Listen("tcp", ":7") // both families: one dual-stack socket
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	for _, dst := range []string{"10.78.0.2:7", "[fd00:78::2]:7"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := a.Dial(ctx, "tcp", dst)
		if err != nil {
			t.Fatalf("Dial %s over the IPv6 underlay: %v", dst, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := bytes.Repeat([]byte("over ::1 "), 10000)
		go c.Write(msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes to %s over the IPv6 underlay: %v (equal %v)", len(msg), dst, err, bytes.Equal(got, msg))
		}
	}
}
