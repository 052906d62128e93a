package metrics

import (
	"net"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/overlayd/overlayd/dns"
	"github.com/overlayd/overlayd/door"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/router"
)

// Sources are what the collector reads at each scrape. A nil field is a
// part the node does not have (no gossip in static mode, no DNS when it
// is off): its metrics are left out. The methods and funcs are called
// from the scraping goroutine, concurrently with the parts' own work and
// with other scrapes.
type Sources struct {
	Info          Info                     // overlayd_build_info
	Router        Router                   // packets, bytes, drops, ARP, ICMP, neighbours, routes
	NetworkNames  func() map[uint32]string // VNI → network name for the per-network counters; a VNI it lacks is "vni-N"
	Gossip        Gossip                   // members and messages
	RoutesRefused func() map[string]uint64 // gossiped route entries not used, by reason
	Balancer      Balancer                 // connection tracking and backend selections
	DNS           DNS                      // queries, replies, the forwarder's cache
	Doors         func() []Door            // the front doors open now
}

// Info labels overlayd_build_info.
type Info struct {
	Node    string // the node's name
	Version string // overlayd's version
	Mode    string // the attachment in use: tun, netstack or tap
}

// Router is the forwarding core as the collector reads it.
type Router interface {
	Stats() router.Stats
	Routes() []router.Route
}

// Gossip is the membership as the collector reads it.
type Gossip interface {
	Members() []gossip.Member
	Stats() gossip.Stats
}

// Balancer is the load balancer as the collector reads it.
type Balancer interface {
	Stats() lb.Stats
}

// DNS is the DNS server as the collector reads it.
type DNS interface {
	Stats() dns.Stats
}

// Door is one front door: its kind and configured address label its
// metrics, and its counters are read through Door.
type Door struct {
	Kind   string // socks5, http_proxy, forward
	Listen string // the configured address; the label is the door's Addr once it has one
	Door   DoorCounters
}

// DoorCounters is a front door as the collector reads it (a door.Door).
type DoorCounters interface {
	Addr() net.Addr
	Stats() door.Stats
}

var (
	_ Router       = (*router.Router)(nil)
	_ Gossip       = (*gossip.Gossip)(nil)
	_ Balancer     = (*lb.Balancer)(nil)
	_ DNS          = (*dns.Server)(nil)
	_ DoorCounters = door.Door(nil)
)

// NewCollector returns the collector of overlayd's metrics over s.
func NewCollector(s Sources) prometheus.Collector { return collector{s} }

type collector struct{ s Sources }

// Describe sends every metric's description, whichever sources are set.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}

// Collect reads the sources' counters.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descInfo, 1, s.Info.Node, s.Info.Version, s.Info.Mode)

	if s.Router != nil {
		rs := s.Router.Stats()
		counter(descPackets, rs.Outbound.Packets, "outbound")
		counter(descPackets, rs.Inbound.Packets, "inbound")
		counter(descBytes, rs.Outbound.Bytes, "outbound")
		counter(descBytes, rs.Inbound.Bytes, "inbound")
		var names map[uint32]string
		if s.NetworkNames != nil {
			names = s.NetworkNames()
		}
		for vni, c := range rs.PerNetwork {
			name, v := names[vni], strconv.FormatUint(uint64(vni), 10)
			if name == "" {
				name = "vni-" + v // a network just left: its counters stay
			}
			counter(descNetPackets, c.Outbound.Packets, name, v, "outbound")
			counter(descNetPackets, c.Inbound.Packets, name, v, "inbound")
			counter(descNetBytes, c.Outbound.Bytes, name, v, "outbound")
			counter(descNetBytes, c.Inbound.Bytes, name, v, "inbound")
		}
		counter(descLocalPackets, rs.Local.Packets)
		counter(descLocalBytes, rs.Local.Bytes)
		for id, e := range rs.Endpoints {
			name := names[e.VNI]
			if name == "" {
				name = "vni-" + strconv.FormatUint(uint64(e.VNI), 10)
			}
			counter(descEPPackets, e.Outbound.Packets, id, name, "outbound")
			counter(descEPPackets, e.Inbound.Packets, id, name, "inbound")
			counter(descEPBytes, e.Outbound.Bytes, id, name, "outbound")
			counter(descEPBytes, e.Inbound.Bytes, id, name, "inbound")
			counter(descEPDrops, e.OutboundDrops, id, name, "outbound")
			counter(descEPDrops, e.InboundDrops, id, name, "inbound")
		}
		for r, v := range rs.Drops {
			counter(descDrops, v, r)
		}
		counter(descARPAsked, rs.ARPAsked)
		counter(descARPAnswers, rs.ARPAnswers)
		counter(descICMP, rs.ICMPSent)
		gauge(descNeighbors, float64(rs.Neighbors))
		gauge(descFDB, float64(rs.FDB))
		gauge(descRoutes, float64(len(s.Router.Routes())))
	}

	if g := s.Gossip; g != nil {
		states := map[string]int{}
		for _, st := range []gossip.MemberState{gossip.StateAlive, gossip.StateSuspect, gossip.StateDead, gossip.StateLeft} {
			states[st.String()] = 0
		}
		for _, m := range g.Members() {
			states[m.State.String()]++
		}
		for st, v := range states {
			gauge(descMembers, float64(v), st)
		}
		gs := g.Stats()
		counter(descGossipMsgs, gs.MsgsIn, "in")
		counter(descGossipMsgs, gs.MsgsOut, "out")
		counter(descGossipBytes, gs.BytesIn, "in")
		counter(descGossipBytes, gs.BytesOut, "out")
		counter(descGossipEntries, gs.EntriesIn)
		for r, v := range gs.Drops {
			counter(descGossipDrops, v, r)
		}
		counter(descGossipLogSuppressed, gs.LogSuppressed)
	}
	if s.RoutesRefused != nil {
		for r, v := range s.RoutesRefused() {
			counter(descRoutesRefused, v, r)
		}
	}

	if b := s.Balancer; b != nil {
		ls := b.Stats()
		gauge(descFlows, float64(ls.Flows))
		gauge(descFlowsMax, float64(ls.MaxFlows))
		counter(descFlowsNew, ls.NewFlows)
		counter(descEvictions, ls.Evictions)
		counter(descExpired, ls.Expired)
		for r, v := range map[string]uint64{
			"table_full": ls.Refused, "backend_removed": ls.Resets, "no_service": ls.NoService,
			"no_backend": ls.NoBackend, "conflict": ls.Conflicts, "invalid": ls.Invalid,
			"malformed": ls.Malformed, "fragment": ls.Fragments,
		} {
			counter(descLBRejects, v, r)
		}
		for _, sv := range ls.Services {
			for _, be := range sv.Backends {
				counter(descSelections, be.Selections, sv.Network, sv.Name, be.ID)
			}
		}
	}

	if s.DNS != nil {
		ds := s.DNS.Stats()
		for t, v := range ds.Queries {
			counter(descDNSQueries, v, t)
		}
		for r, v := range ds.Responses {
			counter(descDNSResponses, v, r)
		}
		counter(descDNSDropped, ds.Dropped)
		counter(descDNSCache, ds.Forwarder.CacheHits, "hit")
		counter(descDNSCache, ds.Forwarder.CacheMisses, "miss")
		gauge(descDNSCacheEntries, float64(ds.Forwarder.CacheEntries))
		counter(descDNSUpstreamErrors, ds.Forwarder.UpstreamErrors)
		counter(descDNSTCPClosed, ds.TCPRefused, "refused")
		counter(descDNSTCPClosed, ds.TCPRejected, "limit")
	}

	if s.Doors == nil {
		return
	}
	for _, d := range s.Doors() {
		st := d.Door.Stats()
		listen := d.Listen
		if a := d.Door.Addr(); a != nil {
			listen = a.String()
		}
		counter(descDoorConns, st.Accepted, d.Kind, listen, "accepted")
		counter(descDoorConns, st.Refused, d.Kind, listen, "refused")
		gauge(descDoorActive, float64(st.Active), d.Kind, listen)
		counter(descDoorBytes, st.OutBytes, d.Kind, listen, "out")
		counter(descDoorBytes, st.InBytes, d.Kind, listen, "in")
		for r, v := range st.Failed {
			counter(descDoorFailed, v, d.Kind, listen, r.String())
		}
		for r, v := range st.Dropped {
			counter(descDoorDropped, v, d.Kind, listen, r.String())
		}
	}
}
