package dns

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func testZoneData() ZoneData {
	return ZoneData{
		Networks: []Network{
			{Name: "default", CIDR: netip.MustParsePrefix("10.200.0.0/16"), DNSAddr: netip.MustParseAddr("10.200.0.1")},
			{Name: "v6net", CIDR: netip.MustParsePrefix("fd00:1::/64")},
			{Name: "empty", CIDR: netip.MustParsePrefix("10.77.0.0/20")},
		},
		Nodes: []NodeRecord{
			{Name: "n1", Network: "default", Addr: netip.MustParseAddr("10.200.1.1")},
			{Name: "n2", Network: "default", Addr: netip.MustParseAddr("10.200.2.1")},
			{Name: "n1", Network: "v6net", Addr: netip.MustParseAddr("fd00:1::11")},
			{Name: "dual", Network: "default", Addr: netip.MustParseAddr("10.200.3.1")},
			{Name: "dual", Network: "default", Addr: netip.MustParseAddr("fd00:2::3")},
		},
		Services: []ServiceRecord{
			{Name: "web", Network: "default", VIP: netip.MustParseAddr("10.200.255.10"), Ports: []Port{{80, "tcp"}, {443, "tcp"}, {53, "udp"}}},
			{Name: "Api", Network: "v6net", VIP: netip.MustParseAddr("fd00:1::ff"), Ports: []Port{{8080, "tcp"}}},
		},
	}
}

// query runs one question through a Server's handler from loopback and
// returns the parsed reply.
func query(t *testing.T, s *Server, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	q := new(mdns.Msg)
	q.SetQuestion(name, qtype)
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	out := s.handle(context.Background(), netip.MustParseAddr("127.0.0.1"), b, false)
	if out == nil {
		t.Fatalf("%s %s: no reply", name, mdns.TypeToString[qtype])
	}
	r := new(mdns.Msg)
	if err := r.Unpack(out); err != nil {
		t.Fatalf("%s %s: reply does not parse: %v", name, mdns.TypeToString[qtype], err)
	}
	if r.Id != q.Id {
		t.Fatalf("%s %s: reply ID %d, want %d", name, mdns.TypeToString[qtype], r.Id, q.Id)
	}
	return r
}

// rrStrings renders a section as "TYPE TTL RDATA" strings, sorted.
func rrStrings(rrs []mdns.RR) []string {
	var out []string
	for _, rr := range rrs {
		f := strings.Fields(rr.String())
		// name ttl class type rdata...
		out = append(out, f[0]+" "+f[1]+" "+strings.Join(f[3:], " "))
	}
	slices.Sort(out)
	return out
}

func newTestServer(t *testing.T, d ZoneData) *Server {
	t.Helper()
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.SetZone(d); err != nil {
		t.Fatalf("SetZone: %v", err)
	}
	return s
}

func TestZoneAnswers(t *testing.T) {
	s := newTestServer(t, testZoneData())
	soa := "overlay. 5 SOA ns.overlay. hostmaster.overlay. 1 3600 600 86400 5"
	rev10 := "200.10.in-addr.arpa. 5 SOA ns.overlay. hostmaster.overlay. 1 3600 600 86400 5"
	tests := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
		ns     []string
		extra  []string
	}{
		// Services and nodes: A, AAAA, and NODATA for the other family.
		{"web.default.overlay.", mdns.TypeA, mdns.RcodeSuccess, []string{"web.default.overlay. 5 A 10.200.255.10"}, nil, nil},
		{"WEB.Default.OVERLAY.", mdns.TypeA, mdns.RcodeSuccess, []string{"web.default.overlay. 5 A 10.200.255.10"}, nil, nil},
		{"web.default.overlay.", mdns.TypeAAAA, mdns.RcodeSuccess, nil, []string{soa}, nil},
		{"web.default.overlay.", mdns.TypeTXT, mdns.RcodeSuccess, nil, []string{soa}, nil},
		{"n1.default.overlay.", mdns.TypeA, mdns.RcodeSuccess, []string{"n1.default.overlay. 5 A 10.200.1.1"}, nil, nil},
		{"n1.v6net.overlay.", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"n1.v6net.overlay. 5 AAAA fd00:1::11"}, nil, nil},
		{"n1.v6net.overlay.", mdns.TypeA, mdns.RcodeSuccess, nil, []string{soa}, nil},
		{"api.v6net.overlay.", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"api.v6net.overlay. 5 AAAA fd00:1::ff"}, nil, nil},
		{"dual.default.overlay.", mdns.TypeA, mdns.RcodeSuccess, []string{"dual.default.overlay. 5 A 10.200.3.1"}, nil, nil},
		{"dual.default.overlay.", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"dual.default.overlay. 5 AAAA fd00:2::3"}, nil, nil},
		{"dual.default.overlay.", mdns.TypeANY, mdns.RcodeSuccess, []string{"dual.default.overlay. 5 A 10.200.3.1", "dual.default.overlay. 5 AAAA fd00:2::3"}, nil, nil},
		// SRV, numeric port form, target's address in additional.
		{"_80._tcp.web.default.overlay.", mdns.TypeSRV, mdns.RcodeSuccess,
			[]string{"_80._tcp.web.default.overlay. 5 SRV 0 0 80 web.default.overlay."}, nil,
			[]string{"web.default.overlay. 5 A 10.200.255.10"}},
		{"_53._UDP.web.default.overlay.", mdns.TypeSRV, mdns.RcodeSuccess,
			[]string{"_53._udp.web.default.overlay. 5 SRV 0 0 53 web.default.overlay."}, nil,
			[]string{"web.default.overlay. 5 A 10.200.255.10"}},
		{"_8080._tcp.api.v6net.overlay.", mdns.TypeSRV, mdns.RcodeSuccess,
			[]string{"_8080._tcp.api.v6net.overlay. 5 SRV 0 0 8080 api.v6net.overlay."}, nil,
			[]string{"api.v6net.overlay. 5 AAAA fd00:1::ff"}},
		{"_80._tcp.web.default.overlay.", mdns.TypeA, mdns.RcodeSuccess, nil, []string{soa}, nil},
		{"_80._udp.web.default.overlay.", mdns.TypeSRV, mdns.RcodeNameError, nil, []string{soa}, nil},
		{"_81._tcp.web.default.overlay.", mdns.TypeSRV, mdns.RcodeNameError, nil, []string{soa}, nil},
		{"_http._tcp.web.default.overlay.", mdns.TypeSRV, mdns.RcodeNameError, nil, []string{soa}, nil},
		// Empty non-terminals are NODATA, not NXDOMAIN.
		{"_tcp.web.default.overlay.", mdns.TypeSRV, mdns.RcodeSuccess, nil, []string{soa}, nil},
		{"default.overlay.", mdns.TypeA, mdns.RcodeSuccess, nil, []string{soa}, nil},
		{"empty.overlay.", mdns.TypeA, mdns.RcodeSuccess, nil, []string{soa}, nil},
		// The apex: SOA, NODATA otherwise.
		{"overlay.", mdns.TypeSOA, mdns.RcodeSuccess, []string{soa}, nil, nil},
		{"OVERLAY.", mdns.TypeA, mdns.RcodeSuccess, nil, []string{soa}, nil},
		// Names that do not exist.
		{"nope.default.overlay.", mdns.TypeA, mdns.RcodeNameError, nil, []string{soa}, nil},
		{"web.nonet.overlay.", mdns.TypeA, mdns.RcodeNameError, nil, []string{soa}, nil},
		{"nonet.overlay.", mdns.TypeA, mdns.RcodeNameError, nil, []string{soa}, nil},
		{"x.web.default.overlay.", mdns.TypeA, mdns.RcodeNameError, nil, []string{soa}, nil},
		{"web.v6net.overlay.", mdns.TypeA, mdns.RcodeNameError, nil, []string{soa}, nil},
		// PTR.
		{"1.1.200.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, []string{"1.1.200.10.in-addr.arpa. 5 PTR n1.default.overlay."}, nil, nil},
		{"10.255.200.10.IN-ADDR.ARPA.", mdns.TypePTR, mdns.RcodeSuccess, []string{"10.255.200.10.in-addr.arpa. 5 PTR web.default.overlay."}, nil, nil},
		{"1.1.200.10.in-addr.arpa.", mdns.TypeA, mdns.RcodeSuccess, nil, []string{rev10}, nil},
		{"9.9.200.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeNameError, nil, []string{rev10}, nil},
		{"9.9.77.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeNameError, nil,
			[]string{"77.10.in-addr.arpa. 5 SOA ns.overlay. hostmaster.overlay. 1 3600 600 86400 5"}, nil},
		{reverse(t, "fd00:1::11"), mdns.TypePTR, mdns.RcodeSuccess, []string{reverse(t, "fd00:1::11") + " 5 PTR n1.v6net.overlay."}, nil, nil},
		{reverse(t, "fd00:1::ff"), mdns.TypePTR, mdns.RcodeSuccess, []string{reverse(t, "fd00:1::ff") + " 5 PTR api.v6net.overlay."}, nil, nil},
		// An address outside every CIDR that still has a record.
		{reverse(t, "fd00:2::3"), mdns.TypePTR, mdns.RcodeSuccess, []string{reverse(t, "fd00:2::3") + " 5 PTR dual.default.overlay."}, nil, nil},
	}
	for _, tt := range tests {
		r := query(t, s, tt.name, tt.qtype)
		typ := mdns.TypeToString[tt.qtype]
		if r.Rcode != tt.rcode {
			t.Errorf("%s %s: rcode %s, want %s", tt.name, typ, mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tt.rcode])
		}
		if !r.Authoritative {
			t.Errorf("%s %s: AA not set", tt.name, typ)
		}
		if got := rrStrings(r.Answer); !slices.Equal(got, tt.answer) {
			t.Errorf("%s %s: answer %q, want %q", tt.name, typ, got, tt.answer)
		}
		if got := rrStrings(r.Ns); !slices.Equal(got, tt.ns) {
			t.Errorf("%s %s: authority %q, want %q", tt.name, typ, got, tt.ns)
		}
		if got := rrStrings(r.Extra); !slices.Equal(got, tt.extra) {
			t.Errorf("%s %s: additional %q, want %q", tt.name, typ, got, tt.extra)
		}
	}
}

func reverse(t *testing.T, a string) string {
	r, err := mdns.ReverseAddr(a)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestZoneDomainAndTTL(t *testing.T) {
	d := testZoneData()
	d.Domain = "Corp.Internal"
	d.TTL = 30 * time.Second
	s := newTestServer(t, d)
	r := query(t, s, "web.default.corp.internal.", mdns.TypeA)
	if got, want := rrStrings(r.Answer), []string{"web.default.corp.internal. 30 A 10.200.255.10"}; !slices.Equal(got, want) {
		t.Errorf("answer %q, want %q", got, want)
	}
	r = query(t, s, "nope.corp.internal.", mdns.TypeA)
	if r.Rcode != mdns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].(*mdns.SOA).Minttl != 30 || r.Ns[0].Header().Ttl != 30 {
		t.Errorf("NXDOMAIN reply %v, want SOA with TTL and minimum 30", r)
	}
	// The old domain is no longer ours: with no forwarder, REFUSED.
	if r := query(t, s, "web.default.overlay.", mdns.TypeA); r.Rcode != mdns.RcodeRefused {
		t.Errorf("old domain: rcode %s, want REFUSED", mdns.RcodeToString[r.Rcode])
	}
}

func TestZoneSwap(t *testing.T) {
	s := newTestServer(t, testZoneData())
	d := testZoneData()
	d.Services = nil
	if err := s.SetZone(d); err != nil {
		t.Fatal(err)
	}
	if r := query(t, s, "web.default.overlay.", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Errorf("removed service: rcode %s, want NXDOMAIN", mdns.RcodeToString[r.Rcode])
	}
	if err := s.SetZone(testZoneData()); err != nil {
		t.Fatal(err)
	}
	if r := query(t, s, "web.default.overlay.", mdns.TypeA); len(r.Answer) != 1 {
		t.Errorf("service back: answer %v, want one A", r.Answer)
	}
}

func TestZoneValidation(t *testing.T) {
	base := testZoneData()
	tests := []struct {
		name    string
		edit    func(*ZoneData)
		wantErr string // substring; "" = no error
		keep    string // a name still served (A) despite the error
		nilZone bool
	}{
		{"valid", func(*ZoneData) {}, "", "web.default.overlay.", false},
		{"bad domain", func(d *ZoneData) { d.Domain = "a..b" }, "not a domain name", "", true},
		{"bad ttl", func(d *ZoneData) { d.TTL = time.Millisecond }, "TTL", "", true},
		{"bad node label", func(d *ZoneData) {
			d.Nodes = append(d.Nodes, NodeRecord{Name: "a.b", Network: "default", Addr: netip.MustParseAddr("10.200.9.9")})
		}, `node "a.b"`, "n1.default.overlay.", false},
		{"unknown network", func(d *ZoneData) {
			d.Nodes = append(d.Nodes, NodeRecord{Name: "x", Network: "nope", Addr: netip.MustParseAddr("10.200.9.9")})
		}, `unknown network "nope"`, "n1.default.overlay.", false},
		{"no address", func(d *ZoneData) { d.Nodes = append(d.Nodes, NodeRecord{Name: "x", Network: "default"}) }, "address is not set", "n2.default.overlay.", false},
		{"bad proto", func(d *ZoneData) {
			d.Services = append(d.Services, ServiceRecord{Name: "db", Network: "default", VIP: netip.MustParseAddr("10.200.255.11"), Ports: []Port{{5432, "sctp"}}})
		}, "5432/sctp", "db.default.overlay.", false},
		{"node shadows service", func(d *ZoneData) {
			d.Nodes = append(d.Nodes, NodeRecord{Name: "web", Network: "default", Addr: netip.MustParseAddr("10.200.9.9")})
		}, "a service has that name", "web.default.overlay.", false},
		{"bad network", func(d *ZoneData) { d.Networks = append(d.Networks, Network{Name: "x"}) }, "CIDR is not set", "web.default.overlay.", false},
		{"dns addr outside", func(d *ZoneData) {
			d.Networks[0].DNSAddr = netip.MustParseAddr("10.9.0.1")
		}, "outside", "web.default.overlay.", false},
	}
	for _, tt := range tests {
		d := base
		d.Networks = slices.Clone(base.Networks)
		d.Nodes = slices.Clone(base.Nodes)
		d.Services = slices.Clone(base.Services)
		tt.edit(&d)
		z, err := NewZone(d)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: NewZone error %v, want one containing %q", tt.name, err, tt.wantErr)
		}
		if (z == nil) != tt.nilZone {
			t.Errorf("%s: NewZone zone %v, want nil=%v", tt.name, z, tt.nilZone)
		}
		if z != nil && tt.keep != "" {
			if a, ok := z.lookup(tt.keep, mdns.TypeA); !ok || len(a.answer) != 1 {
				t.Errorf("%s: %s not served (%v, %v)", tt.name, tt.keep, a, ok)
			} else if tt.name == "node shadows service" && a.answer[0].(*mdns.A).A.String() != "10.200.255.10" {
				t.Errorf("%s: %s = %v, want the service VIP", tt.name, tt.keep, a.answer[0])
			}
		}
	}
	// A bad domain keeps the previous zone in the Server.
	s := newTestServer(t, base)
	if err := s.SetZone(ZoneData{Domain: "a..b"}); err == nil {
		t.Error("SetZone(bad domain) = nil error")
	}
	if r := query(t, s, "web.default.overlay.", mdns.TypeA); len(r.Answer) != 1 {
		t.Errorf("after a rejected zone: answer %v, want the old zone's A", r.Answer)
	}
}

func TestParseReverse(t *testing.T) {
	for _, a := range []string{"10.0.0.1", "255.255.255.255", "0.0.0.0", "fd00::1", "2001:db8:1:2:3:4:5:6"} {
		want := netip.MustParseAddr(a)
		got, ok := parseReverse(reverse(t, a))
		if !ok || got != want {
			t.Errorf("parseReverse(%q) = %v, %v; want %v", reverse(t, a), got, ok, want)
		}
	}
	for _, bad := range []string{"1.2.3.in-addr.arpa.", "256.1.1.1.in-addr.arpa.", "01.1.1.1.in-addr.arpa.", "x.1.1.1.in-addr.arpa.", "1.ip6.arpa.", "in-addr.arpa."} {
		if got, ok := parseReverse(bad); ok {
			t.Errorf("parseReverse(%q) = %v, want not ok", bad, got)
		}
	}
	for p, want := range map[string]string{"10.200.0.0/16": "200.10.in-addr.arpa.", "10.77.0.0/20": "77.10.in-addr.arpa.", "fd00:1::/64": "0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa.", "0.0.0.0/0": "in-addr.arpa."} {
		if got := reverseApex(netip.MustParsePrefix(p)); got != want {
			t.Errorf("reverseApex(%s) = %q, want %q", p, got, want)
		}
	}
}
