package service

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/lb"
)

func svcEnt(owner string, time uint64, name, network, vip string, ports ...catalog.Port) gossip.Entry {
	v := catalog.Service{Name: name, Network: network, VIP: vip, Ports: ports}
	return gossip.Entry{Key: catalog.ServiceKey(name), Owner: owner, Time: time, Value: v.Encode()}
}

func bkEnt(owner string, b catalog.Backend) gossip.Entry {
	return gossip.Entry{Key: catalog.BackendKey(b.Service, netip.MustParseAddrPort(b.Addr)), Owner: owner, Value: b.Encode()}
}

var (
	tcp80 = catalog.Port{Port: 80, Proto: "tcp"}
	udp53 = catalog.Port{Port: 53, Proto: "udp"}
	tcp53 = catalog.Port{Port: 53, Proto: "tcp"}
)

// Balance: every service of the joined networks, earlier entries first;
// a service's backends are those active or draining and not on this
// node; unreachable (routed to a dead node, or not routed), unhealthy and
// malformed ones are left out.
func TestBalance(t *testing.T) {
	view := View{
		Networks: []Network{{Name: "blue", VNI: 7, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, Addrs: []netip.Addr{netip.MustParseAddr("10.1.0.1")}}},
		Routes: []Route{
			{Prefix: netip.MustParsePrefix("10.1.0.2/32"), VNI: 7, Owner: "b"},
			{Prefix: netip.MustParsePrefix("10.1.0.3/32"), VNI: 7, Owner: "c"},
			{Prefix: netip.MustParsePrefix("10.1.0.4/32"), VNI: 7, Owner: "static"},
			{Prefix: netip.MustParsePrefix("10.1.0.5/32"), VNI: 8, Owner: "b"}, // another network's
		},
	}
	snap := catalog.Snapshot{
		Members: []gossip.Member{{Name: "a", State: gossip.StateAlive}, {Name: "b", State: gossip.StateSuspect}, {Name: "c", State: gossip.StateDead}},
		Networks: map[string]catalog.Tables{
			"blue": {
				Services: []gossip.Entry{
					svcEnt("a", 5, "web", "blue", "10.1.255.1", tcp80),
					svcEnt("b", 3, "dns", "blue", "10.1.255.2", udp53, tcp53),
					svcEnt("b", 4, "bad", "green", "10.1.255.3", tcp80),   // names another network
					svcEnt("b", 4, "v6", "blue", "fd00::1", tcp80),        // outside the network
					svcEnt("b", 4, "noport", "blue", "10.1.255.4"),        // no port
					{Key: "junk", Owner: "b", Value: []byte("{not json")}, // malformed
				},
				Backends: []gossip.Entry{
					bkEnt("a", catalog.Backend{Service: "web", Addr: "10.1.0.1:8080", Weight: 1, Healthy: true}), // own address
					bkEnt("b", catalog.Backend{Service: "web", Addr: "10.1.0.2:8080", Weight: 2, Healthy: true}),
					bkEnt("c", catalog.Backend{Service: "web", Addr: "10.1.0.3:8080", Weight: 1, Healthy: true}), // dead owner's route
					bkEnt("b", catalog.Backend{Service: "web", Addr: "10.1.0.4:8080", Weight: 0, Healthy: true}), // draining, static route
					bkEnt("b", catalog.Backend{Service: "web", Addr: "10.1.0.5:8080", Weight: 1, Healthy: true}), // routed on VNI 8 only
					bkEnt("b", catalog.Backend{Service: "web", Addr: "10.1.0.2:8081", Weight: 1, Healthy: false}),
					bkEnt("b", catalog.Backend{Service: "dns", Addr: "10.1.0.2:53", Weight: 1, Healthy: true}),
					bkEnt("b", catalog.Backend{Service: "dns", Addr: "10.1.0.2:5353", Weight: 1, Healthy: true, Port: 99}), // no port 99
					bkEnt("b", catalog.Backend{Service: "gone", Addr: "10.1.0.2:80", Weight: 1, Healthy: true}),            // no such service
				},
			},
			"green": {Services: []gossip.Entry{svcEnt("b", 1, "other", "green", "10.2.255.1", tcp80)}}, // not joined
		},
	}
	udp, tcp := lb.PortProto{Port: 53, Proto: lb.UDP}, lb.PortProto{Port: 53, Proto: lb.TCP}
	web80 := lb.PortProto{Port: 80, Proto: lb.TCP}
	want := []lb.Service{
		{Network: "blue", Name: "dns", VIP: netip.MustParseAddr("10.1.255.2"), Ports: []lb.PortProto{udp, tcp},
			Backends: []lb.Backend{{Addr: netip.MustParseAddrPort("10.1.0.2:53"), Ports: []lb.PortProto{udp, tcp}, Weight: 1}}},
		{Network: "blue", Name: "web", VIP: netip.MustParseAddr("10.1.255.1"), Ports: []lb.PortProto{web80},
			Backends: []lb.Backend{
				{Addr: netip.MustParseAddrPort("10.1.0.2:8080"), Ports: []lb.PortProto{web80}, Weight: 2},
				{Addr: netip.MustParseAddrPort("10.1.0.4:8080"), Ports: []lb.PortProto{web80}, Weight: 0},
			}},
	}
	if got := Balance(snap, view); !reflect.DeepEqual(got, want) {
		t.Errorf("Balance =\n%+v\nwant\n%+v", got, want)
	}
}

func TestServedPorts(t *testing.T) {
	p := func(n uint16, proto lb.Proto) lb.PortProto { return lb.PortProto{Port: n, Proto: proto} }
	tests := []struct {
		ports    []lb.PortProto
		addr     string
		explicit uint16
		want     []lb.PortProto
		err      string
	}{
		{[]lb.PortProto{p(80, lb.TCP)}, "10.0.0.1:8080", 0, []lb.PortProto{p(80, lb.TCP)}, ""},
		{[]lb.PortProto{p(53, lb.UDP), p(53, lb.TCP)}, "10.0.0.1:5353", 0, []lb.PortProto{p(53, lb.UDP), p(53, lb.TCP)}, ""},
		{[]lb.PortProto{p(80, lb.TCP), p(443, lb.TCP)}, "10.0.0.1:443", 0, []lb.PortProto{p(443, lb.TCP)}, ""},
		{[]lb.PortProto{p(80, lb.TCP), p(443, lb.TCP)}, "10.0.0.1:8443", 443, []lb.PortProto{p(443, lb.TCP)}, ""},
		{[]lb.PortProto{p(80, lb.TCP), p(443, lb.TCP)}, "10.0.0.1:8443", 8443, nil,
			"the service has no port 8443 (its ports: 80/tcp 443/tcp)"},
		{[]lb.PortProto{p(80, lb.TCP), p(443, lb.TCP)}, "10.0.0.1:8080", 0, nil,
			"the service has several ports (80/tcp 443/tcp) and none is 8080: say which one backend 10.0.0.1:8080 serves with --service-port PORT"},
	}
	for _, tt := range tests {
		got, err := servedPorts(tt.ports, netip.MustParseAddrPort(tt.addr), tt.explicit)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if !reflect.DeepEqual(got, tt.want) || msg != tt.err {
			t.Errorf("servedPorts(%v, %s, %d) = %v, %q; want %v, %q", tt.ports, tt.addr, tt.explicit, got, msg, tt.want, tt.err)
		}
	}
}

type setterFunc func([]lb.Service) error

func (f setterFunc) Set(s []lb.Service) error { return f(s) }

// Apply keeps why the balancer left a service out (shown by Services)
// until a later Apply takes it; an error that is not a SetError changes
// nothing.
func TestApplyRejections(t *testing.T) {
	m := New(Options{})
	why := errors.New("VIP port 10.1.255.1:80/tcp is taken by blue/web")
	m.Apply(setterFunc(func([]lb.Service) error {
		return &lb.SetError{Rejected: []lb.Rejected{{Network: "blue", Name: "dup", Err: why}}}
	}), nil)
	if got := m.rejectedWhy("blue", "dup"); got != why.Error() {
		t.Errorf("after a rejection: rejectedWhy = %q, want %q", got, why)
	}
	m.Apply(setterFunc(func([]lb.Service) error { return errors.New("lb: closed") }), nil)
	if got := m.rejectedWhy("blue", "dup"); got != why.Error() {
		t.Errorf("after another error: rejectedWhy = %q, want %q kept", got, why)
	}
	var got []lb.Service
	list := []lb.Service{{Network: "blue", Name: "dup"}}
	m.Apply(setterFunc(func(s []lb.Service) error { got = s; return nil }), list)
	if !reflect.DeepEqual(got, list) {
		t.Errorf("Set got %v, want %v", got, list)
	}
	if got := m.rejectedWhy("blue", "dup"); got != "" {
		t.Errorf("after a clean Set: rejectedWhy = %q, want none", got)
	}
}
