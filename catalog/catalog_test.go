package catalog

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/overlayd/overlayd/gossip"
)

// The tables' names and values are read by nodes of other versions: they
// must not change.
func TestWireFormat(t *testing.T) {
	sv := Service{Name: "web", Network: "default", VIP: "10.200.255.1", Ports: []Port{{Port: 80, Proto: "tcp"}}}.Encode()
	if want := `{"name":"web","network":"default","vip":"10.200.255.1","ports":[{"port":80,"proto":"tcp"}]}`; string(sv) != want {
		t.Errorf("services value %s, want %s", sv, want)
	}
	bv := Backend{Service: "web", Addr: "10.200.1.1:8080", Weight: 1, Healthy: true}.Encode()
	if want := `{"service":"web","addr":"10.200.1.1:8080","weight":1,"healthy":true}`; string(bv) != want {
		t.Errorf("backends value %s, want %s", bv, want)
	}
	bv = Backend{Service: "dns", Addr: "10.200.1.2:53", Weight: 2, Check: "udp", Port: 53}.Encode()
	if want := `{"service":"dns","addr":"10.200.1.2:53","weight":2,"healthy":false,"check":"udp","port":53}`; string(bv) != want {
		t.Errorf("backends value %s, want %s", bv, want)
	}
	rv := Route{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.20.120.1/32")}, VTEP: netip.MustParseAddrPort("127.0.0.1:4789")}.Encode()
	if want := "10.20.120.1/32 127.0.0.1:4789"; string(rv) != want {
		t.Errorf("routes value %q, want %q", rv, want)
	}
	rv = Route{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.20.120.1/32"), netip.MustParsePrefix("fd00:10::2/128")}, VTEP: netip.MustParseAddrPort("[2001:db8::1]:4789")}.Encode()
	if want := "10.20.120.1/32 fd00:10::2/128 [2001:db8::1]:4789"; string(rv) != want {
		t.Errorf("dual-stack routes value %q, want %q", rv, want)
	}
	if TableServices != "overlayd.services" || TableBackends != "overlayd.backends" || TableRoutes != "overlayd.routes" {
		t.Errorf("tables %q %q %q", TableServices, TableBackends, TableRoutes)
	}
	if k := BackendKey("web", netip.MustParseAddrPort("10.200.1.1:8080")); k != "web/10.200.1.1:8080" {
		t.Errorf("backend key %q", k)
	}
}

// Every encoder's value reads back as itself.
func TestRoundTrip(t *testing.T) {
	for _, r := range []Route{
		{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.20.0.7/32")}, VTEP: netip.MustParseAddrPort("[::1]:4789")},
		{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.20.0.7/32"), netip.MustParsePrefix("fd00::7/128")}, VTEP: netip.MustParseAddrPort("127.0.0.1:4789")},
		{Prefixes: []netip.Prefix{netip.MustParsePrefix("fd00::7/128")}, VTEP: netip.MustParseAddrPort("127.0.0.1:4789")},
	} {
		if got, err := ParseRoute(r.Encode()); err != nil || !slices.Equal(got.Prefixes, r.Prefixes) || got.VTEP != r.VTEP {
			t.Errorf("ParseRoute(%q) = %+v, %v", r.Encode(), got, err)
		}
	}
	for _, bad := range []string{"fd00::7/128 10.0.0.1/32 127.0.0.1:1", "10.0.0.1/32 10.0.0.2/32 127.0.0.1:1", "fd00::1/128 fd00::2/128 127.0.0.1:1",
		"::ffff:10.0.0.1/128 127.0.0.1:1", "fe80::1%eth0/128 127.0.0.1:1", "10.0.0.1/32 fd00::1/128 fd00::2/128 127.0.0.1:1", "10.0.0.1/32"} {
		if r, err := ParseRoute([]byte(bad)); err == nil {
			t.Errorf("ParseRoute(%q) = %+v, want an error", bad, r)
		}
	}
	s := Service{Name: "web", Network: "blue", VIP: "10.20.255.1", Ports: []Port{{80, "tcp"}, {53, "udp"}}}
	got, err := ServiceEntry(gossip.Entry{Key: "web", Value: s.Encode()}, "blue")
	if err != nil || got.Name != s.Name || got.VIP != s.VIP || len(got.Ports) != 2 || got.Ports[1] != s.Ports[1] {
		t.Errorf("ServiceEntry = %+v, %v", got, err)
	}
	if _, err := ServiceEntry(gossip.Entry{Key: "other", Value: s.Encode()}, "blue"); err == nil {
		t.Error("ServiceEntry accepted a value naming another key")
	}
	if _, err := ServiceEntry(gossip.Entry{Key: "web", Value: s.Encode()}, "green"); err == nil {
		t.Error("ServiceEntry accepted a value naming another network")
	}
	a := netip.MustParseAddrPort("10.20.1.1:8080")
	b := Backend{Service: "web", Addr: a.String(), Weight: 1, Healthy: true, Check: "tcp", Port: 80}
	gb, ga, err := BackendEntry(gossip.Entry{Key: BackendKey("web", a), Value: b.Encode()})
	if err != nil || gb != b || ga != a {
		t.Errorf("BackendEntry = %+v, %v, %v", gb, ga, err)
	}
	if _, _, err := BackendEntry(gossip.Entry{Key: "web/10.20.1.2:8080", Value: b.Encode()}); err == nil {
		t.Error("BackendEntry accepted a key that is not the value's")
	}
	v6 := Backend{Service: "web", Addr: "[fd00:10::3]:80"}
	if _, a, err := BackendEntry(gossip.Entry{Key: "web/[fd00:10::3]:80", Value: v6.Encode()}); err != nil || a != netip.MustParseAddrPort("[fd00:10::3]:80") {
		t.Errorf("BackendEntry(IPv6) = %v, %v", a, err)
	}
	for _, bad := range []string{"[::ffff:10.0.0.1]:80", "[fe80::1%eth0]:80"} {
		b := Backend{Service: "web", Addr: bad}
		if _, _, err := BackendEntry(gossip.Entry{Key: "web/" + bad, Value: b.Encode()}); err == nil {
			t.Errorf("BackendEntry accepted %s", bad)
		}
	}
	ds := Service{Name: "web", Network: "blue", VIP: "10.20.255.1", VIP6: "fd00:20::f000:0", Ports: []Port{{80, "tcp"}}}
	if got := fmt.Sprint(ds.VIPs()); got != "[10.20.255.1 fd00:20::f000:0]" {
		t.Errorf("VIPs = %s", got)
	}
	if b := ds.Encode(); !strings.Contains(string(b), `"vip6":"fd00:20::f000:0"`) {
		t.Errorf("dual-stack services value %s", b)
	}
	for _, bad := range []Service{{VIP: "fd00::1", VIP6: "fd00::2"}, {VIP: "10.0.0.1", VIP6: "10.0.0.2"}, {VIP: "10.0.0.1", VIP6: "::ffff:10.0.0.2"}} {
		if got := bad.VIPs(); len(got) != 1 {
			t.Errorf("%+v.VIPs() = %v, want the first only", bad, got)
		}
	}
}

// FuzzParseRoute: any route value, as a forger may write it, is refused
// or read as one or two masked prefixes (IPv4 first, one per family) and
// a VTEP with a port, and encodes back to what it reads as; never a panic.
func FuzzParseRoute(f *testing.F) {
	f.Add([]byte("10.20.120.1/32 127.0.0.1:4789"))
	f.Add([]byte("10.20.0.0/16 [::1]:4789"))
	f.Add([]byte("10.20.120.1/32 fd00:10::2/128 [2001:db8::1]:4789"))
	f.Add([]byte("fd00:10::2/128 127.0.0.1:4789"))
	f.Add([]byte(" "))
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := ParseRoute(v)
		if err != nil {
			return
		}
		ok := len(r.Prefixes) >= 1 && len(r.Prefixes) <= 2 && r.VTEP.IsValid() && r.VTEP.Port() != 0
		for i, p := range r.Prefixes {
			ok = ok && p == p.Masked() && !p.Addr().Is4In6() && p.Addr().Zone() == "" && (i == 0 || p.Addr().Is6() && r.Prefixes[0].Addr().Is4())
		}
		if !ok {
			t.Fatalf("ParseRoute(%q) = %+v: accepted", v, r)
		}
		if again, err := ParseRoute(r.Encode()); err != nil || !slices.Equal(again.Prefixes, r.Prefixes) || again.VTEP != r.VTEP {
			t.Fatalf("ParseRoute(Encode(%+v)) = %+v, %v", r, again, err)
		}
	})
}

// FuzzServiceEntry: any services value is refused or names the entry's
// key and network, with VIPs of at most one per family (IPv4 first); a
// backends value is refused or has a plain IPv4 or IPv6 address and the
// key of its service and address; never a panic.
func FuzzServiceEntry(f *testing.F) {
	f.Add("web", []byte(`{"name":"web","network":"default","vip":"10.200.255.1","ports":[{"port":80,"proto":"tcp"}]}`))
	f.Add("web/10.200.1.1:8080", []byte(`{"service":"web","addr":"10.200.1.1:8080","weight":1,"healthy":true}`))
	f.Add("x", []byte(`{"ports":[{"port":-1}]}`))
	f.Add("web", []byte(`{"name":"web","network":"default","vip":"10.200.255.1","ports":[{"port":80,"proto":"tcp"}],"vip6":"fd00::f000:0"}`))
	f.Add("web/[fd00::3]:8080", []byte(`{"service":"web","addr":"[fd00::3]:8080","weight":1,"healthy":true}`))
	f.Fuzz(func(t *testing.T, key string, v []byte) {
		if s, err := ServiceEntry(gossip.Entry{Key: key, Value: v}, "default"); err == nil && (s.Name != key || s.Network != "default") {
			t.Fatalf("ServiceEntry(%q, %q) = %+v: accepted", key, v, s)
		} else if err == nil {
			vips := s.VIPs()
			if len(vips) > 2 || len(vips) == 2 && (!vips[0].Is4() || !vips[1].Is6() || vips[1].Is4In6()) {
				t.Fatalf("ServiceEntry(%q, %q).VIPs() = %v", key, v, vips)
			}
		}
		if b, a, err := BackendEntry(gossip.Entry{Key: key, Value: v}); err == nil && (a.Addr().Is4In6() || a.Addr().Zone() != "" || key != BackendKey(b.Service, a)) {
			t.Fatalf("BackendEntry(%q, %q) = %+v, %v: accepted", key, v, b, a)
		}
	})
}
