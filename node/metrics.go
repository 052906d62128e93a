package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/overlayd/overlayd/gossip"
)

// Metrics are read at scrape time from the counters the router, gossip,
// balancer and doors keep anyway: nothing is updated per packet for them.
var (
	descInfo = prometheus.NewDesc("overlayd_build_info",
		"The node's name, version and mode of attachment (always 1).", []string{"node", "version", "mode"}, nil)
	descPackets = prometheus.NewDesc("overlayd_packets_total",
		"Packets moved by the router; outbound is attachment to underlay, inbound underlay to attachment.", []string{"direction"}, nil)
	descBytes = prometheus.NewDesc("overlayd_bytes_total",
		"Bytes of inner packets moved by the router, by direction.", []string{"direction"}, nil)
	descNetPackets = prometheus.NewDesc("overlayd_network_packets_total",
		"Packets moved by the router per overlay network and direction.", []string{"network", "vni", "direction"}, nil)
	descNetBytes = prometheus.NewDesc("overlayd_network_bytes_total",
		"Bytes of inner packets moved by the router per overlay network and direction.", []string{"network", "vni", "direction"}, nil)
	descDrops = prometheus.NewDesc("overlayd_drops_total",
		"Packets or frames the router dropped, by reason.", []string{"reason"}, nil)
	descARPAsked = prometheus.NewDesc("overlayd_arp_requests_sent_total",
		"ARP requests the router sent to resolve a neighbour.", nil, nil)
	descARPAnswers = prometheus.NewDesc("overlayd_arp_replies_sent_total",
		"ARP replies the router sent for addresses it hosts.", nil, nil)
	descICMP = prometheus.NewDesc("overlayd_icmp_errors_sent_total",
		"ICMP errors (fragmentation needed, unreachable) sent to the attachment.", nil, nil)
	descNeighbors = prometheus.NewDesc("overlayd_neighbors",
		"Learned IP to MAC entries.", nil, nil)
	descFDB = prometheus.NewDesc("overlayd_fdb_entries",
		"Learned MAC to VTEP entries (tap mode).", nil, nil)
	descRoutes = prometheus.NewDesc("overlayd_routes",
		"Routes in force.", nil, nil)

	descMembers = prometheus.NewDesc("overlayd_gossip_members",
		"Cluster members as this node sees them, by state.", []string{"state"}, nil)
	descGossipMsgs = prometheus.NewDesc("overlayd_gossip_messages_total",
		"Gossip messages (deltas, bulk syncs, states), by direction (in, out).", []string{"direction"}, nil)
	descGossipBytes = prometheus.NewDesc("overlayd_gossip_bytes_total",
		"Bytes of gossip messages, by direction (in, out).", []string{"direction"}, nil)
	descGossipEntries = prometheus.NewDesc("overlayd_gossip_entries_applied_total",
		"Replicated entries received that changed the local table.", nil, nil)
	descGossipLogSuppressed = prometheus.NewDesc("overlayd_gossip_log_lines_suppressed_total",
		"memberlist log lines left out by the rate limit (burst 50, then 5 a second).", nil, nil)
	descRoutesRefused = prometheus.NewDesc("overlayd_routes_refused_total",
		"Gossiped route entries not used, by reason (lease_elsewhere, no_lease, vtep_mismatch, ...).", []string{"reason"}, nil)
	descDNSTCPClosed = prometheus.NewDesc("overlayd_dns_tcp_connections_closed_total",
		"DNS TCP connections closed at accept, by reason (refused: the source may not ask; limit: the listener had its maximum open).", []string{"reason"}, nil)
	descGossipDrops = prometheus.NewDesc("overlayd_gossip_drops_total",
		"Gossip messages or entries dropped, by reason.", []string{"reason"}, nil)

	descFlows = prometheus.NewDesc("overlayd_conntrack_entries",
		"Flows tracked by the load balancer now.", nil, nil)
	descFlowsMax = prometheus.NewDesc("overlayd_conntrack_max_entries",
		"The connection-tracking table's limit.", nil, nil)
	descFlowsNew = prometheus.NewDesc("overlayd_conntrack_new_total",
		"Flows created by the load balancer.", nil, nil)
	descEvictions = prometheus.NewDesc("overlayd_conntrack_evictions_total",
		"Live flows evicted to make room.", nil, nil)
	descExpired = prometheus.NewDesc("overlayd_conntrack_expired_total",
		"Flows removed after their idle timeout.", nil, nil)
	descLBRejects = prometheus.NewDesc("overlayd_lb_rejected_total",
		"New flows to a VIP the load balancer did not take, by reason.", []string{"reason"}, nil)
	descSelections = prometheus.NewDesc("overlayd_lb_backend_selections_total",
		"New flows that picked a backend, by service and backend (IP:PORT).", []string{"network", "service", "backend"}, nil)

	descDNSQueries = prometheus.NewDesc("overlayd_dns_queries_total",
		"DNS queries parsed by the node's DNS server, by type.", []string{"type"}, nil)
	descDNSResponses = prometheus.NewDesc("overlayd_dns_responses_total",
		"DNS replies sent, by rcode.", []string{"rcode"}, nil)
	descDNSDropped = prometheus.NewDesc("overlayd_dns_dropped_total",
		"DNS packets given no reply (short, or responses).", nil, nil)
	descDNSCache = prometheus.NewDesc("overlayd_dns_forwarder_cache_total",
		"Forwarded DNS queries by cache result: hit or miss.", []string{"result"}, nil)
	descDNSCacheEntries = prometheus.NewDesc("overlayd_dns_forwarder_cache_entries",
		"Answers held in the forwarder's cache.", nil, nil)
	descDNSUpstreamErrors = prometheus.NewDesc("overlayd_dns_forwarder_upstream_errors_total",
		"Failed upstream attempts (timeout, network error, SERVFAIL/REFUSED/NOTIMP).", nil, nil)

	descDoorConns = prometheus.NewDesc("overlayd_door_connections_total",
		"Client connections (UDP forward: sessions) at a front door, by result: accepted or refused (at the limit).", []string{"door", "listen", "result"}, nil)
	descDoorFailed = prometheus.NewDesc("overlayd_door_failures_total",
		"Accepted front-door connections that ended before reaching the overlay, by reason.", []string{"door", "listen", "reason"}, nil)
	descDoorActive = prometheus.NewDesc("overlayd_door_active_connections",
		"Open front-door connections.", []string{"door", "listen"}, nil)
	descDoorBytes = prometheus.NewDesc("overlayd_door_bytes_total",
		"Payload bytes relayed by a front door; out is client to overlay, in overlay to client.", []string{"door", "listen", "direction"}, nil)
	descDoorDropped = prometheus.NewDesc("overlayd_door_datagrams_dropped_total",
		"UDP datagrams a front door did not relay, by reason.", []string{"door", "listen", "reason"}, nil)
)

// collector is the node's prometheus.Collector.
type collector struct{ n *Node }

var _ prometheus.Collector = collector{}

// Describe sends every metric's description.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descInfo, descPackets, descBytes, descNetPackets, descNetBytes, descDrops, descARPAsked, descARPAnswers, descICMP, descNeighbors, descFDB, descRoutes,
		descMembers, descGossipMsgs, descGossipBytes, descGossipEntries, descGossipDrops, descGossipLogSuppressed, descRoutesRefused,
		descFlows, descFlowsMax, descFlowsNew, descEvictions, descExpired, descLBRejects, descSelections,
		descDNSQueries, descDNSResponses, descDNSDropped, descDNSCache, descDNSCacheEntries, descDNSUpstreamErrors, descDNSTCPClosed,
		descDoorConns, descDoorFailed, descDoorActive, descDoorBytes, descDoorDropped,
	} {
		ch <- d
	}
}

// Collect reads the node's counters.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descInfo, 1, n.cfg.Name, Version, n.mode)

	rs := n.rt.Stats()
	counter(descPackets, rs.Outbound.Packets, "outbound")
	counter(descPackets, rs.Inbound.Packets, "inbound")
	counter(descBytes, rs.Outbound.Bytes, "outbound")
	counter(descBytes, rs.Inbound.Bytes, "inbound")
	names := make(map[uint32]string)
	for _, nw := range n.networks() {
		names[nw.VNI] = nw.Name
		if nw.Name == "" {
			names[nw.VNI] = staticNetworkName
		}
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
	for r, v := range rs.Drops {
		counter(descDrops, v, r)
	}
	counter(descARPAsked, rs.ARPAsked)
	counter(descARPAnswers, rs.ARPAnswers)
	counter(descICMP, rs.ICMPSent)
	gauge(descNeighbors, float64(rs.Neighbors))
	gauge(descFDB, float64(rs.FDB))
	gauge(descRoutes, float64(len(n.rt.Routes())))

	if g := n.gossip(); g != nil {
		states := map[string]int{}
		for _, s := range []gossip.MemberState{gossip.StateAlive, gossip.StateSuspect, gossip.StateDead, gossip.StateLeft} {
			states[s.String()] = 0
		}
		for _, m := range g.Members() {
			states[m.State.String()]++
		}
		for s, v := range states {
			gauge(descMembers, float64(v), s)
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
		if n.ctl != nil {
			for r, v := range n.ctl.refusedRoutes() {
				counter(descRoutesRefused, v, r)
			}
		}
	}

	if b := n.lb; b != nil {
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
		for _, s := range ls.Services {
			for _, be := range s.Backends {
				counter(descSelections, be.Selections, s.Network, s.Name, be.ID)
			}
		}
	}

	if n.dns != nil {
		ds := n.dns.srv.Stats()
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

	n.fd.mu.Lock()
	doors := n.fd.doors
	n.fd.mu.Unlock()
	for _, sd := range doors {
		s := sd.door.Stats()
		listen := sd.listen
		if a := sd.door.Addr(); a != nil {
			listen = a.String()
		}
		counter(descDoorConns, s.Accepted, sd.kind, listen, "accepted")
		counter(descDoorConns, s.Refused, sd.kind, listen, "refused")
		gauge(descDoorActive, float64(s.Active), sd.kind, listen)
		counter(descDoorBytes, s.OutBytes, sd.kind, listen, "out")
		counter(descDoorBytes, s.InBytes, sd.kind, listen, "in")
		for r, v := range s.Failed {
			counter(descDoorFailed, v, sd.kind, listen, r.String())
		}
		for r, v := range s.Dropped {
			counter(descDoorDropped, v, sd.kind, listen, r.String())
		}
	}
}

// MetricsRegistry returns a registry holding the node's collector, for
// programs that embed a node and serve metrics their own way. Each call
// returns a new registry.
func (n *Node) MetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{n})
	return reg
}

// metricsServer serves /metrics on a host address.
type metricsServer struct {
	ln       net.Listener
	srv      *http.Server
	wg       sync.WaitGroup
	once     sync.Once
	serveErr error // set by the Serve goroutine before wg.Done
	err      error // close's result: serveErr and Shutdown's error
}

// startMetrics opens the Prometheus endpoint when the configuration names
// an address.
func (n *Node) startMetrics() error {
	if n.cfg.Metrics == "" {
		return nil
	}
	ln, err := net.Listen("tcp", n.cfg.Metrics)
	if err != nil {
		return fmt.Errorf("node: metrics on %s: %w", n.cfg.Metrics, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.MetricsRegistry(), promhttp.HandlerOpts{
		ErrorLog:            zap.NewStdLog(n.log.Named("metrics")),
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	m := &metricsServer{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(n.log.Named("metrics")),
	}}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.serveErr = fmt.Errorf("node: metrics on %s: %w", m.addr(), err)
			n.log.Warn("metrics server stopped", zap.Error(err))
		}
	}()
	n.fd.mu.Lock()
	n.fd.metrics = m
	n.fd.mu.Unlock()
	n.log.Info("metrics endpoint open", zap.String("url", "http://"+ln.Addr().String()+"/metrics"))
	return nil
}

func (m *metricsServer) addr() string { return m.ln.Addr().String() }

// close stops the server, waiting up to a second for scrapes in progress
// and then dropping them, and waits for it. Its error says why Serve
// stopped early or that Shutdown had to drop connections.
func (m *metricsServer) close() error {
	m.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var shutdownErr error
		if err := m.srv.Shutdown(ctx); err != nil {
			shutdownErr = fmt.Errorf("node: metrics on %s: shutdown: %w; the connections still open were closed", m.addr(), err)
			m.srv.Close()
		}
		m.wg.Wait()
		m.err = errors.Join(m.serveErr, shutdownErr)
	})
	return m.err
}
