package api

import (
	"context"
	"net/http"
)

// Applier is the optional capability of a Backend that reconciles
// itself to a declarative description (a node with gossip), found by type
// assertion.
type Applier interface {
	// Apply creates the missing networks and services of req, joins its
	// networks and sets this node's backends of its services; what req
	// does not mention is left alone. It returns what it changed, one
	// line each. Applying the same req twice changes nothing the second
	// time.
	Apply(ctx context.Context, req Apply) (ApplyResult, error)
}

// Apply is the body of POST /v1/apply. Line fields are where an entry
// came from in the user's file; errors about an entry name it.
type Apply struct {
	Networks []ApplyNetwork `json:"networks"`
	Services []ApplyService `json:"services"`
	// Endpoints are attached after the networks and before the services
	// (whose backends may name them); one attached already with the
	// same namespace and network is left as it is.
	Endpoints []ApplyEndpoint `json:"endpoints,omitempty"`
}

// ApplyEndpoint is an endpoint to attach (Attach) when missing.
type ApplyEndpoint struct {
	Attach
	Line int `json:"line,omitempty"`
}

// ApplyNetwork is a network to create (when CIDRs are given and the
// cluster does not know it) and join.
type ApplyNetwork struct {
	Name  string   `json:"name"`
	CIDR  string   `json:"cidr,omitempty"`  // one prefix, as a client without IPv6 sends it
	CIDRs []string `json:"cidrs,omitempty"` // after CIDR: at most two in all, one per family
	VNI   *uint32  `json:"vni,omitempty"`
	Line  int      `json:"line,omitempty"`
}

// Prefixes are the CIDRs given: CIDR, then CIDRs.
func (n ApplyNetwork) Prefixes() []string {
	if n.CIDR == "" {
		return n.CIDRs
	}
	return append([]string{n.CIDR}, n.CIDRs...)
}

// ApplyService is a service to create when missing (with Ports; without,
// it must exist). Backends, when not
// null (even empty), are exactly this node's backends of the service;
// null leaves them alone.
type ApplyService struct {
	Name     string         `json:"name"`
	Network  string         `json:"network,omitempty"`
	VIP      string         `json:"vip,omitempty"`
	Ports    []string       `json:"ports"`
	Backends []ApplyBackend `json:"backends"`
	Line     int            `json:"line,omitempty"`
}

// ApplyBackend is one backend on this node: Addr is IP:PORT, or :PORT for
// the node's own address on the service's network.
type ApplyBackend struct {
	Addr   string `json:"addr"`
	Weight uint32 `json:"weight"`
	Check  string `json:"check,omitempty"` // tcp, udp or none
	// ServicePort is the service port the backend serves; 0: by the
	// rule of AddBackend.ServicePort.
	ServicePort uint16 `json:"service_port,omitempty"`
	Line        int    `json:"line,omitempty"`
}

// ApplyResult says what an Apply changed, one line each ("network blue:
// created"); empty when nothing needed to change.
type ApplyResult struct {
	Changes []string `json:"changes"`
}

// applyRoutes adds POST /v1/apply to mux.
func applyRoutes(mux *http.ServeMux, b Backend) {
	apply := capability[Applier](b, "this daemon cannot apply networks and services (start it with --gossip)")
	mux.HandleFunc("POST /v1/apply", apply(func(w http.ResponseWriter, r *http.Request, ab Applier) {
		var req Apply
		if err := decodeBody(w, r, &req); err != nil {
			answer(w, nil, err)
			return
		}
		res, err := ab.Apply(r.Context(), req)
		answer(w, res, err)
	}))
}

// Apply reconciles the node to req and returns what it changed.
func (c *Client) Apply(ctx context.Context, req Apply) (ApplyResult, error) {
	var res ApplyResult
	return res, c.do(ctx, http.MethodPost, "/v1/apply", req, &res)
}
