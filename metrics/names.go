package metrics

import "github.com/prometheus/client_golang/prometheus"

// The names, help texts and labels of overlayd's metrics: a stable
// interface that dashboards and alerts are written against. The collector
// reads their values at scrape time from the counters the router, gossip,
// balancer, DNS server and doors keep anyway: nothing is updated per
// packet for them.
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
	descLocalPackets = prometheus.NewDesc("overlayd_local_packets_total",
		"Packets the router switched on this node without the underlay: endpoint to endpoint, endpoint to attachment and back.", nil, nil)
	descLocalBytes = prometheus.NewDesc("overlayd_local_bytes_total",
		"Bytes of the packets the router switched on this node without the underlay.", nil, nil)
	descEPPackets = prometheus.NewDesc("overlayd_endpoint_packets_total",
		"Packets of each endpoint attached on this node; outbound is what the router read from its device, inbound what it wrote to it.", []string{"endpoint", "network", "direction"}, nil)
	descEPBytes = prometheus.NewDesc("overlayd_endpoint_bytes_total",
		"Bytes of each endpoint's packets, by direction.", []string{"endpoint", "network", "direction"}, nil)
	descEPDrops = prometheus.NewDesc("overlayd_endpoint_drops_total",
		"Packets of each endpoint lost on the way, by direction (the reasons are in overlayd_drops_total).", []string{"endpoint", "network", "direction"}, nil)
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

// descs are every metric's description, in the order Describe sends them.
var descs = []*prometheus.Desc{
	descInfo, descPackets, descBytes, descNetPackets, descNetBytes, descLocalPackets, descLocalBytes, descEPPackets, descEPBytes, descEPDrops, descDrops, descARPAsked, descARPAnswers, descICMP, descNeighbors, descFDB, descRoutes,
	descMembers, descGossipMsgs, descGossipBytes, descGossipEntries, descGossipDrops, descGossipLogSuppressed, descRoutesRefused,
	descFlows, descFlowsMax, descFlowsNew, descEvictions, descExpired, descLBRejects, descSelections,
	descDNSQueries, descDNSResponses, descDNSDropped, descDNSCache, descDNSCacheEntries, descDNSUpstreamErrors, descDNSTCPClosed,
	descDoorConns, descDoorFailed, descDoorActive, descDoorBytes, descDoorDropped,
}
