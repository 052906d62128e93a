package nodedns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/config"
)

// testNetstack serves what is asked of it on loopback sockets and records
// the addresses asked for.
type testNetstack struct {
	mu    sync.Mutex
	asked []string
}

func (f *testNetstack) ListenPacket(network, address string) (net.PacketConn, error) {
	f.mu.Lock()
	f.asked = append(f.asked, network+" "+address)
	f.mu.Unlock()
	return net.ListenPacket(network, "127.0.0.1:0")
}

func (f *testNetstack) Listen(network, address string) (net.Listener, error) {
	f.mu.Lock()
	f.asked = append(f.asked, network+" "+address)
	f.mu.Unlock()
	return net.Listen(network, "127.0.0.1:0")
}

var _ Netstack = (*testNetstack)(nil)

// testOptions are a netstack node's on the static network 10.96.0.0/16
// (the node's address 10.96.1.1), with a host listener on a port picked
// on loopback.
func testOptions(ns *testNetstack) Options {
	cfg := config.DefaultDNS()
	cfg.Listen = "127.0.0.1:0"
	cfg.Upstreams = []string{"127.0.0.1:9"} // never asked here
	return Options{
		DNS: cfg, Self: "dnsnode", Mode: config.ModeNetstack,
		Static:   netip.MustParsePrefix("10.96.1.1/16"),
		Netstack: func() Netstack { return ns },
		Device:   func() string { return "unused" },
	}
}

func newTest(t *testing.T, opts Options) *Service {
	t.Helper()
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	return d
}

// The upstreams never include the node itself: its host listener or a
// network's DNS address (the static one's is the node's own address).
func TestIsOwn(t *testing.T) {
	ns := &testNetstack{}
	d := newTest(t, testOptions(ns))
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.Sync(catalog.Snapshot{})
	st := d.Status()
	if st.Listen != d.HostAddr().String() || len(st.Addrs) != 1 || st.Addrs[0] != "10.96.1.1" {
		t.Errorf("Status = %+v, want the host listener %v and 10.96.1.1 served", st, d.HostAddr())
	}
	ns.mu.Lock()
	asked := slices.Clone(ns.asked)
	ns.mu.Unlock()
	if want := []string{"udp 10.96.1.1:53", "tcp 10.96.1.1:53"}; !slices.Equal(asked, want) {
		t.Errorf("netstack asked for %q, want %q", asked, want)
	}
	for _, up := range []string{d.HostAddr().String(), "10.96.1.1:53"} {
		if !d.isOwn(netip.MustParseAddrPort(up)) {
			t.Errorf("isOwn(%s) = false, want true", up)
		}
	}
	if d.isOwn(netip.MustParseAddrPort("127.0.0.53:53")) {
		t.Error("isOwn(127.0.0.53:53) = true, want false")
	}
}

// On a static network (no IPAM) the node claims no address but its own:
// its DNS address is its own address and the attachment gets no other
// (issue 9 item 1: host2 took host1's 10.201.0.1 as its DNS address).
func TestDNSStaticAddressIsOwn(t *testing.T) {
	for _, addr := range []string{"10.201.0.2/24", "10.201.0.1/24", "10.200.2.1/16"} {
		opts := testOptions(&testNetstack{})
		opts.Static = netip.MustParsePrefix(addr)
		d := newTest(t, opts)
		nets := d.networks(d.joined())
		if len(nets) != 1 || nets[0].Name != StaticNetwork || nets[0].DNSAddr != opts.Static.Addr() || nets[0].CIDR != opts.Static.Masked() {
			t.Errorf("--addr %s: networks() = %+v, want the static network with DNS address %v", addr, nets, opts.Static.Addr())
		}
		if p := d.Prefixes(); len(p) != 0 {
			t.Errorf("--addr %s: Prefixes() = %v, want none (the own address is there already)", addr, p)
		}
	}
}

// A dual-stack static network (--addr twice) is served on both of the
// node's own addresses, and the attachment gets no other.
func TestDNSStaticDualStack(t *testing.T) {
	opts := testOptions(&testNetstack{})
	opts.Static, opts.Static6 = netip.MustParsePrefix("10.201.0.2/24"), netip.MustParsePrefix("fd00:201::2/64")
	d := newTest(t, opts)
	nets := d.networks(d.joined())
	if len(nets) != 2 || nets[0].DNSAddr != opts.Static.Addr() || nets[1].DNSAddr != opts.Static6.Addr() || nets[1].Name != StaticNetwork {
		t.Errorf("networks() = %+v, want the static network once per family at the node's own addresses", nets)
	}
	if p := d.Prefixes(); len(p) != 0 {
		t.Errorf("Prefixes() = %v, want none", p)
	}
}

// A joined network's DNS address is its first usable one, which the
// attachment holds besides the node's own; in tap mode none is served.
func TestPrefixesJoined(t *testing.T) {
	opts := testOptions(&testNetstack{})
	opts.Joined = func() []Network {
		return []Network{{Name: "blue", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.9.3.4/16")}, Addrs: []netip.Addr{netip.MustParseAddr("10.9.0.7")}}}
	}
	dual := opts
	dual.Joined = func() []Network {
		return []Network{{Name: "blue", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16"), netip.MustParsePrefix("fd00:9::/64")},
			Addrs: []netip.Addr{netip.MustParseAddr("10.9.0.7"), netip.MustParseAddr("fd00:9::7")}}}
	}
	if p := newTest(t, dual).Prefixes(); fmt.Sprint(p) != "[10.9.0.1/32 fd00:9::1/128]" {
		t.Errorf("dual-stack: Prefixes() = %v, want both DNS addresses", p)
	}
	d := newTest(t, opts)
	nets := d.networks(d.joined())
	if len(nets) != 2 || nets[0].Name != "blue" || nets[0].CIDR != netip.MustParsePrefix("10.9.0.0/16") || nets[0].DNSAddr != netip.MustParseAddr("10.9.0.1") || nets[1].Name != StaticNetwork {
		t.Errorf("networks() = %+v, want blue (DNS address 10.9.0.1) and the static network", nets)
	}
	if p := d.Prefixes(); !slices.Equal(p, []netip.Prefix{netip.MustParsePrefix("10.9.0.1/32")}) {
		t.Errorf("Prefixes() = %v, want [10.9.0.1/32]", p)
	}
	opts.Mode = config.ModeTAP
	if p := newTest(t, opts).Prefixes(); p != nil {
		t.Errorf("tap mode: Prefixes() = %v, want none", p)
	}
}

// Who may ask: the host listener only loopback sources; sockets only the
// overlay reaches, sources in the networks' CIDRs.
func TestDNSAccess(t *testing.T) {
	d := newTest(t, testOptions(&testNetstack{}))
	d.Sync(catalog.Snapshot{})
	for _, tt := range []struct {
		src               string
		loopback, overlay bool
	}{
		{"127.0.0.1", true, false},
		{"127.3.2.1", true, false},
		{"::1", true, false},
		{"::ffff:127.0.0.1", true, false},
		{"10.96.7.9", false, true},
		{"::ffff:10.96.7.9", false, true},
		{"10.97.0.1", false, false},
		{"198.18.0.3", false, false},
	} {
		a := netip.MustParseAddr(tt.src)
		if got := fromLoopback(a); got != tt.loopback {
			t.Errorf("host listener allows %s = %v, want %v", a, got, tt.loopback)
		}
		if got := d.fromOverlay(a); got != tt.overlay {
			t.Errorf("overlay sockets allow %s = %v, want %v", a, got, tt.overlay)
		}
		if got := d.fromOverlayOrLoopback(a); got != (tt.loopback || tt.overlay) {
			t.Errorf("unbound sockets allow %s = %v, want %v", a, got, tt.loopback || tt.overlay)
		}
	}
}

// Resolve answers the zone's names, case and a trailing dot aside, and
// refuses others with a sentence that says what names look like.
func TestResolve(t *testing.T) {
	d := newTest(t, testOptions(&testNetstack{}))
	d.Sync(catalog.Snapshot{})
	for _, host := range []string{"dnsnode.static.overlay", "DNSNode.Static.Overlay."} {
		if a, err := d.Resolve(context.Background(), host); err != nil || len(a) != 1 || a[0] != netip.MustParseAddr("10.96.1.1") {
			t.Errorf("Resolve(%q) = %v, %v; want 10.96.1.1", host, a, err)
		}
	}
	_, err := d.Resolve(context.Background(), "nosuch.static.overlay")
	if want := `node: no overlay name "nosuch.static.overlay" (names are NAME.NETWORK.overlay.)`; err == nil || err.Error() != want {
		t.Errorf("Resolve(nosuch) = %v, want %q", err, want)
	}
}
