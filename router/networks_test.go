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
	red := Network{VNI: 7, Addr: netip.MustParsePrefix("10.7.0.2/24")}
	green := Network{VNI: 8, Addr: netip.MustParsePrefix("10.8.0.2/24")}
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
		{red, {VNI: 7, Addr: netip.MustParsePrefix("10.9.0.1/24")}},
		{{VNI: 1 << 24, Addr: red.Addr}},
		{{VNI: 9, Addr: netip.MustParsePrefix("fd00::1/64")}},
	} {
		if err := r.SetNetworks(bad); err == nil {
			t.Errorf("SetNetworks(%v) succeeded", bad)
		}
	}
	if got := r.Networks(); len(got) != 1 || !reflect.DeepEqual(got[0], red) {
		t.Errorf("a failed SetNetworks changed the networks: %v", got)
	}
}
