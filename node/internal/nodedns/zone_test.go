package nodedns

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/dns"
	"github.com/overlayd/overlayd/gossip"
)

// The zone names this node, the nodes whose route entries are their own
// and in the network, and the services whose creator is alive; a service
// wins over a node of the same name.
func TestBuildZone(t *testing.T) {
	cidr := netip.MustParsePrefix("10.9.0.0/16")
	route := func(owner, key, v string) gossip.Entry {
		return gossip.Entry{Table: catalog.TableRoutes, Key: key, Owner: owner, Value: []byte(v)}
	}
	web := catalog.Service{Name: "b", Network: "blue", VIP: "10.9.255.1", Ports: []catalog.Port{{Port: 80, Proto: "tcp"}}}
	gone := catalog.Service{Name: "gone", Network: "blue", VIP: "10.9.255.2", Ports: []catalog.Port{{Port: 80, Proto: "tcp"}}}
	snap := catalog.Snapshot{Networks: map[string]catalog.Tables{"blue": {
		Routes: []gossip.Entry{
			route("b", "b", "10.9.0.2/32 127.0.0.1:4790"),
			route("c", "x", "10.9.0.3/32 127.0.0.1:4791"), // key is not its writer
			route("d", "d", "10.8.0.4/32 127.0.0.1:4792"), // outside the CIDR
			route("e", "e", "not a route"),
		},
		Services:        []gossip.Entry{{Key: "b", Owner: "b", Value: web.Encode()}, {Key: "gone", Owner: "z", Value: gone.Encode()}},
		VisibleServices: []gossip.Entry{{Key: "b", Owner: "b", Value: web.Encode()}},
	}}}
	in := zoneInput{domain: "overlay.", nets: []dns.Network{{Name: "blue", CIDR: cidr, DNSAddr: netip.MustParseAddr("10.9.0.1")}},
		self: "a", own: map[string][]netip.Addr{"blue": {netip.MustParseAddr("10.9.0.9")}}}
	zd, names := buildZone(in, snap)
	want := map[string]netip.Addr{
		"a.blue.overlay.": netip.MustParseAddr("10.9.0.9"),
		"b.blue.overlay.": netip.MustParseAddr("10.9.255.1"),
	}
	if len(names) != len(want) {
		t.Errorf("names %v, want %v", names, want)
	}
	for k, a := range want {
		if len(names[k]) != 1 || names[k][0] != a {
			t.Errorf("%s → %v, want %v", k, names[k], a)
		}
	}
	if len(zd.Nodes) != 2 || len(zd.Services) != 1 || zd.Services[0].Name != "b" {
		t.Errorf("zone nodes %v services %v", zd.Nodes, zd.Services)
	}
}

// On a dual-stack network a node, an endpoint and a service have a record
// of each family (the network is listed once per family); Dial's names
// resolve to the IPv4 one; an address outside both CIDRs is left out.
func TestBuildZoneDualStack(t *testing.T) {
	route := func(owner, key, v string) gossip.Entry {
		return gossip.Entry{Table: catalog.TableRoutes, Key: key, Owner: owner, Value: []byte(v)}
	}
	web := catalog.Service{Name: "web", Network: "blue", VIP: "10.9.255.1", VIP6: "fd00:9::f000:0", Ports: []catalog.Port{{Port: 80, Proto: "tcp"}}}
	snap := catalog.Snapshot{Networks: map[string]catalog.Tables{"blue": {
		Routes: []gossip.Entry{
			route("b", "b", "10.9.0.2/32 fd00:9::2/128 127.0.0.1:4790"),
			route("b", "b/c1", "10.9.0.3/32 fd00:9::3/128 127.0.0.1:4790"),
			route("d", "d", "fd00:8::4/128 127.0.0.1:4792"), // outside both CIDRs
		},
		VisibleServices: []gossip.Entry{{Key: "web", Owner: "b", Value: web.Encode()}},
	}}}
	in := zoneInput{domain: "overlay.", nets: []dns.Network{
		{Name: "blue", CIDR: netip.MustParsePrefix("10.9.0.0/16"), DNSAddr: netip.MustParseAddr("10.9.0.1")},
		{Name: "blue", CIDR: netip.MustParsePrefix("fd00:9::/64"), DNSAddr: netip.MustParseAddr("fd00:9::1")},
	}, self: "a", own: map[string][]netip.Addr{"blue": {netip.MustParseAddr("10.9.0.9"), netip.MustParseAddr("fd00:9::9")}}}
	zd, names := buildZone(in, snap)
	var nodes, svcs []string
	for _, n := range zd.Nodes {
		nodes = append(nodes, n.Name+"="+n.Addr.String())
	}
	for _, s := range zd.Services {
		svcs = append(svcs, s.Name+"="+s.VIP.String())
	}
	if got, want := fmt.Sprint(nodes), "[a=10.9.0.9 a=fd00:9::9 b=10.9.0.2 b=fd00:9::2 c1=10.9.0.3 c1=fd00:9::3]"; got != want {
		t.Errorf("nodes %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(svcs), "[web=10.9.255.1 web=fd00:9::f000:0]"; got != want {
		t.Errorf("services %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(names["c1.blue.overlay."], names["web.blue.overlay."]), "[10.9.0.3 fd00:9::3] [10.9.255.1 fd00:9::f000:0]"; got != want {
		t.Errorf("names resolve to %s, want both families, IPv4 first: %s", got, want)
	}
	if _, err := dns.NewZone(zd); err != nil {
		t.Errorf("NewZone(dual-stack) = %v", err)
	}
}
