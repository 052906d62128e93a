package node

// Service VIPs: package service keeps the services and backends (CRUD,
// ownership rules, health checks, services.json); node watches their
// tables, rebuilds the balancer's services on every change signal with
// service.Balance and hands them over with Manager.Apply, and answers the
// API by converting its types to the service package's.

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/router"
	"github.com/overlayd/overlayd/service"
)

// servicesFile is the services' state file (package service keeps it).
const servicesFile = service.StateFile

// services is the node's service state: the manager, and the watches of
// the service tables that drive the balancer's rebuilds.
type services struct {
	c   *control
	mgr *service.Manager

	kick chan struct{}

	mu      sync.Mutex        // guards watches
	watches map[string]func() // network → stop of its catalog.Watch of the service tables

	fpMu sync.Mutex  // guards fp
	fp   fingerprint // at the last routesChanged

	syncs  atomic.Uint64 // rebuilds of the balancer's services (for tests)
	checks atomic.Uint64 // rounds of health checks (for tests)
}

// startServices starts watching the service tables of the joined networks
// and checking this node's backends. It stops with the control plane.
func (c *control) startServices() {
	n := c.n
	s := &services{c: c, kick: make(chan struct{}, 1), watches: map[string]func(){}}
	o := service.Options{
		Gossip:  c.g,
		IPAM:    c.ipam,
		Figures: n.lb,
		Changed: s.poke,
		Checked: func() { s.checks.Add(1) },
		Log:     c.log,
		Networks: func() []service.Network {
			js := c.joinedList()
			out := make([]service.Network, len(js))
			for i, j := range js {
				out[i] = service.Network{Name: j.Name, VNI: j.VNI, CIDR: j.CIDR, Addr: j.Addr}
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
	if a := n.cfg.Addr; a.IsValid() {
		o.Own = append(o.Own, a.Addr())
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
	c.wg.Add(1)
	go func() { defer c.wg.Done(); defer s.mgr.Close(); s.loop() }()
}

func (s *services) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// loop rebuilds the balancer's services on every change signal, and only
// then: a change of the service tables of a joined network (their
// watches), a write through the API or a health change, and a new route
// table (routesChanged: a joined or left network, a route or member that
// came or went). Signals coalesce: one rebuild takes every change that
// arrived while the previous one ran.
func (s *services) loop() {
	defer s.unwatchAll()
	for {
		s.rewatch()
		s.sync()
		select {
		case <-s.c.stop:
			return
		case <-s.kick:
		}
	}
}

// sync hands the balancer the services of every joined network, as one
// snapshot (a service it refuses is left out alone; see Manager.Apply).
func (s *services) sync() {
	s.syncs.Add(1)
	v := s.mgr.View()
	names := make([]string, len(v.Networks))
	for i, nw := range v.Networks {
		names[i] = nw.Name
	}
	s.mgr.Apply(s.c.n.lb, service.Balance(catalog.Read(s.c.g, names), v))
}

// routesChanged is called after every swap of the router's route table
// (under syncMu); the balancer follows it when what it depends on
// changed: the routes (a backend is usable only while its address is
// routed to a live node), the live members and the joined networks.
func (n *Node) routesChanged() {
	s := n.svc.Load()
	if s == nil {
		return
	}
	fp := fingerprint{set: true, routes: n.rt.Routes(), joined: s.c.joinedList()}
	for _, m := range s.c.g.Members() {
		if m.State == gossip.StateAlive || m.State == gossip.StateSuspect {
			fp.live = append(fp.live, m.Name)
		}
	}
	slices.Sort(fp.live)
	s.fpMu.Lock()
	same := s.fp.equal(fp)
	s.fp = fp
	s.fpMu.Unlock()
	if !same {
		s.poke()
	}
}

// fingerprint is what the balancer's services depend on besides the
// service tables.
type fingerprint struct {
	set    bool
	routes []router.Route
	joined []joinedNet
	live   []string
}

func (a fingerprint) equal(b fingerprint) bool {
	return a.set && b.set && slices.Equal(a.routes, b.routes) && slices.Equal(a.joined, b.joined) && slices.Equal(a.live, b.live)
}

// rewatch watches the tables of every joined network, and stops watching
// the networks left.
func (s *services) rewatch() {
	joined := map[string]bool{}
	for _, j := range s.c.joinedList() {
		joined[j.Name] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for nw, stop := range s.watches {
		if !joined[nw] {
			stop()
			delete(s.watches, nw)
		}
	}
	for nw := range joined {
		if _, ok := s.watches[nw]; ok {
			continue
		}
		s.watches[nw] = catalog.Watch(s.c.g, nw, s.kick, catalog.ServiceTables()...)
	}
}

func (s *services) unwatchAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for nw, stop := range s.watches {
		stop()
		delete(s.watches, nw)
	}
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
	out := api.ServiceInfo{Name: si.Name, Network: si.Network, VIP: si.VIP, Ports: si.Ports, Creator: si.Creator,
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
	return serviceInfo(s.mgr.AddBackend(service.AddBackend(req)))
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
