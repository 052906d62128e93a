package router

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/overlayd/overlayd/stack/stacktest"
	"github.com/overlayd/overlayd/udp/udptest"
	"github.com/overlayd/overlayd/vxlan"
)

// TestSetNetworks: an L3 router may start with no network when given a
// MAC, gains networks at run time, and loses the routes of a network it
// leaves in the same swap.
func TestSetNetworks(t *testing.T) {
	dev, ul := stacktest.NewPipe(), udptest.NewNetwork().Conn(vtepA)
	defer dev.Close()
	defer ul.Close()
	r, err := New(dev, ul, Options{MAC: vxlan.MAC{0x0a, 0x59, 1, 2, 3, 4}})
	if err != nil {
		t.Fatalf("New with a MAC and no network: %v", err)
	}
	red := Network{VNI: 7, Addrs: []netip.Prefix{netip.MustParsePrefix("10.7.0.2/24")}}
	green := Network{VNI: 8, Addrs: []netip.Prefix{netip.MustParsePrefix("10.8.0.2/24")}}
	rRed := Route{Prefix: netip.MustParsePrefix("10.7.0.3/32"), VTEP: vtepB, VNI: 7}
	rGreen := Route{Prefix: netip.MustParsePrefix("10.8.0.3/32"), VTEP: vtepB, VNI: 8}
	if err := r.SetRoutes([]Route{rRed}, nil); err == nil {
		t.Error("a route on a network the router is not on was accepted")
	}
	if err := r.SetNetworks([]Network{green, red}); err != nil {
		t.Fatal(err)
	}
	if got := r.Networks(); len(got) != 2 || !reflect.DeepEqual(got[0], red) || !reflect.DeepEqual(got[1], green) {
		t.Errorf("Networks() = %v, want red then green", got)
	}
	if err := r.SetRoutes([]Route{rRed, rGreen}, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.SetNetworks([]Network{red}); err != nil {
		t.Fatal(err)
	}
	if got := r.Routes(); len(got) != 1 || got[0].VNI != 7 {
		t.Errorf("routes after leaving green: %v, want only red's", got)
	}
	for _, bad := range [][]Network{
		{red, {VNI: 7, Addrs: []netip.Prefix{netip.MustParsePrefix("10.9.0.1/24")}}},
		{{VNI: 1 << 24, Addrs: red.Addrs}},
		{{VNI: 9}},
		{{VNI: 9, Addrs: []netip.Prefix{netip.MustParsePrefix("fd00::1/64"), netip.MustParsePrefix("10.9.0.1/24")}}},
		{{VNI: 9, Addrs: []netip.Prefix{netip.MustParsePrefix("10.9.0.1/24"), netip.MustParsePrefix("10.9.0.2/24")}}},
		{{VNI: 9, Addrs: []netip.Prefix{netip.MustParsePrefix("fd00::1/64"), netip.MustParsePrefix("fd00::2/64")}}},
		{{VNI: 9, Addrs: []netip.Prefix{netip.MustParsePrefix("::ffff:10.9.0.1/120")}}},
		{{VNI: 9, Addrs: []netip.Prefix{{}}}},
		{{VNI: 9, Addrs: []netip.Prefix{netip.MustParsePrefix("10.9.0.1/24")}, Local: []netip.Addr{netip.MustParseAddr("fd00::53")}}},
	} {
		if err := r.SetNetworks(bad); err == nil {
			t.Errorf("SetNetworks(%v) succeeded", bad)
		}
	}
	if got := r.Networks(); len(got) != 1 || !reflect.DeepEqual(got[0], red) {
		t.Errorf("a failed SetNetworks changed the networks: %v", got)
	}
}

// TestDualStackConfig: a network takes one address per family, IPv4
// first, and an endpoint one per family, each in its family's prefix;
// Networks and Stats give them back as they were given.
func TestDualStackConfig(t *testing.T) {
	dev, ul := stacktest.NewPipe(), udptest.NewNetwork().Conn(vtepA)
	defer dev.Close()
	defer ul.Close()
	v4, v6 := netip.MustParsePrefix("10.7.0.2/24"), netip.MustParsePrefix("fd00:7::2/64")
	blue := Network{VNI: 7, Addrs: []netip.Prefix{v4, v6}, Local: []netip.Addr{netip.MustParseAddr("10.7.0.1"), netip.MustParseAddr("fd00:7::1")}}
	only6 := Network{VNI: 8, Addrs: []netip.Prefix{netip.MustParsePrefix("fd00:8::2/64")}}
	r, err := New(dev, ul, Options{Networks: []Network{blue, only6}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := r.Networks(); len(got) != 2 || !reflect.DeepEqual(got[0], blue) || !reflect.DeepEqual(got[1], only6) {
		t.Errorf("Networks() = %v, want %v and %v", got, blue, only6)
	}
	if r.MAC() != vxlan.NodeMAC(v4.Addr()) {
		t.Errorf("MAC() = %v, want NodeMAC(%v) = %v (the first network's first address)", r.MAC(), v4.Addr(), vxlan.NodeMAC(v4.Addr()))
	}
	good := []netip.Addr{netip.MustParseAddr("10.7.0.9"), netip.MustParseAddr("fd00:7::9")}
	if err := r.AddEndpoint(EndpointConfig{ID: "both", VNI: 7, Addrs: good, Device: newSink()}); err != nil {
		t.Fatalf("AddEndpoint(dual stack) = %v", err)
	}
	if err := r.AddEndpoint(EndpointConfig{ID: "six", VNI: 8, Addrs: []netip.Addr{netip.MustParseAddr("fd00:8::9")}, Device: newSink()}); err != nil {
		t.Fatalf("AddEndpoint(IPv6 only) = %v", err)
	}
	if st := r.Stats().Endpoints["both"]; !reflect.DeepEqual(st.Addrs, good) {
		t.Errorf("Stats().Endpoints[both].Addrs = %v, want %v", st.Addrs, good)
	}
	for _, addrs := range [][]netip.Addr{
		{netip.MustParseAddr("fd00:7::a"), netip.MustParseAddr("10.7.0.10")}, // IPv6 first
		{netip.MustParseAddr("10.7.0.10"), netip.MustParseAddr("10.7.0.11")}, // two IPv4
		{netip.MustParseAddr("fd00:9::a")},                                   // outside the IPv6 prefix
		{netip.MustParseAddr("::ffff:10.7.0.10")},                            // mapped
		{netip.MustParseAddr("fd00:7::2")},                                   // the node's
		{netip.MustParseAddr("fd00:7::1")},                                   // the attachment's (DNS)
		{netip.MustParseAddr("10.7.0.12"), netip.MustParseAddr("fd00:7::9")}, // the IPv6 one is "both"'s
		{},
	} {
		if err := r.AddEndpoint(EndpointConfig{ID: "x", VNI: 7, Addrs: addrs, Device: newSink()}); err == nil {
			t.Errorf("AddEndpoint(%v) succeeded", addrs)
		}
	}
	if err := r.AddEndpoint(EndpointConfig{ID: "x", VNI: 8, Addrs: []netip.Addr{netip.MustParseAddr("10.7.0.10")}, Device: newSink()}); err == nil {
		t.Error("AddEndpoint of an IPv4 address on an IPv6-only network succeeded")
	}
	if got := len(r.eps.Load().byAddr); got != 3 {
		t.Errorf("the endpoint table has %d addresses, want 3", got)
	}
}
