package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/ipam"
)

// dual is a dual-stack network (the fake IPAM's IPv6 addresses start at
// fd00:30::3).
var dual = Net{Name: "dual", VNI: 9,
	CIDRs: []netip.Prefix{netip.MustParsePrefix("10.30.0.0/16"), netip.MustParsePrefix("fd00:30::/64")},
	Addrs: []netip.Addr{netip.MustParseAddr("10.30.0.2"), netip.MustParseAddr("fd00:30::2")}}

func onDual(o *Options) { o.Networks = func() []Net { return []Net{dual} } }

// On a dual-stack network an endpoint gets an address of each family (the
// ones asked for, or from IPAM): the device, the router, the routes entry,
// the Info (both DNS addresses, both default routes) and endpoints.json
// carry both, and a restart re-adopts it with both.
func TestAttachDualStack(t *testing.T) {
	w := newWorld(t, "/run/netns/c1", "/run/netns/c2", "/run/netns/c3")
	m := w.manager(t, onDual)
	ctx := context.Background()
	in, err := m.Attach(ctx, Request{Name: "c1", Netns: "/run/netns/c1", DefaultRoute: true})
	must(t, err)
	if got := fmt.Sprint(in.Addr, in.Addrs, in.DNSAddrs, in.Routes); got != "10.30.0.3/16 [10.30.0.3/16 fd00:30::3/64] [10.30.0.1 fd00:30::1] [10.30.0.0/16 fd00:30::/64 0.0.0.0/0 ::/0]" {
		t.Errorf("Info: %s", got)
	}
	for _, a := range []string{"10.30.0.3", "fd00:30::3"} {
		if ls, _ := w.ip.Lookup("dual", netip.MustParseAddr(a)); ls.Owner != "n1/c1" {
			t.Errorf("lease of %s: owner %q, want n1/c1", a, ls.Owner)
		}
	}
	if v, _ := w.g.get("dual", catalog.EndpointRouteKey("n1", "c1")); v != "10.30.0.3/32 fd00:30::3/128 192.0.2.1:4789" {
		t.Errorf("routes entry %q", v)
	}
	if opts := w.op.devs["/run/netns/c1 eth0"]; fmt.Sprint(opts.Addrs) != "[10.30.0.3/16 fd00:30::3/64]" || !opts.DefaultRoute {
		t.Errorf("device options %+v", opts)
	}
	if ep := w.rt.eps["c1"]; fmt.Sprint(ep.addrs) != "[10.30.0.3 fd00:30::3]" {
		t.Errorf("router has %v", ep.addrs)
	}
	b, _ := os.ReadFile(filepath.Join(w.dir, File))
	if !strings.Contains(string(b), `"cidr6": "fd00:30::/64"`) || !strings.Contains(string(b), `"addr6": "fd00:30::3"`) {
		t.Errorf("endpoints.json:\n%s", b)
	}

	// --ip of each family, or of one (the other from IPAM).
	in, err = m.Attach(ctx, Request{Name: "c2", Netns: "/run/netns/c2", IPs: []netip.Addr{netip.MustParseAddr("fd00:30::99"), netip.MustParseAddr("10.30.0.99")}})
	if err != nil || fmt.Sprint(in.Addrs) != "[10.30.0.99/16 fd00:30::99/64]" {
		t.Errorf("Attach(both given) = %v, %v", in.Addrs, err)
	}
	in, err = m.Attach(ctx, Request{Name: "c3", Netns: "/run/netns/c3", IPs: []netip.Addr{netip.MustParseAddr("fd00:30::77")}})
	if err != nil || fmt.Sprint(in.Addrs) != "[10.30.0.4/16 fd00:30::77/64]" {
		t.Errorf("Attach(IPv6 given) = %v, %v", in.Addrs, err)
	}
	for _, tt := range []struct {
		ips  []string
		kind *fault.Kind
		want string
	}{
		{[]string{"fd00:30::5", "fd00:30::6"}, fault.ErrInvalid, "are of one family"},
		{[]string{"fd00:31::5"}, fault.ErrInvalid, "outside network dual"},
		{[]string{"fd00:30::1"}, fault.ErrConflict, "DNS address"},
		{[]string{"fd00:30::2"}, fault.ErrConflict, "this node's own address"},
		{[]string{"fd00:30::"}, fault.ErrInvalid, "network or broadcast address"},
		{[]string{"fd00:30::3"}, fault.ErrConflict, "in use by endpoint c1"},
	} {
		var ips []netip.Addr
		for _, s := range tt.ips {
			ips = append(ips, netip.MustParseAddr(s))
		}
		_, err := m.Attach(ctx, Request{Name: "c4", Netns: "/run/netns/c4", IPs: ips})
		if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Attach(%v) = %v, want a %v error with %q", tt.ips, err, tt.kind, tt.want)
		}
	}
	if n := len(w.ip.Leases("dual")); n != 6 {
		t.Errorf("%d leases after the refusals, want 6 (three endpoints of two families): %v", n, w.ip.Leases("dual"))
	}

	m.Close()
	w.rt.eps = map[string]fakeEP{} // the router starts anew with the daemon
	m = w.manager(t, onDual)
	in, err = m.Get("c1")
	if err != nil || !in.Attached || fmt.Sprint(in.Addrs) != "[10.30.0.3/16 fd00:30::3/64]" {
		t.Errorf("after a restart: %+v, %v", in, err)
	}
	if ep := w.rt.eps["c1"]; fmt.Sprint(ep.addrs) != "[10.30.0.3 fd00:30::3]" {
		t.Errorf("router has %v after the restart", ep.addrs)
	}
	if as := m.Addrs()["dual"]; len(as) != 6 {
		t.Errorf("Addrs = %v, want both of each endpoint", as)
	}
	must(t, m.Detach("c1"))
	for _, a := range []string{"10.30.0.3", "fd00:30::3"} {
		if _, held := w.ip.Lookup("dual", netip.MustParseAddr(a)); held {
			t.Errorf("%s still leased after the detach", a)
		}
	}
}

// An IPv6 address on an IPv4 network is refused, saying the network has
// no IPv6 CIDR; a reservation of either family is made on a dual-stack
// network, and refused for a family the network lacks.
func TestFamilyRefusals(t *testing.T) {
	w := newWorld(t, "/run/netns/c1")
	m := w.manager(t)
	_, err := m.Attach(context.Background(), Request{Name: "c1", Netns: "/run/netns/c1", IPs: []netip.Addr{netip.MustParseAddr("fd00:30::5")}})
	if !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), "fd00:30::5 is IPv6, and network blue (10.30.0.0/16) has no IPv6 CIDR") {
		t.Errorf("Attach(IPv6 on IPv4) = %v", err)
	}
	if _, err := m.Reserve(context.Background(), "blue", netip.Addr{}, ipam.IPv6); !errors.Is(err, fault.ErrInvalid) {
		t.Errorf("Reserve(IPv6 on IPv4) = %v", err)
	}
	w2 := newWorld(t)
	m2 := w2.manager(t, onDual)
	r, err := m2.Reserve(context.Background(), "dual", netip.Addr{}, ipam.IPv6)
	if err != nil || r.Addr != netip.MustParsePrefix("fd00:30::3/64") || r.DNS != netip.MustParseAddr("fd00:30::1") {
		t.Errorf("Reserve(IPv6) = %+v, %v", r, err)
	}
	if r, err := m2.Reserve(context.Background(), "dual", netip.MustParseAddr("10.30.9.9"), ipam.IPv6); err == nil {
		t.Errorf("Reserve(an IPv4 address, family IPv6) = %+v", r)
	}
}
