package node

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/endpoint"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/ipam"
	"github.com/overlayd/overlayd/router"
	"github.com/overlayd/overlayd/stack"
)

// WithNetnsHelper gives the node a helper that makes endpoint devices in
// namespaces this process may not enter (a rootless container's: see
// stack.NetnsHelper); it is tried when making one directly is refused
// for lack of privilege.
func WithNetnsHelper(h endpoint.TUNMaker) Option {
	return func(n *Node) { n.netnsHelper = endpoint.TUNs(h) }
}

// newEndpoints builds the endpoint manager over the control plane and the
// router; nil without gossip (endpoints need networks and IPAM) or in tap
// mode (an L2 attachment carries no endpoints).
func (n *Node) newEndpoints() error {
	c := n.ctl
	if c == nil || n.mode == config.ModeTAP {
		return nil
	}
	o := endpoint.Options{
		Self:   c.g.Name(),
		Gossip: endpointGossip{c.g},
		IPAM:   c.ipam,
		Router: endpointRouter{n.rt},
		Networks: func() []endpoint.Net {
			js := c.joinedList()
			out := make([]endpoint.Net, len(js))
			for i, j := range js {
				out[i] = endpoint.Net{Name: j.Name, VNI: j.VNI, CIDRs: j.CIDRs, Addrs: j.Addrs}
			}
			return out
		},
		VTEP:    c.vtep,
		State:   c.state,
		Helper:  n.netnsHelper,
		MTU:     n.dev.MTU(),
		DNS:     n.dns != nil,
		Domain:  n.cfg.DNS.Domain,
		Changed: n.rec.poke,
		Log:     n.log,
	}
	m, err := endpoint.New(o)
	if err != nil {
		return err
	}
	n.eps = m
	return nil
}

// endpointRouter adapts the router to the endpoint manager.
type endpointRouter struct{ rt *router.Router }

func (r endpointRouter) AddEndpoint(id string, vni uint32, addrs []netip.Addr, dev stack.Device) error {
	return r.rt.AddEndpoint(router.EndpointConfig{ID: id, VNI: vni, Addrs: addrs, Device: dev})
}

func (r endpointRouter) RemoveEndpoint(id string) error { return r.rt.RemoveEndpoint(id) }

// endpointGossip is gossip for the endpoint manager: a delete of an
// entry that is gone already is done.
type endpointGossip struct{ g *gossip.Gossip }

func (g endpointGossip) Put(table, network, key string, v []byte) error {
	return g.g.Put(table, network, key, v)
}

func (g endpointGossip) Delete(table, network, key string) error {
	if err := g.g.Delete(table, network, key); err != nil && !errors.Is(err, gossip.ErrNotFound) {
		return err
	}
	return nil
}

var errNoEndpoints = fault.Unavailable("this node cannot attach endpoints: that needs gossip (--gossip) and an L3 attachment (mode tun or netstack)")

// Endpoints lists the endpoints attached on this node, with their
// counters; it implements api.EndpointBackend.
func (n *Node) Endpoints(context.Context) ([]api.EndpointInfo, error) {
	if n.eps == nil {
		return nil, errNoEndpoints
	}
	return n.endpointInfos(), nil
}

// endpointInfos is Endpoints (none without the manager).
func (n *Node) endpointInfos() []api.EndpointInfo {
	if n.eps == nil {
		return nil
	}
	var out []api.EndpointInfo
	stats := n.rt.Stats().Endpoints
	for _, in := range n.eps.List() {
		out = append(out, n.apiEndpoint(in, stats))
	}
	return out
}

// Endpoint describes one endpoint; it implements api.EndpointBackend.
func (n *Node) Endpoint(_ context.Context, name string) (api.EndpointInfo, error) {
	if n.eps == nil {
		return api.EndpointInfo{}, errNoEndpoints
	}
	in, err := n.eps.Get(name)
	if err != nil {
		return api.EndpointInfo{}, err
	}
	return n.apiEndpoint(in, n.rt.Stats().Endpoints), nil
}

// Attach attaches a network namespace as an endpoint; it implements
// api.EndpointBackend.
func (n *Node) Attach(ctx context.Context, req api.Attach) (api.EndpointInfo, error) {
	if n.eps == nil {
		return api.EndpointInfo{}, errNoEndpoints
	}
	r := endpoint.Request{Name: req.Name, Network: req.Network, Netns: req.Netns, IfName: req.IfName, DefaultRoute: req.DefaultRoute}
	ips := req.IPs
	if req.IP != "" {
		ips = append([]string{req.IP}, ips...)
	}
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return api.EndpointInfo{}, fault.Invalid("endpoint %q: --ip %q is not an IP address", req.Name, s)
		}
		r.IPs = append(r.IPs, a)
	}
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	in, err := n.eps.Attach(ctx, r)
	if err != nil {
		return api.EndpointInfo{}, err
	}
	return n.apiEndpoint(in, n.rt.Stats().Endpoints), nil
}

// Detach removes an endpoint; it implements api.EndpointBackend.
func (n *Node) Detach(_ context.Context, name string) error {
	if n.eps == nil {
		return errNoEndpoints
	}
	return n.eps.Detach(name)
}

// Reserve leases an address ahead of an endpoint; it implements
// api.EndpointBackend.
func (n *Node) Reserve(ctx context.Context, network, addr string, family int) (api.Reservation, error) {
	if n.eps == nil {
		return api.Reservation{}, errNoEndpoints
	}
	var f ipam.Family
	switch family {
	case 0:
	case 4:
		f = ipam.IPv4
	case 6:
		f = ipam.IPv6
	default:
		return api.Reservation{}, fault.Invalid("family %d: want 4 or 6", family)
	}
	var a netip.Addr
	if addr != "" {
		var err error
		if a, err = netip.ParseAddr(addr); err != nil {
			return api.Reservation{}, fault.Invalid("%q is not an IP address", addr)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	r, err := n.eps.Reserve(ctx, network, a, f)
	if err != nil {
		return api.Reservation{}, err
	}
	return api.Reservation{Network: r.Network, Addr: r.Addr.String(), Gateway: r.DNS.String(), DNS: r.DNS.String()}, nil
}

// Unreserve releases a reservation; it implements api.EndpointBackend.
func (n *Node) Unreserve(_ context.Context, network, addr string) error {
	if n.eps == nil {
		return errNoEndpoints
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return fault.Invalid("%q is not an IP address", addr)
	}
	return n.eps.Unreserve(network, a)
}

// endpointAddrs resolves a backend's host part that is not an address: the
// name of an endpoint on this node (on network, when given).
func (n *Node) endpointAddrs(network, name string) ([]netip.Addr, error) {
	if n.eps == nil {
		return nil, fault.Invalid("%q is not an IP address", name)
	}
	in, err := n.eps.Get(name)
	if err != nil {
		return nil, fault.NotFound("%q is neither an IP address nor an endpoint on this node", name)
	}
	if network != "" && in.Network != network {
		return nil, fault.Invalid("endpoint %q is on network %s, not %s", name, in.Network, network)
	}
	out := make([]netip.Addr, len(in.Addrs))
	for i, p := range in.Addrs {
		out[i] = p.Addr()
	}
	return out, nil
}

// refuseLeaveWithEndpoints refuses to leave a network that endpoints of
// this node are on.
func (n *Node) refuseLeaveWithEndpoints(network string) error {
	if n.eps == nil {
		return nil
	}
	if on := n.eps.OnNetwork(network); len(on) > 0 {
		return fault.Conflict("network %s has endpoints on this node (%s); detach them first", network, strings.Join(on, ", "))
	}
	return nil
}

// apiEndpoint converts in, with its counters from stats.
func (n *Node) apiEndpoint(in endpoint.Info, stats map[string]router.EndpointStats) api.EndpointInfo {
	out := api.EndpointInfo{
		Name: in.Name, Network: in.Network, VNI: in.VNI, Netns: in.Netns, IfName: in.IfName,
		Addr: in.Addr.String(), Addrs: strs(in.Addrs), MTU: in.MTU, Search: in.Search, FQDN: in.FQDN,
		Device: "tun", Created: in.Created.Format(time.RFC3339), Attached: in.Attached, Error: in.Error,
		Routes: []string{},
	}
	for _, r := range in.Routes {
		out.Routes = append(out.Routes, r.String())
	}
	if in.DNS.IsValid() {
		out.DNS = in.DNS.String()
		out.DNSAddrs = strs(in.DNSAddrs)
	}
	if in.Helper {
		out.Device = "tun-helper"
	}
	if s, ok := stats[in.Name]; ok && in.Attached {
		out.Traffic = api.EndpointStats{
			OutPackets: s.Outbound.Packets, OutBytes: s.Outbound.Bytes, OutDrops: s.OutboundDrops,
			InPackets: s.Inbound.Packets, InBytes: s.Inbound.Bytes, InDrops: s.InboundDrops,
		}
	}
	return out
}
