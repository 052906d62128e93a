package dns

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/overlayd/overlayd/dns/dnstest"
)

// dualZoneData is a dual-stack network (listed once per family) with a
// node, an endpoint and a service of each family.
func dualZoneData() ZoneData {
	return ZoneData{
		Networks: []Network{
			{Name: "blue", CIDR: netip.MustParsePrefix("10.10.0.0/16"), DNSAddr: netip.MustParseAddr("10.10.0.1")},
			{Name: "blue", CIDR: netip.MustParsePrefix("fd00:10::/64"), DNSAddr: netip.MustParseAddr("fd00:10::1")},
		},
		Nodes: []NodeRecord{
			{Name: "n1", Network: "blue", Addr: netip.MustParseAddr("10.10.0.2")},
			{Name: "n1", Network: "blue", Addr: netip.MustParseAddr("fd00:10::2")},
			{Name: "c1", Network: "blue", Addr: netip.MustParseAddr("10.10.0.3")},
			{Name: "c1", Network: "blue", Addr: netip.MustParseAddr("fd00:10::3")},
		},
		Services: []ServiceRecord{
			{Name: "web", Network: "blue", VIP: netip.MustParseAddr("10.10.240.0"), Ports: []Port{{80, "tcp"}}},
			{Name: "web", Network: "blue", VIP: netip.MustParseAddr("fd00:10::f000:0"), Ports: []Port{{80, "tcp"}}},
		},
	}
}

// A dual-stack network as dig sees it, over IPv4 and IPv6 loopback: A
// stays A, AAAA answers the IPv6 addresses, PTR works under ip6.arpa
// (nibbles) and in-addr.arpa, SRV's additional section has both of the
// target's addresses.
func TestDigDualStack(t *testing.T) {
	dig := dnstest.RequireDig(t)
	s := newTestServer(t, dualZoneData())
	var servers []string
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatalf("listen %s: %v", addr, err)
		}
		go s.ServePacket(pc)
		servers = append(servers, pc.LocalAddr().String())
	}
	for _, srv := range servers {
		ap := netip.MustParseAddrPort(srv)
		run := func(args ...string) string {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			args = append([]string{"+short", "+time=2", "+tries=2", "-p", strconv.Itoa(int(ap.Port())), "@" + ap.Addr().String()}, args...)
			out, err := exec.CommandContext(ctx, dig, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return strings.TrimSpace(string(out))
		}
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"AAAA", "c1.blue.overlay"}, "fd00:10::3"},
			{[]string{"A", "c1.blue.overlay"}, "10.10.0.3"},
			{[]string{"AAAA", "web.blue.overlay"}, "fd00:10::f000:0"},
			{[]string{"A", "web.blue.overlay"}, "10.10.240.0"},
			{[]string{"-x", "fd00:10::3"}, "c1.blue.overlay."},
			{[]string{"-x", "10.10.0.2"}, "n1.blue.overlay."},
			{[]string{"-x", "fd00:10::f000:0"}, "web.blue.overlay."},
			{[]string{"SRV", "_80._tcp.web.blue.overlay"}, "0 0 80 web.blue.overlay."},
		} {
			if got := run(tc.args...); got != tc.want {
				t.Errorf("dig @%s %s = %q, want %q", srv, strings.Join(tc.args, " "), got, tc.want)
			}
		}
		// The SRV target's addresses of both families ride along.
		full := strings.Join(strings.Fields(run("+noshort", "+noall", "+additional", "SRV", "_80._tcp.web.blue.overlay")), " ")
		if !strings.Contains(full, "A 10.10.240.0") || !strings.Contains(full, "AAAA fd00:10::f000:0") {
			t.Errorf("dig @%s SRV: additional section %q, want the target's A and AAAA", srv, full)
		}
		// An address of the network without a record: NXDOMAIN from the
		// zone, with its reverse zone's SOA (not forwarded).
		if got := run("+noshort", "+noall", "+comments", "-x", "fd00:10::99"); !strings.Contains(got, "NXDOMAIN") {
			t.Errorf("dig @%s -x fd00:10::99: %q, want NXDOMAIN", srv, got)
		}
	}
}

// A dual-stack network is listed once per family; twice with one family
// is a mistake, reported, and the first listing is kept.
func TestZoneDualStackNetworks(t *testing.T) {
	d := dualZoneData()
	if _, err := NewZone(d); err != nil {
		t.Fatalf("NewZone(dual-stack) = %v", err)
	}
	d.Networks = append(d.Networks, Network{Name: "BLUE", CIDR: netip.MustParsePrefix("fd00:11::/64")})
	z, err := NewZone(d)
	if err == nil || !strings.Contains(err.Error(), `network "BLUE": listed twice with a CIDR of one family`) {
		t.Errorf("NewZone(two IPv6 CIDRs) = %v", err)
	}
	if a, ok := z.lookup("c1.blue.overlay.", mdns.TypeAAAA); !ok || len(a.answer) != 1 {
		t.Errorf("AAAA c1 after the bad listing: %+v", a)
	}
	if _, ok := z.lookup(reverseName(netip.MustParseAddr("fd00:11::5")), mdns.TypePTR); ok {
		t.Error("the refused listing's reverse zone is answered")
	}
}

// FuzzParseReverse: any name is refused or names an address whose own
// reverse name it is (in-addr.arpa. with four decimal labels, ip6.arpa.
// with 32 nibbles); never a panic.
func FuzzParseReverse(f *testing.F) {
	f.Add("3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.d.f.ip6.arpa.")
	f.Add("2.0.10.10.in-addr.arpa.")
	f.Add("0.1.ip6.arpa.")
	f.Add("01.0.10.10.in-addr.arpa.")
	f.Add("g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.d.f.ip6.arpa.")
	f.Fuzz(func(t *testing.T, name string) {
		a, ok := parseReverse(name)
		if !ok {
			return
		}
		if !a.IsValid() || reverseName(a) != name {
			t.Fatalf("parseReverse(%q) = %v, whose reverse name is %q", name, a, reverseName(a))
		}
	})
}
