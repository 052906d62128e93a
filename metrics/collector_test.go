package metrics

import (
	"net"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/overlayd/overlayd/dns"
	"github.com/overlayd/overlayd/door"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/router"
)

type fakeRouter struct {
	stats  router.Stats
	routes []router.Route
}

func (f fakeRouter) Stats() router.Stats    { return f.stats }
func (f fakeRouter) Routes() []router.Route { return f.routes }

type fakeGossip struct {
	members []gossip.Member
	stats   gossip.Stats
}

func (f fakeGossip) Members() []gossip.Member { return f.members }
func (f fakeGossip) Stats() gossip.Stats      { return f.stats }

type fakeBalancer lb.Stats

func (f fakeBalancer) Stats() lb.Stats { return lb.Stats(f) }

type fakeDNS dns.Stats

func (f fakeDNS) Stats() dns.Stats { return dns.Stats(f) }

type fakeDoor struct {
	addr  net.Addr
	stats door.Stats
}

func (f fakeDoor) Addr() net.Addr    { return f.addr }
func (f fakeDoor) Stats() door.Stats { return f.stats }

var (
	_ Router       = fakeRouter{}
	_ Gossip       = fakeGossip{}
	_ Balancer     = fakeBalancer{}
	_ DNS          = fakeDNS{}
	_ DoorCounters = fakeDoor{}
)

// allSources has every source set, with a little of everything.
func allSources() Sources {
	return Sources{
		Info: Info{Node: "n1", Version: "v1.2.3", Mode: "netstack"},
		Router: fakeRouter{
			stats: router.Stats{
				Outbound: router.Counters{Packets: 10, Bytes: 1000},
				Inbound:  router.Counters{Packets: 7, Bytes: 700},
				Drops:    map[string]uint64{"no_route": 2},
				ARPAsked: 1, ARPAnswers: 2, ICMPSent: 3, Neighbors: 4, FDB: 5,
				PerNetwork: map[uint32]router.NetworkCounters{
					42: {Outbound: router.Counters{Packets: 6, Bytes: 600}, Inbound: router.Counters{Packets: 5, Bytes: 500}},
					43: {Outbound: router.Counters{Packets: 4, Bytes: 400}},
				},
				Local: router.Counters{Packets: 8, Bytes: 800},
				Endpoints: map[string]router.EndpointStats{
					"c1": {VNI: 42, Outbound: router.Counters{Packets: 3, Bytes: 300}, Inbound: router.Counters{Packets: 2, Bytes: 200}, InboundDrops: 1},
				},
			},
			routes: make([]router.Route, 3),
		},
		NetworkNames: func() map[uint32]string { return map[uint32]string{42: "blue"} },
		Gossip: fakeGossip{
			members: []gossip.Member{{Name: "n1", State: gossip.StateAlive}, {Name: "n2", State: gossip.StateAlive}, {Name: "n3", State: gossip.StateDead}},
			stats:   gossip.Stats{MsgsIn: 11, MsgsOut: 12, BytesIn: 13, BytesOut: 14, EntriesIn: 15, Drops: map[string]uint64{"merge": 1}, LogSuppressed: 16},
		},
		RoutesRefused: func() map[string]uint64 { return map[string]uint64{"no_lease": 2} },
		Balancer: fakeBalancer{Flows: 3, MaxFlows: 100, NewFlows: 9, Evictions: 1, Expired: 2, Refused: 1,
			Services: []lb.ServiceStats{{Network: "blue", Name: "web", Backends: []lb.BackendStats{{ID: "10.0.0.2:80", Selections: 9}}}}},
		DNS: fakeDNS{Queries: map[string]uint64{"A": 3}, Responses: map[string]uint64{"NXDOMAIN": 3}, Dropped: 1, TCPRefused: 2,
			Forwarder: dns.ForwarderStats{CacheHits: 4, CacheMisses: 5, CacheEntries: 6, UpstreamErrors: 7}},
		Doors: func() []Door {
			return []Door{
				{Kind: "socks5", Listen: "127.0.0.1:0", Door: fakeDoor{
					addr:  &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1080},
					stats: door.Stats{Accepted: 3, Refused: 1, Active: 2, OutBytes: 30, InBytes: 40, Failed: map[door.Reason]uint64{door.ReasonTimeout: 1}},
				}},
				{Kind: "forward", Listen: "127.0.0.1:5353", Door: fakeDoor{ // not open yet: no Addr
					stats: door.Stats{Dropped: map[door.Reason]uint64{door.ReasonSend: 2}},
				}},
			}
		},
	}
}

func registry(s Sources) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(s))
	return reg
}

// Every source's counters come out under their names and labels; a
// network the names lack is vni-N, a door is labelled with its Addr once
// it has one; every member state is there, zero or not.
func TestCollect(t *testing.T) {
	reg := registry(allSources())
	want := `
# HELP overlayd_build_info The node's name, version and mode of attachment (always 1).
# TYPE overlayd_build_info gauge
overlayd_build_info{mode="netstack",node="n1",version="v1.2.3"} 1
# HELP overlayd_network_packets_total Packets moved by the router per overlay network and direction.
# TYPE overlayd_network_packets_total counter
overlayd_network_packets_total{direction="inbound",network="blue",vni="42"} 5
overlayd_network_packets_total{direction="inbound",network="vni-43",vni="43"} 0
overlayd_network_packets_total{direction="outbound",network="blue",vni="42"} 6
overlayd_network_packets_total{direction="outbound",network="vni-43",vni="43"} 4
# HELP overlayd_routes Routes in force.
# TYPE overlayd_routes gauge
overlayd_routes 3
# HELP overlayd_gossip_members Cluster members as this node sees them, by state.
# TYPE overlayd_gossip_members gauge
overlayd_gossip_members{state="alive"} 2
overlayd_gossip_members{state="dead"} 1
overlayd_gossip_members{state="left"} 0
overlayd_gossip_members{state="suspect"} 0
# HELP overlayd_routes_refused_total Gossiped route entries not used, by reason (lease_elsewhere, no_lease, vtep_mismatch, ...).
# TYPE overlayd_routes_refused_total counter
overlayd_routes_refused_total{reason="no_lease"} 2
# HELP overlayd_lb_backend_selections_total New flows that picked a backend, by service and backend (IP:PORT).
# TYPE overlayd_lb_backend_selections_total counter
overlayd_lb_backend_selections_total{backend="10.0.0.2:80",network="blue",service="web"} 9
# HELP overlayd_dns_tcp_connections_closed_total DNS TCP connections closed at accept, by reason (refused: the source may not ask; limit: the listener had its maximum open).
# TYPE overlayd_dns_tcp_connections_closed_total counter
overlayd_dns_tcp_connections_closed_total{reason="limit"} 0
overlayd_dns_tcp_connections_closed_total{reason="refused"} 2
# HELP overlayd_door_connections_total Client connections (UDP forward: sessions) at a front door, by result: accepted or refused (at the limit).
# TYPE overlayd_door_connections_total counter
overlayd_door_connections_total{door="forward",listen="127.0.0.1:5353",result="accepted"} 0
overlayd_door_connections_total{door="forward",listen="127.0.0.1:5353",result="refused"} 0
overlayd_door_connections_total{door="socks5",listen="127.0.0.1:1080",result="accepted"} 3
overlayd_door_connections_total{door="socks5",listen="127.0.0.1:1080",result="refused"} 1
# HELP overlayd_door_failures_total Accepted front-door connections that ended before reaching the overlay, by reason.
# TYPE overlayd_door_failures_total counter
overlayd_door_failures_total{door="socks5",listen="127.0.0.1:1080",reason="timeout"} 1
# HELP overlayd_door_datagrams_dropped_total UDP datagrams a front door did not relay, by reason.
# TYPE overlayd_door_datagrams_dropped_total counter
overlayd_door_datagrams_dropped_total{door="forward",listen="127.0.0.1:5353",reason="send"} 2
# HELP overlayd_local_packets_total Packets the router switched on this node without the underlay: endpoint to endpoint, endpoint to attachment and back.
# TYPE overlayd_local_packets_total counter
overlayd_local_packets_total 8
# HELP overlayd_endpoint_packets_total Packets of each endpoint attached on this node; outbound is what the router read from its device, inbound what it wrote to it.
# TYPE overlayd_endpoint_packets_total counter
overlayd_endpoint_packets_total{direction="inbound",endpoint="c1",network="blue"} 2
overlayd_endpoint_packets_total{direction="outbound",endpoint="c1",network="blue"} 3
# HELP overlayd_endpoint_drops_total Packets of each endpoint lost on the way, by direction (the reasons are in overlayd_drops_total).
# TYPE overlayd_endpoint_drops_total counter
overlayd_endpoint_drops_total{direction="inbound",endpoint="c1",network="blue"} 1
overlayd_endpoint_drops_total{direction="outbound",endpoint="c1",network="blue"} 0
`
	names := []string{
		"overlayd_build_info", "overlayd_network_packets_total", "overlayd_routes", "overlayd_gossip_members",
		"overlayd_routes_refused_total", "overlayd_lb_backend_selections_total", "overlayd_dns_tcp_connections_closed_total",
		"overlayd_door_connections_total", "overlayd_door_failures_total", "overlayd_door_datagrams_dropped_total",
		"overlayd_local_packets_total", "overlayd_endpoint_packets_total", "overlayd_endpoint_drops_total",
	}
	if err := promtest.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	problems, err := promtest.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// A source left out leaves its metrics out: with Info alone, only
// overlayd_build_info is gathered (and every description is still sent).
func TestCollectLeavesOut(t *testing.T) {
	reg := registry(Sources{Info: Info{Node: "n1", Version: "dev", Mode: "tun"}})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		got = append(got, mf.GetName())
	}
	if len(got) != 1 || got[0] != "overlayd_build_info" {
		t.Errorf("Gather with Info alone = %v, want [overlayd_build_info]", got)
	}
	ch := make(chan *prometheus.Desc, len(descs)+1)
	NewCollector(Sources{}).Describe(ch)
	if len(ch) != len(descs) {
		t.Errorf("Describe sent %d descriptions, want %d", len(ch), len(descs))
	}
}
