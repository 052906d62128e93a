package api

import (
	"context"
	"net/http"
	"net/url"
)

// EndpointBackend is the optional capability of a Backend that attaches
// network namespaces to its networks as endpoints (a node with gossip),
// found by type assertion. Its errors are answered with the status
// StatusOf gives them.
type EndpointBackend interface {
	Endpoints(ctx context.Context) ([]EndpointInfo, error)
	Endpoint(ctx context.Context, name string) (EndpointInfo, error)
	// Attach gives the namespace an interface and an address on the
	// network and announces it. Attaching a name that exists with the
	// same namespace, network and (if asked) address returns it as it is;
	// anything else of that name is refused.
	Attach(ctx context.Context, req Attach) (EndpointInfo, error)
	// Detach removes the endpoint: its device, its route, its lease.
	// Detaching a name that is not attached is an ErrNotFound.
	Detach(ctx context.Context, name string) error
	// Reserve leases an address on network for an endpoint not attached
	// yet (a container runtime's IPAM step: Docker asks for the address
	// before the namespace exists). addr empty: any free one of family
	// (4 or 6; 0: the network's first family). An Attach that asks for a
	// reserved address takes the reservation over.
	Reserve(ctx context.Context, network, addr string, family int) (Reservation, error)
	// Unreserve releases a reservation; one that is not held (or already
	// taken over by an endpoint) is not an error.
	Unreserve(ctx context.Context, network, addr string) error
}

// Attach is the body of POST /v1/endpoints.
type Attach struct {
	// Name names the endpoint on this node (a DNS label): NAME.NET.overlay
	// resolves to it.
	Name string `json:"name"`
	// Network is the overlay network; default the node's only joined one.
	Network string `json:"network,omitempty"`
	// Netns is the network namespace's path (/var/run/netns/NAME,
	// /proc/PID/ns/net).
	Netns string `json:"netns"`
	// IP is the address asked for; default one from the network's IPAM.
	IP string `json:"ip,omitempty"`
	// IPs are more addresses asked for: at most one per family in all (a
	// dual-stack network's family without one gets one from IPAM).
	IPs []string `json:"ips,omitempty"`
	// IfName is the interface's name in the namespace; default eth0.
	IfName string `json:"ifname,omitempty"`
	// DefaultRoute also points the namespace's default route at it.
	DefaultRoute bool `json:"default_route,omitempty"`
}

// EndpointInfo is an endpoint attached on this node.
type EndpointInfo struct {
	Name    string `json:"name"`
	Network string `json:"network"`
	VNI     uint32 `json:"vni"`
	Netns   string `json:"netns"`
	IfName  string `json:"ifname"`
	Addr    string `json:"addr"` // with the network's prefix length (the first of Addrs)
	// Addrs are its addresses, one per family of the network, IPv4 first.
	Addrs []string `json:"addrs,omitempty"`
	MTU   int      `json:"mtu"`
	// Routes are the prefixes pointed at the interface in the namespace.
	Routes []string `json:"routes"`
	// DNS is the address to put in the namespace's resolv.conf; Search
	// its search domain (NET.overlay).
	DNS string `json:"dns"`
	// DNSAddrs are the network's DNS addresses, one per family (DNS is
	// the first).
	DNSAddrs []string `json:"dns_addrs,omitempty"`
	Search   string   `json:"search"`
	FQDN     string   `json:"fqdn"`
	// Device says how the interface is made: tun (by the daemon) or
	// tun-helper (through the helper process, for a rootless namespace).
	Device   string        `json:"device"`
	Created  string        `json:"created"` // RFC 3339
	Traffic  EndpointStats `json:"traffic"`
	Attached bool          `json:"attached"` // false while re-adopting after a restart
	Error    string        `json:"error,omitempty"`
}

// EndpointStats count an endpoint's packets: Out is what the router took
// from its device (to the underlay or switched on this node), In what it
// wrote to the device; the drops are those packets lost on the way (the
// reasons are in the node's drop counters).
type EndpointStats struct {
	OutPackets uint64 `json:"out_packets"`
	OutBytes   uint64 `json:"out_bytes"`
	OutDrops   uint64 `json:"out_drops"`
	InPackets  uint64 `json:"in_packets"`
	InBytes    uint64 `json:"in_bytes"`
	InDrops    uint64 `json:"in_drops"`
}

// Reservation is an address leased ahead of an endpoint.
type Reservation struct {
	Network string `json:"network"`
	Addr    string `json:"addr"` // with the network's prefix length
	Gateway string `json:"gateway"`
	DNS     string `json:"dns"`
}

// reserveRequest is the body of POST /v1/reservations.
type reserveRequest struct {
	Network string `json:"network,omitempty"`
	Addr    string `json:"addr,omitempty"`
	Family  int    `json:"family,omitempty"` // 4 or 6 for any address of that family; 0: addr's, or the network's first
}

// endpointRoutes adds the endpoint endpoints to mux.
func endpointRoutes(mux *http.ServeMux, b Backend) {
	ep := capability[EndpointBackend](b, "this daemon does not attach endpoints (start it with --gossip)")
	mux.HandleFunc("GET /v1/endpoints", ep(func(w http.ResponseWriter, r *http.Request, eb EndpointBackend) {
		es, err := eb.Endpoints(r.Context())
		answer(w, es, err)
	}))
	mux.HandleFunc("POST /v1/endpoints", ep(func(w http.ResponseWriter, r *http.Request, eb EndpointBackend) {
		var req Attach
		if err := decodeBody(w, r, &req); err != nil {
			answer(w, nil, err)
			return
		}
		e, err := eb.Attach(r.Context(), req)
		answer(w, e, err)
	}))
	mux.HandleFunc("GET /v1/endpoints/{name}", ep(func(w http.ResponseWriter, r *http.Request, eb EndpointBackend) {
		e, err := eb.Endpoint(r.Context(), r.PathValue("name"))
		answer(w, e, err)
	}))
	mux.HandleFunc("DELETE /v1/endpoints/{name}", ep(func(w http.ResponseWriter, r *http.Request, eb EndpointBackend) {
		err := eb.Detach(r.Context(), r.PathValue("name"))
		answer(w, struct{}{}, err)
	}))
	mux.HandleFunc("POST /v1/reservations", ep(func(w http.ResponseWriter, r *http.Request, eb EndpointBackend) {
		var req reserveRequest
		if err := decodeBody(w, r, &req); err != nil {
			answer(w, nil, err)
			return
		}
		res, err := eb.Reserve(r.Context(), req.Network, req.Addr, req.Family)
		answer(w, res, err)
	}))
	mux.HandleFunc("DELETE /v1/reservations/{network}/{addr}", ep(func(w http.ResponseWriter, r *http.Request, eb EndpointBackend) {
		err := eb.Unreserve(r.Context(), r.PathValue("network"), r.PathValue("addr"))
		answer(w, struct{}{}, err)
	}))
}

// Endpoints lists the endpoints attached on the node.
func (c *Client) Endpoints(ctx context.Context) ([]EndpointInfo, error) {
	var es []EndpointInfo
	return es, c.get(ctx, "/v1/endpoints", &es)
}

// Endpoint describes one endpoint.
func (c *Client) Endpoint(ctx context.Context, name string) (EndpointInfo, error) {
	var e EndpointInfo
	return e, c.get(ctx, "/v1/endpoints/"+url.PathEscape(name), &e)
}

// Attach attaches a network namespace as an endpoint.
func (c *Client) Attach(ctx context.Context, req Attach) (EndpointInfo, error) {
	var e EndpointInfo
	return e, c.do(ctx, http.MethodPost, "/v1/endpoints", req, &e)
}

// Detach removes an endpoint.
func (c *Client) Detach(ctx context.Context, name string) error {
	var v struct{}
	return c.do(ctx, http.MethodDelete, "/v1/endpoints/"+url.PathEscape(name), nil, &v)
}

// Reserve leases an address ahead of an endpoint; addr may be empty (any
// of family: 4, 6, or 0 for the network's first).
func (c *Client) Reserve(ctx context.Context, network, addr string, family int) (Reservation, error) {
	var res Reservation
	return res, c.do(ctx, http.MethodPost, "/v1/reservations", reserveRequest{Network: network, Addr: addr, Family: family}, &res)
}

// Unreserve releases a reservation.
func (c *Client) Unreserve(ctx context.Context, network, addr string) error {
	var v struct{}
	return c.do(ctx, http.MethodDelete, "/v1/reservations/"+url.PathEscape(network)+"/"+url.PathEscape(addr), nil, &v)
}
