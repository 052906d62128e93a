package api

import (
	"context"
	"net/http"
	"net/url"
)

// ServiceBackend is the optional capability of a Backend that balances
// service VIPs (a node with gossip), found by type assertion. Its errors
// are answered with the status StatusOf gives them. network may be empty
// where the node can tell it from the service name.
type ServiceBackend interface {
	Services(ctx context.Context) ([]ServiceInfo, error)
	Service(ctx context.Context, network, name string) (ServiceInfo, error)
	CreateService(ctx context.Context, req CreateService) (ServiceInfo, error)
	RemoveService(ctx context.Context, network, name string) error
	AddBackend(ctx context.Context, req AddBackend) (ServiceInfo, error)
	// RemoveBackend deletes a backend; drain keeps it with weight 0 (no
	// new flows, existing ones finish).
	RemoveBackend(ctx context.Context, req BackendRef, drain bool) (ServiceInfo, error)
	Conntrack(ctx context.Context) ([]Flow, error)
}

// ServiceInfo is a service as this node knows it.
type ServiceInfo struct {
	Name    string `json:"name"`
	Network string `json:"network"`
	VIP     string `json:"vip"` // the first of VIPs (the IPv4 one of a dual-stack service)
	// VIPs are its VIPs, one per family of its network, IPv4 first.
	VIPs     []string      `json:"vips,omitempty"`
	Ports    []string      `json:"ports"`   // "80/tcp"
	Creator  string        `json:"creator"` // node that created it (only it may remove it)
	Backends []BackendInfo `json:"backends"`
	Flows    int           `json:"flows"` // flows of this node's clients tracked now
	// Error, when set, says why this node does not balance the service
	// (such as a VIP port another service claimed first).
	Error string `json:"error,omitempty"`
}

// BackendInfo is one backend of a service.
type BackendInfo struct {
	Addr    string `json:"addr"` // overlay ip:port
	Weight  uint32 `json:"weight"`
	Healthy bool   `json:"healthy"`
	Check   string `json:"check"` // tcp, udp or none
	Owner   string `json:"owner"` // node that added it (only it may change it)
	// State is active, draining (weight 0), unhealthy (its check fails),
	// unreachable (its address is not routed to a live node) or no-port
	// (it serves none of the service's ports). Only active backends take
	// new flows.
	State string `json:"state"`
	// Ports are the service ports it serves ("80/tcp"): a flow to
	// VIP:PORT only reaches backends that serve PORT.
	Ports []string `json:"ports"`
	// InTable: this node's Maglev tables hold it with a positive weight
	// (active, and not on this node's own address).
	InTable bool `json:"in_table"`
	// Flows are this node's clients' flows pinned to it now; Selections
	// the new flows that picked it on this node since it joined the table.
	Flows      int    `json:"flows"`
	Selections uint64 `json:"selections"`
}

// CreateService is the body of POST /v1/services.
type CreateService struct {
	Name    string   `json:"name"`
	Network string   `json:"network,omitempty"` // default: the node's only joined network
	Ports   []string `json:"ports"`             // "80/tcp", "53/udp"
	VIP     string   `json:"vip,omitempty"`     // default: one from the network's VIP range
	// VIPs are more VIPs, at most one per family of the network in all;
	// a family without one gets one from its VIP range.
	VIPs []string `json:"vips,omitempty"`
}

// AddBackend is the body of POST /v1/services/{name}/backends. Adding a
// backend that exists (same owner) updates its weight and check.
type AddBackend struct {
	Service string `json:"service"`
	Network string `json:"network,omitempty"`
	Addr    string `json:"addr"`            // overlay ip:port
	Weight  uint32 `json:"weight"`          // relative share; 0 means draining
	Check   string `json:"check,omitempty"` // tcp, udp or none (default)
	// ServicePort is the service port the backend serves. 0: the port
	// with the backend's own number or, for a service whose ports all
	// have one number, that one (mapped).
	ServicePort uint16 `json:"service_port,omitempty"`
}

// BackendRef names one backend of a service.
type BackendRef struct {
	Service string `json:"service"`
	Network string `json:"network,omitempty"`
	Addr    string `json:"addr"`
}

// Flow is one connection-tracking entry of this node's balancer.
type Flow struct {
	Network string  `json:"network"`
	Service string  `json:"service"`
	Proto   string  `json:"proto"`
	Client  string  `json:"client"`
	VIP     string  `json:"vip"`
	Backend string  `json:"backend"`
	State   string  `json:"state"`
	Age     float64 `json:"age_seconds"`
	Idle    float64 `json:"idle_seconds"`
}

// ServicesSummary is the short services line of a node's status.
type ServicesSummary struct {
	Services  int    `json:"services"`
	Rejected  int    `json:"rejected"`  // services this node does not balance (see 'service ls')
	Backends  int    `json:"backends"`  // backends of the services, as 'service ls' counts them
	Active    int    `json:"active"`    // of which active
	InTables  int    `json:"in_tables"` // in this node's Maglev tables (active, not on this node)
	Flows     int    `json:"flows"`
	MaxFlows  int    `json:"max_flows"`
	NewFlows  uint64 `json:"new_flows"`
	Resets    uint64 `json:"resets"`
	NoBackend uint64 `json:"no_backend"`
	Refused   uint64 `json:"refused"`
}

// serviceRoutes adds the service endpoints to mux.
func serviceRoutes(mux *http.ServeMux, b Backend) {
	svc := capability[ServiceBackend](b, "this daemon does not balance services (start it with --gossip)")
	mux.HandleFunc("GET /v1/services", svc(func(w http.ResponseWriter, r *http.Request, sb ServiceBackend) {
		ss, err := sb.Services(r.Context())
		answer(w, ss, err)
	}))
	mux.HandleFunc("POST /v1/services", svc(func(w http.ResponseWriter, r *http.Request, sb ServiceBackend) {
		var req CreateService
		if err := decodeBody(w, r, &req); err != nil {
			answer(w, nil, err)
			return
		}
		s, err := sb.CreateService(r.Context(), req)
		answer(w, s, err)
	}))
	mux.HandleFunc("GET /v1/services/{name}", svc(func(w http.ResponseWriter, r *http.Request, sb ServiceBackend) {
		s, err := sb.Service(r.Context(), r.URL.Query().Get("network"), r.PathValue("name"))
		answer(w, s, err)
	}))
	mux.HandleFunc("DELETE /v1/services/{name}", svc(func(w http.ResponseWriter, r *http.Request, sb ServiceBackend) {
		err := sb.RemoveService(r.Context(), r.URL.Query().Get("network"), r.PathValue("name"))
		answer(w, struct{}{}, err)
	}))
	mux.HandleFunc("POST /v1/services/{name}/backends", svc(func(w http.ResponseWriter, r *http.Request, sb ServiceBackend) {
		var req AddBackend
		if err := decodeBody(w, r, &req); err != nil {
			answer(w, nil, err)
			return
		}
		req.Service = r.PathValue("name")
		s, err := sb.AddBackend(r.Context(), req)
		answer(w, s, err)
	}))
	backendOp := func(drain bool) http.HandlerFunc {
		return svc(func(w http.ResponseWriter, r *http.Request, sb ServiceBackend) {
			ref := BackendRef{Service: r.PathValue("name"), Network: r.URL.Query().Get("network"), Addr: r.PathValue("addr")}
			s, err := sb.RemoveBackend(r.Context(), ref, drain)
			answer(w, s, err)
		})
	}
	mux.HandleFunc("DELETE /v1/services/{name}/backends/{addr}", backendOp(false))
	mux.HandleFunc("POST /v1/services/{name}/backends/{addr}/drain", backendOp(true))
	mux.HandleFunc("GET /v1/conntrack", svc(func(w http.ResponseWriter, r *http.Request, sb ServiceBackend) {
		fs, err := sb.Conntrack(r.Context())
		answer(w, fs, err)
	}))
}

func networkQuery(network string) string {
	if network == "" {
		return ""
	}
	return "?network=" + url.QueryEscape(network)
}

// Services lists the services of the node's networks.
func (c *Client) Services(ctx context.Context) ([]ServiceInfo, error) {
	var ss []ServiceInfo
	return ss, c.get(ctx, "/v1/services", &ss)
}

// Service describes one service; network may be empty.
func (c *Client) Service(ctx context.Context, network, name string) (ServiceInfo, error) {
	var s ServiceInfo
	return s, c.get(ctx, "/v1/services/"+url.PathEscape(name)+networkQuery(network), &s)
}

// CreateService defines a service cluster-wide.
func (c *Client) CreateService(ctx context.Context, req CreateService) (ServiceInfo, error) {
	var s ServiceInfo
	return s, c.do(ctx, http.MethodPost, "/v1/services", req, &s)
}

// RemoveService deletes a service (on the node that created it).
func (c *Client) RemoveService(ctx context.Context, network, name string) error {
	var v struct{}
	return c.do(ctx, http.MethodDelete, "/v1/services/"+url.PathEscape(name)+networkQuery(network), nil, &v)
}

// AddBackend adds (or updates) a backend owned by this node.
func (c *Client) AddBackend(ctx context.Context, req AddBackend) (ServiceInfo, error) {
	var s ServiceInfo
	return s, c.do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(req.Service)+"/backends", req, &s)
}

// RemoveBackend deletes a backend this node added, or with drain sets its
// weight to 0.
func (c *Client) RemoveBackend(ctx context.Context, ref BackendRef, drain bool) (ServiceInfo, error) {
	var s ServiceInfo
	p := "/v1/services/" + url.PathEscape(ref.Service) + "/backends/" + url.PathEscape(ref.Addr)
	method := http.MethodDelete
	if drain {
		p, method = p+"/drain", http.MethodPost
	}
	return s, c.do(ctx, method, p+networkQuery(ref.Network), nil, &s)
}

// Conntrack lists the flows of the node's balancer.
func (c *Client) Conntrack(ctx context.Context) ([]Flow, error) {
	var fs []Flow
	return fs, c.do(ctx, http.MethodGet, "/v1/conntrack", nil, &fs)
}
