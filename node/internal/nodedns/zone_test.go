package nodedns

import (
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
		self: "a", own: map[string]netip.Addr{"blue": netip.MustParseAddr("10.9.0.9")}}
	zd, names := buildZone(in, snap)
	want := map[string]netip.Addr{
		"a.blue.overlay.": netip.MustParseAddr("10.9.0.9"),
		"b.blue.overlay.": netip.MustParseAddr("10.9.255.1"),
	}
	if len(names) != len(want) {
		t.Errorf("names %v, want %v", names, want)
	}
	for k, a := range want {
		if names[k] != a {
			t.Errorf("%s → %v, want %v", k, names[k], a)
		}
	}
	if len(zd.Nodes) != 2 || len(zd.Services) != 1 || zd.Services[0].Name != "b" {
		t.Errorf("zone nodes %v services %v", zd.Nodes, zd.Services)
	}
}
