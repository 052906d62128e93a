package node

// Service VIPs: package service keeps the services and backends (CRUD,
// ownership rules, health checks, services.json); node's reconciler
// builds the balancer's services with service.Balance on each pass and
// hands them over with Manager.Apply when they changed; node answers the
// API by converting its types to the service package's.

import (
	"context"
	"net"
	"net/netip"
	"reflect"
	"sync/atomic"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/service"
)

// servicesFile is the services' state file (package service keeps it).
const servicesFile = service.StateFile

// services is the node's service state: the manager, and the balancer's
// services last handed over.
type services struct {
	mgr *service.Manager
	lb  service.Setter

	last    []lb.Service // the reconciler's alone
	applied bool         // last is set

	syncs  atomic.Uint64 // rebuilds of the balancer's services (for tests)
	checks atomic.Uint64 // rounds of health checks (for tests)
}

// startServices starts checking this node's backends; close stops the
// manager before the control plane.
func (n *Node) startServices() {
	c := n.ctl
	s := &services{lb: n.lb}
	o := service.Options{
		Gossip:  c.g,
		IPAM:    c.ipam,
		Figures: n.lb,
		Changed: n.rec.poke,
		Checked: func() { s.checks.Add(1) },
		Log:     c.log,
		Networks: func() []service.Network {
			js := c.joinedList()
			out := make([]service.Network, len(js))
			for i, j := range js {
				out[i] = service.Network{Name: j.Name, VNI: j.VNI, CIDRs: j.CIDRs, Addrs: j.Addrs}
			}
			return out
		},
		Routes: func() []service.Route {
			rs := n.rt.Routes()
			out := make([]service.Route, len(rs))
			for i, r := range rs {
				out[i] = service.Route{Prefix: r.Prefix, VNI: r.VNI, Owner: r.Owner}
			}
			return out
		},
	}
	for _, a := range n.cfg.Addrs() {
		o.Own = append(o.Own, a.Addr())
	}
	if n.eps != nil {
		o.Local = n.eps.Addrs
	}
	if c.state != nil {
		o.State = c.state
	}
	if n.ns != nil { // probes go through the netstack; else the host's sockets
		o.Dial = n.Dial
	}
	s.mgr = service.New(o)
	s.mgr.Start()
	n.svc.Store(s)
}

// sync hands the balancer the services of every joined network built
// from snap, as one set, when they differ from the last set handed over
// (a rebuild costs a Maglev table per service port; a service the
// balancer refuses is left out alone, see Manager.Apply). It runs after
// the route swap of the same pass: a backend counts only while the new
// routes reach it.
func (s *services) sync(snap catalog.Snapshot) {
	all := service.Balance(snap, s.mgr.View())
	if s.applied && reflect.DeepEqual(all, s.last) {
		return
	}
	s.syncs.Add(1)
	s.mgr.Apply(s.lb, all)
	s.last, s.applied = all, true
}

// svcState returns the running service state, or the API error of a node
// without one.
func (n *Node) svcState() (*services, error) {
	if n.ctl == nil {
		return nil, errNoGossip
	}
	s := n.svc.Load()
	if s == nil {
		return nil, fault.Unavailable("the node is not started yet")
	}
	return s, nil
}

var _ api.ServiceBackend = (*Node)(nil)

// serviceInfo converts a service's description for the API.
func serviceInfo(si service.Info, err error) (api.ServiceInfo, error) {
	if err != nil {
		return api.ServiceInfo{}, err
	}
	out := api.ServiceInfo{Name: si.Name, Network: si.Network, VIP: si.VIP, VIPs: si.VIPs, Ports: si.Ports, Creator: si.Creator,
		Backends: make([]api.BackendInfo, len(si.Backends)), Flows: si.Flows, Error: si.Error}
	for i, b := range si.Backends {
		out.Backends[i] = api.BackendInfo(b)
	}
	return out, nil
}

// Services lists the services of the joined networks; it implements
// api.ServiceBackend.
func (n *Node) Services(context.Context) ([]api.ServiceInfo, error) {
	s, err := n.svcState()
	if err != nil {
		return nil, err
	}
	out := []api.ServiceInfo{}
	for _, si := range s.mgr.Services() {
		ai, _ := serviceInfo(si, nil)
		out = append(out, ai)
	}
	return out, nil
}

// Service describes one service; it implements api.ServiceBackend.
func (n *Node) Service(_ context.Context, network, name string) (api.ServiceInfo, error) {
	s, err := n.svcState()
	if err != nil {
		return api.ServiceInfo{}, err
	}
	return serviceInfo(s.mgr.Service(network, name))
}

// CreateService defines a service cluster-wide, owned by this node; it
// implements api.ServiceBackend.
func (n *Node) CreateService(ctx context.Context, req api.CreateService) (api.ServiceInfo, error) {
	s, err := n.svcState()
	if err != nil {
		return api.ServiceInfo{}, err
	}
	return serviceInfo(s.mgr.Create(ctx, service.Create(req)))
}

// RemoveService deletes a service this node created, with the backends
// this node added to it, and releases its VIP; it implements
// api.ServiceBackend.
func (n *Node) RemoveService(_ context.Context, network, name string) error {
	s, err := n.svcState()
	if err != nil {
		return err
	}
	return s.mgr.Remove(network, name)
}

// AddBackend adds a backend owned by this node to a service, or updates
// the weight and check of one it added; it implements api.ServiceBackend.
func (n *Node) AddBackend(_ context.Context, req api.AddBackend) (api.ServiceInfo, error) {
	s, err := n.svcState()
	if err != nil {
		return api.ServiceInfo{}, err
	}
	addrs, err := n.backendAddrs(req.Network, req.Addr)
	if err != nil {
		return api.ServiceInfo{}, err
	}
	var si service.Info
	for _, a := range addrs {
		req.Addr = a
		if si, err = s.mgr.AddBackend(service.AddBackend(req)); err != nil {
			return api.ServiceInfo{}, err
		}
	}
	return serviceInfo(si, nil)
}

// backendAddrs resolves a backend "NAME:PORT" whose NAME is an endpoint on
// this node to its addresses (one backend per family: each serves the
// service's VIP of its family); an address, or anything else, is left to
// the service manager's checks.
func (n *Node) backendAddrs(network, addr string) ([]string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return []string{addr}, nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return []string{addr}, nil
	}
	as, err := n.endpointAddrs(network, host)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = net.JoinHostPort(a.String(), port)
	}
	return out, nil
}

// RemoveBackend deletes a backend this node added or, with drain, sets
// its weight to 0; it implements api.ServiceBackend.
func (n *Node) RemoveBackend(_ context.Context, ref api.BackendRef, drain bool) (api.ServiceInfo, error) {
	s, err := n.svcState()
	if err != nil {
		return api.ServiceInfo{}, err
	}
	return serviceInfo(s.mgr.RemoveBackend(service.BackendRef(ref), drain))
}

// Conntrack lists the balancer's flows; it implements api.ServiceBackend.
func (n *Node) Conntrack(context.Context) ([]api.Flow, error) {
	if n.lb == nil {
		return nil, errNoGossip
	}
	out := []api.Flow{}
	for _, f := range n.lb.Flows() {
		out = append(out, api.Flow{
			Network: f.Network, Service: f.Service, Proto: f.Proto.String(),
			Client: f.Client.String(), VIP: f.VIP.String(), Backend: f.Backend.String(), State: f.State.String(),
			Age: f.Age.Seconds(), Idle: f.Idle.Seconds(),
		})
	}
	return out, nil
}

// servicesSummary is the services line of the node's status; nil without
// services. It counts the services and backends as 'service ls' does.
func (n *Node) servicesSummary() *api.ServicesSummary {
	if n.lb == nil {
		return nil
	}
	st := n.lb.Stats()
	infos, _ := n.Services(context.Background())
	if len(infos) == 0 && len(st.Services) == 0 && st.NewFlows == 0 {
		return nil
	}
	sum := &api.ServicesSummary{Services: len(infos), Flows: st.Flows, MaxFlows: st.MaxFlows, NewFlows: st.NewFlows,
		Resets: st.Resets, NoBackend: st.NoBackend, Refused: st.Refused}
	for _, si := range infos {
		if si.Error != "" {
			sum.Rejected++
		}
		sum.Backends += len(si.Backends)
		for _, b := range si.Backends {
			if b.State == service.StateActive {
				sum.Active++
			}
			if b.InTable {
				sum.InTables++
			}
		}
	}
	return sum
}
