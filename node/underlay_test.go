package node

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

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
