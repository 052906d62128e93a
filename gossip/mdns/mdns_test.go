package mdns

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/overlayd/overlayd/gossip"
)

// TestMDNSStartRefuses: the real mDNS refuses, before opening a socket, an
// address no interface can multicast from (loopback), one no interface
// holds, of either family, and an IPv6 link-local one.
func TestMDNSStartRefuses(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"127.0.0.1:7946", "cannot multicast"},
		{"192.0.2.77:7946", "no interface holds the gossip address 192.0.2.77"},
		{"[2001:db8::77]:7946", "no interface holds the gossip address 2001:db8::77"},
		{"[fe80::1]:7946", "give --gossip a unique local or global IPv6 address"},
	} {
		d := New(Options{})
		err := d.Start(gossip.Found{Name: "n", Addr: netip.MustParseAddrPort(tc.addr)}, func(gossip.Found) {})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start(%s) = %v, want an error with %q", tc.addr, err, tc.want)
		}
		if err := d.Close(); err != nil {
			t.Errorf("Close after a failed Start = %v", err)
		}
	}
}

func TestParseTXT(t *testing.T) {
	for _, tc := range []struct {
		txt  []string
		want gossip.Found
		err  string
	}{
		{[]string{"v=1", "name=h1", "addr=198.18.0.1:7946"}, gossip.Found{Name: "h1", Addr: netip.MustParseAddrPort("198.18.0.1:7946")}, ""},
		{[]string{"V=1", "Name=h1", "ADDR=198.18.0.1:7946", "later=x", "name=other"}, gossip.Found{Name: "h1", Addr: netip.MustParseAddrPort("198.18.0.1:7946")}, ""},
		{[]string{"v=2", "name=h1", "addr=198.18.0.1:7946"}, gossip.Found{}, "version"},
		{[]string{"name=h1", "addr=198.18.0.1:7946"}, gossip.Found{}, "without a version"},
		{[]string{"v=1", "addr=198.18.0.1:7946"}, gossip.Found{}, "without a name"},
		{[]string{"v=1", "name=h1"}, gossip.Found{}, "without an addr"},
		{[]string{"v=1", "name=", "addr=198.18.0.1:7946"}, gossip.Found{}, "name"},
		{[]string{"v=1", "name=h1", "addr=198.18.0.1"}, gossip.Found{}, "addr"},
		{[]string{"v=1", "name=h1", "addr=198.18.0.1:0"}, gossip.Found{}, "not a unicast"},
		{[]string{"v=1", "name=h1", "addr=224.0.0.251:7946"}, gossip.Found{}, "not a unicast"},
		{[]string{"v=1", "name=h1", "addr=0.0.0.0:7946"}, gossip.Found{}, "not a unicast"},
		{[]string{"v=1", "name=h1", "addr=[2001:db8::1]:7946"}, gossip.Found{Name: "h1", Addr: netip.MustParseAddrPort("[2001:db8::1]:7946")}, ""},
		{[]string{"v=1", "name=h1", "addr=[fd99::2]:7946"}, gossip.Found{Name: "h1", Addr: netip.MustParseAddrPort("[fd99::2]:7946")}, ""},
		{[]string{"v=1", "name=h1", "addr=[fe80::1]:7946"}, gossip.Found{}, "not a unicast"},
		{[]string{"v=1", "name=h1", "addr=[fe80::1%eth0]:7946"}, gossip.Found{}, "not a unicast"},
		{[]string{"v=1", "name=h1", "addr=[::ffff:198.18.0.1]:7946"}, gossip.Found{}, "not a unicast"},
		{[]string{"v=1", "name=h1", "addr=[ff02::fb]:7946"}, gossip.Found{}, "not a unicast"},
		{[]string{"v=1", "name=h1", "addr=[::]:7946"}, gossip.Found{}, "not a unicast"},
		{[]string{"v=1", "name=h1", "addr=[2001:db8::1]:0"}, gossip.Found{}, "not a unicast"},
	} {
		got, err := parseTXT(tc.txt)
		if tc.err == "" && (err != nil || got != tc.want) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("parseTXT(%q) = %v, %v; want %v, error with %q", tc.txt, got, err, tc.want, tc.err)
		}
	}
}

// TestParseMDNS: what a node answers is what another reads, with an A
// record for an IPv4 node and an AAAA for an IPv6 one, and a goodbye
// reports no one.
func TestParseMDNS(t *testing.T) {
	for _, addr := range []string{"198.18.0.1:7946", "[2001:2::1]:7946"} {
		testParseMDNS(t, netip.MustParseAddrPort(addr))
	}
}

func testParseMDNS(t *testing.T, addr netip.AddrPort) {
	self := gossip.Found{Name: "h1.example", Addr: addr}
	m := &mdns{self: self, inst: instanceLabel(self.Name) + "." + Service, host: instanceLabel(self.Name) + ".local."}
	msg, _, _ := parseMDNS(mustPack(t, m.response(mdnsTTL, 0, nil)))
	if len(msg.Extra) != 1 {
		t.Fatalf("response of %v: extra %v, want one address record", addr, msg.Extra)
	}
	switch rr := msg.Extra[0].(type) {
	case *dns.A:
		if !addr.Addr().Is4() || rr.A.String() != addr.Addr().String() {
			t.Errorf("response of %v: %v", addr, rr)
		}
	case *dns.AAAA:
		if !addr.Addr().Is6() || rr.AAAA.String() != addr.Addr().String() {
			t.Errorf("response of %v: %v", addr, rr)
		}
	default:
		t.Errorf("response of %v: extra %v, want A or AAAA", addr, rr)
	}
	for _, tc := range []struct {
		ttl  uint32
		want int
	}{{mdnsTTL, 1}, {0, 0}} {
		b, err := m.response(tc.ttl, 0, nil).Pack()
		if err != nil {
			t.Fatal(err)
		}
		msg, found, err := parseMDNS(b)
		if err != nil || !msg.Response || len(found) != tc.want || tc.want == 1 && found[0] != self {
			t.Errorf("parseMDNS(response(ttl %d)) = %v, %v; want %d node %v", tc.ttl, found, err, tc.want, self)
		}
	}
	b, _ := m.query().Pack()
	if msg, found, err := parseMDNS(b); err != nil || msg.Response || len(found) != 0 {
		t.Errorf("parseMDNS(query) = %v, %v, %v; want a query, no node", msg, found, err)
	}
}

func mustPack(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInstanceLabel(t *testing.T) {
	a, b := instanceLabel("h1.example"), instanceLabel("h1-example")
	if !strings.HasPrefix(a, "h1-example-") || a == b {
		t.Errorf("instanceLabel = %q, %q; want an h1-example- prefix and labels that differ", a, b)
	}
	if l := instanceLabel(strings.Repeat("é", 100)); len(l) > 63 {
		t.Errorf("instanceLabel(long) = %q: %d bytes, more than a DNS label's 63", l, len(l))
	}
}

// FuzzParseMDNS: any packet unpacks or fails without a panic, and every
// node it reports has a TXT that reads back the same.
func FuzzParseMDNS(f *testing.F) {
	self := gossip.Found{Name: "h1", Addr: netip.MustParseAddrPort("198.18.0.1:7946")}
	m := &mdns{self: self, inst: instanceLabel("h1") + "." + Service, host: instanceLabel("h1") + ".local."}
	b, _ := m.response(mdnsTTL, 0, nil).Pack()
	f.Add(b)
	q, _ := m.query().Pack()
	f.Add(q)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, found, err := parseMDNS(b)
		if err != nil && len(found) > 0 {
			t.Fatalf("parseMDNS: error %v with %d nodes", err, len(found))
		}
		for _, n := range found {
			if back, err := parseTXT(formatTXT(n)); err != nil || back != n {
				t.Fatalf("parseTXT(formatTXT(%v)) = %v, %v", n, back, err)
			}
		}
	})
}

// FuzzParseTXT: TXT strings (split at newlines) parse or fail without a
// panic; what parses reads back the same.
func FuzzParseTXT(f *testing.F) {
	f.Add("v=1\nname=h1\naddr=198.18.0.1:7946")
	f.Add("v=1\nname=\xff\naddr=1.2.3.4:1")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseTXT(strings.Split(s, "\n"))
		if err != nil {
			return
		}
		if back, err := parseTXT(formatTXT(got)); err != nil || back != got {
			t.Fatalf("parseTXT(formatTXT(%v)) = %v, %v", got, back, err)
		}
	})
}
