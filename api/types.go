package api

import "time"

// Status describes a running node.
type Status struct {
	Name     string    `json:"name"`
	Version  string    `json:"version"`
	Mode     string    `json:"mode"`   // tun, netstack or tap
	Device   string    `json:"device"` // interface name, or "netstack"
	Started  time.Time `json:"started"`
	VTEP     string    `json:"vtep"` // underlay ip:port
	MAC      string    `json:"mac"`  // the node's MAC inside the tunnel
	MTU      int       `json:"mtu"`  // of the attachment
	PathMTU  int       `json:"path_mtu"`
	Networks []Network `json:"networks"`
	Routes   []Route   `json:"routes"`
	Underlay Underlay  `json:"underlay"`
	Traffic  Traffic   `json:"traffic"`

	// VTEPAdvertised is the VTEP the cluster is told to send to (the
	// listen address with this host's IP when that is unspecified);
	// empty without gossip.
	VTEPAdvertised string `json:"vtep_advertised,omitempty"`

	// Doors are the front doors on the host, in start order; Metrics is
	// the Prometheus endpoint's host address (empty: off).
	Doors   []Door `json:"doors,omitempty"`
	Metrics string `json:"metrics,omitempty"`

	// Services sums up the service VIPs balanced here; nil when none.
	Services *ServicesSummary `json:"services,omitempty"`

	// Endpoints are the network namespaces attached on this node, with
	// their counters; nil when none.
	Endpoints []EndpointInfo `json:"endpoints,omitempty"`

	// DNS is the DNS server's addresses and counters; nil when off.
	DNS *DNSStatus `json:"dns,omitempty"`

	// RoutesRefused counts the gossiped route entries not used, by reason
	// (each entry version once): lease_elsewhere, no_lease, vtep_mismatch,
	// outside_network, malformed, key_not_owner. Nil when none.
	RoutesRefused map[string]uint64 `json:"routes_refused,omitempty"`

	// Gossip is the membership as this node sees it; nil without gossip.
	Gossip *GossipStatus `json:"gossip,omitempty"`
}

// GossipStatus counts the members by state, self included, and says why
// the node has not joined, if so.
type GossipStatus struct {
	Alive   int `json:"alive"`
	Suspect int `json:"suspect"`
	Dead    int `json:"dead"`
	Left    int `json:"left"`
	// JoinError is why the last attempt to join the seeds failed
	// ("join 192.0.2.1:7946: refused: ..."); empty once joined.
	JoinError string `json:"join_error,omitempty"`
	// Refused counts the would-be members refused as not overlayd nodes
	// (forged or garbage gossip), by reason; nil when none.
	Refused map[string]uint64 `json:"refused,omitempty"`
}

// Network is an overlay network the node is on.
type Network struct {
	Name string `json:"name,omitempty"` // empty for the static network (--addr)
	VNI  uint32 `json:"vni"`
	Addr string `json:"addr"` // the node's address, with prefix (its IPv4 one on a dual-stack network)
	// Addrs are the node's addresses, one per family, IPv4 first (Addr
	// is the first).
	Addrs []string `json:"addrs,omitempty"`
}

// NetworkInfo is a cluster-wide network as this node knows it. Of a
// dual-stack network, CIDR, DNS and Addr are the IPv4 ones and CIDRs,
// DNSAddrs and Addrs list both families, IPv4 first.
type NetworkInfo struct {
	Name     string   `json:"name"`
	CIDR     string   `json:"cidr"`
	CIDRs    []string `json:"cidrs"`
	VNI      uint32   `json:"vni"`
	Creator  string   `json:"creator"`         // node that created it
	DNS      string   `json:"dns"`             // the network's DNS address (never handed out)
	DNSAddrs []string `json:"dns_addrs"`       // per CIDR
	Joined   bool     `json:"joined"`          // this node is attached to it
	Addr     string   `json:"addr,omitempty"`  // this node's address, with prefix, when joined
	Addrs    []string `json:"addrs,omitempty"` // per CIDR, when joined
	Members  int      `json:"members"`         // nodes attached to it (live ones announcing a route)
}

// CreateNetwork is the body of POST /v1/networks: CIDR, CIDRs or both
// give the network's prefixes, at most one IPv4 and one IPv6.
type CreateNetwork struct {
	Name  string   `json:"name"`
	CIDR  string   `json:"cidr,omitempty"`
	CIDRs []string `json:"cidrs,omitempty"`
	// VNI, when nil, is picked by the node (one no known network uses).
	VNI *uint32 `json:"vni,omitempty"`
}

// Prefixes are the CIDRs asked for: CIDR, then CIDRs.
func (c CreateNetwork) Prefixes() []string {
	if c.CIDR == "" {
		return c.CIDRs
	}
	return append([]string{c.CIDR}, c.CIDRs...)
}

// Peer is a member of the gossip cluster.
type Peer struct {
	Name    string `json:"name"`
	Addr    string `json:"addr"`  // gossip address
	State   string `json:"state"` // alive, suspect, dead, left
	VTEP    string `json:"vtep"`
	Version string `json:"version"`
	Self    bool   `json:"self,omitempty"`
}

// Routes is the route table in force and, per joined network, the digest
// of its replicated state (equal on nodes that have converged).
type Routes struct {
	Routes  []Route           `json:"routes"`
	Local   []Network         `json:"local"`             // this node's own addresses
	Digests map[string]string `json:"digests,omitempty"` // network name → digest
}

// Route is an overlay prefix and the VTEP that hosts it.
type Route struct {
	Prefix string `json:"prefix"`
	VTEP   string `json:"vtep"`
	VNI    uint32 `json:"vni"`
	Owner  string `json:"owner"` // "static" or a node name
}

// Underlay describes the underlay socket.
type Underlay struct {
	GSO         bool `json:"gso"`
	GRO         bool `json:"gro"`
	SourcePorts int  `json:"source_ports"`
}

// Counters count packets and bytes.
type Counters struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Traffic is what the router has moved and dropped.
type Traffic struct {
	Outbound Counters `json:"outbound"` // attachment → underlay
	Inbound  Counters `json:"inbound"`  // underlay → attachment
	// Local is what the router switched on this node, never touching the
	// underlay: endpoint to endpoint, endpoint to attachment and back.
	Local      Counters          `json:"local"`
	Drops      map[string]uint64 `json:"drops"` // by reason
	ARPAsked   uint64            `json:"arp_asked"`
	ARPAnswers uint64            `json:"arp_answers"`
	ICMPSent   uint64            `json:"icmp_sent"`
	Neighbors  int               `json:"neighbors"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}
