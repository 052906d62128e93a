package service

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/gossip/gossiptest"
	"github.com/overlayd/overlayd/internal/fault"
)

// dual is a dual-stack network (the fake IPAM's IPv6 VIPs are fd00:1::f0xx).
var dual = Network{Name: "dual", VNI: 9,
	CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:1::/64")},
	Addrs: []netip.Addr{netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("fd00:1::1")}}

// A service on a dual-stack network gets a VIP of each family (one given
// is kept, the other allocated); backends of either family are added to
// it and serve the VIP of their family; ":PORT" declares one backend per
// family; removing it releases both VIPs.
func TestDualStackService(t *testing.T) {
	g := newGossip(t, gossiptest.NewNetwork(), "a")
	if err := g.JoinNetwork(dual.Name); err != nil {
		t.Fatal(err)
	}
	fi := &fakeIPAM{self: "a"}
	m := New(Options{Gossip: g, IPAM: fi, Networks: func() []Network { return []Network{dual} }})
	m.Start()
	t.Cleanup(func() { m.Close() })
	ctx := context.Background()
	si, err := m.Create(ctx, Create{Name: "web", Ports: []string{"80/tcp"}})
	if err != nil || si.VIP != "10.1.255.1" || fmt.Sprint(si.VIPs) != "[10.1.255.1 fd00:1::f002]" {
		t.Fatalf("Create(dual) = %+v, %v; want a VIP of each family", si, err)
	}
	si, err = m.Create(ctx, Create{Name: "api", Ports: []string{"80/tcp"}, VIP: "fd00:1::f0aa"})
	if err != nil || fmt.Sprint(si.VIPs) != "[10.1.255.3 fd00:1::f0aa]" {
		t.Errorf("Create(dual, IPv6 VIP given) = %+v, %v", si, err)
	}
	for _, tt := range []struct {
		req  Create
		kind error
		msg  string
	}{
		{Create{Name: "x", Ports: []string{"80"}, VIP: "10.1.255.9", VIPs: []string{"10.1.255.8"}}, fault.ErrInvalid, "VIPs 10.1.255.9 and 10.1.255.8 are of one family; a service has at most one IPv4 and one IPv6 VIP"},
		{Create{Name: "x", Ports: []string{"80"}, VIP: "fd00:2::1"}, fault.ErrInvalid, `VIP fd00:2::1 is outside network "dual" (10.1.0.0/16,fd00:1::/64)`},
		{Create{Name: "x", Ports: []string{"80"}, VIP: "fd00:1::f0aa"}, fault.ErrConflict, `VIP fd00:1::f0aa is taken by service "api"`},
		{Create{Name: "x", Ports: []string{"80"}, VIP: "fe80::1%eth0"}, fault.ErrInvalid, `VIP "fe80::1%eth0" is not an IP address`},
	} {
		if _, err := m.Create(ctx, tt.req); !errors.Is(err, tt.kind) || err.Error() != tt.msg {
			t.Errorf("Create(%+v) = %v, want %q", tt.req, err, tt.msg)
		}
	}
	for _, a := range []string{"10.1.0.2:8080", "[fd00:1::2]:8080", "[::ffff:10.1.0.3]:8080"} {
		if _, err := m.AddBackend(AddBackend{Service: "web", Addr: a, Weight: 1}); err != nil {
			t.Errorf("AddBackend(%s): %v", a, err)
		}
	}
	if _, err := m.AddBackend(AddBackend{Service: "web", Addr: "[fd00:1::f002]:80", Weight: 1}); err == nil {
		t.Error("a backend on the IPv6 VIP was added")
	}
	si, _ = m.Service("", "web")
	var bs []string
	for _, b := range si.Backends {
		bs = append(bs, b.Addr)
	}
	slices.Sort(bs)
	if fmt.Sprint(bs) != "[10.1.0.2:8080 10.1.0.3:8080 [fd00:1::2]:8080]" {
		t.Errorf("backends %v, want the three (the IPv4-mapped one unmapped)", bs)
	}

	// The balancer: two services side by side, each with the backends of
	// its VIP's family.
	view := View{Networks: []Network{dual}, Routes: []Route{
		{Prefix: netip.MustParsePrefix("10.1.0.2/32"), VNI: 9, Owner: "b"},
		{Prefix: netip.MustParsePrefix("fd00:1::2/128"), VNI: 9, Owner: "b"},
	}}
	snap := catalog.Snapshot{Members: []gossip.Member{{Name: "a", State: gossip.StateAlive}, {Name: "b", State: gossip.StateAlive}},
		Networks: map[string]catalog.Tables{"dual": {Services: g.ListAll(catalog.TableServices, "dual"), Backends: g.List(catalog.TableBackends, "dual")}}}
	var got []string
	for _, ls := range Balance(snap, view) {
		if ls.Name != "web" && ls.Name != "web/6" {
			continue
		}
		line := ls.Name + " " + ls.VIP.String()
		for _, b := range ls.Backends {
			line += " " + b.Addr.String()
		}
		got = append(got, line)
	}
	if want := "[web 10.1.255.1 10.1.0.2:8080 web/6 fd00:1::f002 [fd00:1::2]:8080]"; fmt.Sprint(got) != want {
		t.Errorf("balanced %v, want %s (10.1.0.3 has no route)", got, want)
	}

	// Declared ":PORT" is this node's address of each family.
	var changes []string
	d := Declared{Name: "web", Backends: []DeclaredBackend{{Addr: ":9000", Weight: 1}}}
	if err := m.Declare(ctx, d, nil, func(f string, a ...any) { changes = append(changes, fmt.Sprintf(f, a...)) }); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(changes); got != "[service web: backend 10.1.0.1:9000 added (weight 1, check none) service web: backend [fd00:1::1]:9000 added (weight 1, check none) service web: backend 10.1.0.2:8080 removed service web: backend 10.1.0.3:8080 removed service web: backend [fd00:1::2]:8080 removed]" {
		t.Errorf("Declare(:9000) changes %s", got)
	}

	if err := m.Remove("", "web"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"10.1.255.1", "fd00:1::f002"} {
		if _, held := fi.Lookup("dual", netip.MustParseAddr(a)); held {
			t.Errorf("VIP %s still leased after the remove", a)
		}
	}
}

// A backend of a family the service has no VIP of is refused, saying so.
func TestBackendFamilyMismatch(t *testing.T) {
	g := newGossip(t, gossiptest.NewNetwork(), "a")
	m := newManager(t, g, "10.1.0.1", Options{})
	if _, err := m.Create(context.Background(), Create{Name: "web", Ports: []string{"80/tcp"}}); err != nil {
		t.Fatal(err)
	}
	_, err := m.AddBackend(AddBackend{Service: "web", Addr: "[fd00:1::2]:80", Weight: 1})
	if !errors.Is(err, fault.ErrInvalid) || err.Error() != `backend [fd00:1::2]:80 is outside network "blue" (10.1.0.0/16)` {
		t.Errorf("AddBackend(IPv6 on an IPv4 network) = %v", err)
	}
}
