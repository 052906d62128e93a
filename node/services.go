package node

// Service VIPs: the gossip tables that describe them, the watch that turns
// them into the balancer's snapshot, the API that edits them and the
// active health checks of this node's backends.
//
// The tables and their values (catalog.TableServices, catalog.Service,
// catalog.TableBackends, catalog.Backend) are catalog's; see its doc.
//
// Which service port a backend serves (one rule, servedPorts): the port
// given as "port"; else the service port(s) with the backend's own port
// number (VIP:5201 → backends IP:5201); else, when every port of the
// service has one number (80/tcp, or 53/tcp and 53/udp), that port,
// mapped (VIP:80 → IP:8080). A flow to VIP:PORT only ever reaches a
// backend that serves PORT: each port has its own Maglev table.
//
// Only an entry's owner writes it. A node changes only the services it
// created and the backends it added; asked to change another node's, it
// answers "backend X was added by node Y; run the command there" (409)
// rather than forwarding. Entries of a dead owner are withdrawn by gossip,
// so its backends leave the Maglev tables within the failure-detection
// time. A service outlives a crash of its creator: node balances the
// services listed with ListAll (kept for the dead-owner grace, 24 h by
// default), so only the creator's backends leave with it; readers that use
// List (the DNS zone) hide the service's name until its creator returns.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/router"
)

// Health checking of this node's backends.
const (
	checkInterval = 2 * time.Second
	checkTimeout  = time.Second
	checkFailures = 2 // consecutive failed probes before a backend is unhealthy
)

// services is the node's service state: the watches of the service
// tables and the health checker of its own backends.
type services struct {
	c   *control
	log *zap.Logger

	kick chan struct{}

	mu      sync.Mutex        // guards watches
	watches map[string]func() // network → stop of its catalog.Watch of the service tables

	fpMu sync.Mutex  // guards fp
	fp   fingerprint // at the last routesChanged

	rmu      sync.Mutex           // guards rejected
	rejected map[[2]string]string // network, service → why this node does not balance it (last sync)

	syncs  atomic.Uint64 // rebuilds of the balancer's services (for tests)
	checks atomic.Uint64 // rounds of health checks (for tests)

	opMu  sync.Mutex     // serialises the API's writes
	fails map[string]int // backend key (network + "\x00" + key) → consecutive failed probes; checker only
}

// startServices starts watching the service tables of the joined networks
// and checking this node's backends. It stops with the control plane.
func (c *control) startServices() {
	s := &services{c: c, log: c.log.Named("services"), kick: make(chan struct{}, 1), watches: map[string]func(){},
		rejected: map[[2]string]string{}, fails: map[string]int{}}
	s.restore()
	c.n.svc.Store(s)
	c.wg.Add(2)
	go func() { defer c.wg.Done(); s.loop() }()
	go func() { defer c.wg.Done(); s.checkLoop() }()
}

// servicesFile keeps, under the state directory, the entries of the
// service tables this node owns, so that its services and backends come
// back after a restart even when the whole cluster restarted.
const servicesFile = "services.json"

// savedEntry is one own entry of the service tables.
type savedEntry struct {
	Table   string          `json:"table"`
	Network string          `json:"network"`
	Key     string          `json:"key"`
	Value   json.RawMessage `json:"value"`
}

type savedServices struct {
	Version int          `json:"version"`
	Entries []savedEntry `json:"entries"`
}

// save writes this node's own entries of the joined networks' service
// tables to the state directory (nothing without one).
func (s *services) save() {
	if s.c.state == nil {
		return
	}
	st := savedServices{Version: 1, Entries: []savedEntry{}}
	self := s.c.g.Name()
	for _, j := range s.c.joinedList() {
		for _, table := range []string{catalog.TableServices, catalog.TableBackends} {
			for _, e := range s.c.g.List(table, j.Name) {
				if e.Owner == self && json.Valid(e.Value) {
					st.Entries = append(st.Entries, savedEntry{Table: table, Network: j.Name, Key: e.Key, Value: e.Value})
				}
			}
		}
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := writeFileAtomic(filepath.Join(s.c.state.dir, servicesFile), append(b, '\n')); err != nil {
		s.log.Error("keep services", zap.Error(err))
	}
}

// restore puts back the entries kept by save, in the networks the node
// has joined; entries the cluster already holds unchanged are left alone.
func (s *services) restore() {
	if s.c.state == nil {
		return
	}
	// The rule for every state file (state.go): an unreadable one is
	// reported naming it and moved aside; the entries come back from the
	// peers, which hold them.
	var st savedServices
	if s.c.state.readState(servicesFile, "this node's services and backends come back from its peers (they are replicated)", func(b []byte) error {
		st = savedServices{}
		return json.Unmarshal(b, &st)
	}) != stateOK {
		return
	}
	joined := map[string]bool{}
	for _, j := range s.c.joinedList() {
		joined[j.Name] = true
	}
	n := 0
	for _, e := range st.Entries {
		if !joined[e.Network] || (e.Table != catalog.TableServices && e.Table != catalog.TableBackends) {
			continue
		}
		if cur, ok := s.c.g.Get(e.Table, e.Network, e.Key); ok && cur.Owner == s.c.g.Name() && bytes.Equal(cur.Value, e.Value) {
			continue
		}
		if err := s.c.g.Put(e.Table, e.Network, e.Key, e.Value); err != nil {
			s.log.Warn("restore", zap.String("network", e.Network), zap.String("key", e.Key), zap.Error(err))
			continue
		}
		n++
	}
	if n > 0 {
		s.log.Info("services restored from the state directory", zap.Int("entries", n))
	}
}

// changed is called after every write of this node's entries.
func (s *services) changed() {
	s.save()
	s.poke()
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

// svcEntry is a parsed services entry with its backends entries.
type svcEntry struct {
	v        catalog.Service
	owner    string
	time     uint64 // Lamport time of the entry: the earlier of two services claiming one VIP port wins
	vip      netip.Addr
	ports    []lb.PortProto
	backends []bkEntry
}

type bkEntry struct {
	v     catalog.Backend
	key   string
	owner string
	addr  netip.AddrPort
}

// read parses a network's service tables; malformed entries are skipped.
func (s *services) read(network string) []svcEntry {
	var out []svcEntry
	idx := map[string]int{}
	// ListAll: a service outlives a crash of its creator (its entry is
	// kept for the gossip's dead-owner grace, 24 h by default); backends
	// (List) leave with their nodes.
	for _, e := range s.c.g.ListAll(catalog.TableServices, network) {
		v, err := catalog.ServiceEntry(e, network)
		if err != nil {
			continue
		}
		vip, err := netip.ParseAddr(v.VIP)
		if err != nil || !vip.Is4() {
			continue
		}
		se := svcEntry{v: v, owner: e.Owner, time: e.Time, vip: vip}
		for _, p := range v.Ports {
			pp, err := parsePort(strconv.Itoa(int(p.Port)) + "/" + p.Proto)
			if err == nil {
				se.ports = append(se.ports, pp)
			}
		}
		if len(se.ports) == 0 {
			continue
		}
		idx[v.Name] = len(out)
		out = append(out, se)
	}
	for _, e := range s.c.g.List(catalog.TableBackends, network) {
		v, a, err := catalog.BackendEntry(e)
		if err != nil {
			continue
		}
		if i, ok := idx[v.Service]; ok {
			out[i].backends = append(out[i].backends, bkEntry{v: v, key: e.Key, owner: e.Owner, addr: a})
		}
	}
	return out
}

// servedPorts is the one rule of which ports of a service (ports) a
// backend at addr serves: the service port numbered explicit when that is
// not 0; else the ports with addr's port number; else, when every port of
// the service has one number, those (mapped to addr's port). Anything
// else is ambiguous and an error that says how to choose.
func servedPorts(ports []lb.PortProto, addr netip.AddrPort, explicit uint16) ([]lb.PortProto, error) {
	pick := func(n uint16) []lb.PortProto {
		var out []lb.PortProto
		for _, p := range ports {
			if p.Port == n {
				out = append(out, p)
			}
		}
		return out
	}
	list := func() string {
		ss := make([]string, len(ports))
		for i, p := range ports {
			ss[i] = p.String()
		}
		return strings.Join(ss, " ")
	}
	if explicit != 0 {
		if out := pick(explicit); out != nil {
			return out, nil
		}
		return nil, fmt.Errorf("the service has no port %d (its ports: %s)", explicit, list())
	}
	if out := pick(addr.Port()); out != nil {
		return out, nil
	}
	if out := pick(ports[0].Port); len(out) == len(ports) {
		return out, nil
	}
	return nil, fmt.Errorf("the service has several ports (%s) and none is %d: say which one backend %v serves with --service-port PORT", list(), addr.Port(), addr)
}

// Backend states, as 'service show' prints them.
const (
	stateActive      = "active"
	stateDraining    = "draining"    // weight 0
	stateUnhealthy   = "unhealthy"   // its health check fails
	stateUnreachable = "unreachable" // its address is not routed to a live node
	stateNoPort      = "no-port"     // it serves no port of the service (servedPorts)
)

// view is what a sync needs to know besides the service tables: this
// node's addresses, the router's routes and the live members.
type view struct {
	vni    map[string]uint32 // joined network → VNI
	own    map[netip.Addr]bool
	routes []router.Route
	live   map[string]bool
}

func (s *services) view() view {
	v := view{vni: map[string]uint32{}, own: map[netip.Addr]bool{}, routes: s.c.n.rt.Routes(), live: map[string]bool{}}
	for _, j := range s.c.joinedList() {
		v.vni[j.Name] = j.VNI
		v.own[j.Addr] = true
	}
	if a := s.c.n.cfg.Addr; a.IsValid() {
		v.own[a.Addr()] = true
	}
	for _, m := range s.c.g.Members() {
		if m.State == gossip.StateAlive || m.State == gossip.StateSuspect {
			v.live[m.Name] = true
		}
	}
	return v
}

// reachable: a is this node's, or the router's most specific route on
// the network that holds it is static or leads to a live member.
func (v view) reachable(network string, a netip.Addr) bool {
	if v.own[a] {
		return true
	}
	best := -1
	owner := ""
	for _, r := range v.routes {
		if r.VNI == v.vni[network] && r.Prefix.Contains(a) && r.Prefix.Bits() > best {
			best, owner = r.Prefix.Bits(), r.Owner
		}
	}
	return best >= 0 && (owner == "static" || v.live[owner])
}

// state is a backend's state on this node, and the service ports it
// serves. Only an active backend takes new flows; a draining one stays in
// its service so that its flows continue.
func (v view) state(se svcEntry, b bkEntry) (string, []lb.PortProto) {
	ports, err := servedPorts(se.ports, b.addr, b.v.Port)
	switch {
	case err != nil:
		return stateNoPort, nil
	case !b.v.Healthy:
		return stateUnhealthy, ports
	case !v.reachable(se.v.Network, b.addr.Addr()):
		return stateUnreachable, ports
	case b.v.Weight == 0:
		return stateDraining, ports
	}
	return stateActive, ports
}

// balanced is the balancer's service for se: its active and draining
// backends, without those on this node's own addresses (the router does
// not hairpin a DNATed packet back into the attachment, so this node's
// clients are balanced over the other nodes' backends only).
func (v view) balanced(se svcEntry) lb.Service {
	ls := lb.Service{Network: se.v.Network, Name: se.v.Name, VIP: se.vip, Ports: se.ports}
	for _, b := range se.backends {
		st, ports := v.state(se, b)
		if (st == stateActive || st == stateDraining) && !v.own[b.addr.Addr()] {
			ls.Backends = append(ls.Backends, lb.Backend{Addr: b.addr, Ports: ports, Weight: b.v.Weight})
		}
	}
	return ls
}

// sync hands the balancer the services of every joined network, as one
// snapshot. A service the balancer refuses (two services claiming one
// VIP port: the later entry loses) is left out alone, logged and shown by
// 'service ls'; every other service is published with it.
func (s *services) sync() {
	s.syncs.Add(1)
	v := s.view()
	var ses []svcEntry
	for _, j := range s.c.joinedList() {
		ses = append(ses, s.read(j.Name)...)
	}
	// The same order on every node: the earlier of two claims wins.
	slices.SortStableFunc(ses, func(a, b svcEntry) int {
		return cmp.Or(cmp.Compare(a.time, b.time), cmp.Compare(a.owner, b.owner), cmp.Compare(a.v.Network, b.v.Network), cmp.Compare(a.v.Name, b.v.Name))
	})
	all := make([]lb.Service, len(ses))
	for i, se := range ses {
		all[i] = v.balanced(se)
	}
	rejected := map[[2]string]string{}
	if err := s.c.n.lb.Set(all); err != nil {
		var serr *lb.SetError
		if !errors.As(err, &serr) {
			s.log.Error("balancer", zap.Error(err))
			return
		}
		for _, r := range serr.Rejected {
			rejected[[2]string{r.Network, r.Name}] = r.Err.Error()
		}
	}
	s.rmu.Lock()
	old := s.rejected
	s.rejected = rejected
	s.rmu.Unlock()
	for k, why := range rejected {
		if old[k] != why {
			s.log.Warn("service left out of the balancer", zap.String("network", k[0]), zap.String("service", k[1]), zap.String("reason", why))
		}
	}
	for k := range old {
		if _, still := rejected[k]; !still {
			s.log.Info("service balanced again", zap.String("network", k[0]), zap.String("service", k[1]))
		}
	}
}

// rejectedWhy says why this node does not balance a service ("" when it does).
func (s *services) rejectedWhy(network, name string) string {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	return s.rejected[[2]string{network, name}]
}

// parsePort reads "80/tcp" (the protocol defaults to tcp).
func parsePort(s string) (lb.PortProto, error) {
	ps, proto, _ := strings.Cut(s, "/")
	p, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || p == 0 {
		return lb.PortProto{}, fmt.Errorf("port %q: want PORT/PROTO such as 80/tcp or 53/udp", s)
	}
	switch strings.ToLower(proto) {
	case "", "tcp":
		return lb.PortProto{Port: uint16(p), Proto: lb.TCP}, nil
	case "udp":
		return lb.PortProto{Port: uint16(p), Proto: lb.UDP}, nil
	}
	return lb.PortProto{}, fmt.Errorf("port %q: the protocol must be tcp or udp", s)
}

// validServiceName: a DNS label (the service is NAME.NETWORK.overlay.).
func validServiceName(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// maxWeight bounds a backend's weight.
const maxWeight = 65535

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

// pickNetwork resolves the network of a request: the one given (it must
// be joined), else the only joined network, else the one network whose
// tables hold the service name.
func (s *services) pickNetwork(network, service string) (string, error) {
	joined := s.c.joinedList()
	if network != "" {
		for _, j := range joined {
			if j.Name == network {
				return network, nil
			}
		}
		return "", fault.Conflict("this node has not joined network %q; run 'overlayd network join %s' first", network, network)
	}
	switch len(joined) {
	case 0:
		return "", fault.Conflict("this node has joined no network; run 'overlayd network join NAME' first")
	case 1:
		return joined[0].Name, nil
	}
	var found []string
	if service != "" {
		for _, j := range joined {
			if _, ok := s.c.g.Get(catalog.TableServices, j.Name, service); ok {
				found = append(found, j.Name)
			}
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	names := make([]string, len(joined))
	for i, j := range joined {
		names[i] = j.Name
	}
	return "", fault.Invalid("say which network with --network (this node has joined %s)", strings.Join(names, ", "))
}

// find returns a service of network by name.
func (s *services) find(network, name string) (svcEntry, bool) {
	for _, se := range s.read(network) {
		if se.v.Name == name {
			return se, true
		}
	}
	return svcEntry{}, false
}

// info describes a service with this node's balancer figures.
func (s *services) info(se svcEntry, flows map[[3]string]int, st lb.Stats) api.ServiceInfo {
	si := api.ServiceInfo{Name: se.v.Name, Network: se.v.Network, VIP: se.vip.String(), Creator: se.owner, Backends: []api.BackendInfo{},
		Error: s.rejectedWhy(se.v.Network, se.v.Name)}
	for _, p := range se.ports {
		si.Ports = append(si.Ports, p.String())
	}
	sel := map[string]uint64{}
	inTable := map[string]bool{}
	for _, ss := range st.Services {
		if ss.Network == se.v.Network && ss.Name == se.v.Name {
			for _, b := range ss.Backends {
				sel[b.ID], inTable[b.ID] = b.Selections, b.Weight > 0
			}
		}
	}
	v := s.view()
	for _, b := range se.backends {
		id := b.addr.String()
		state, ports := v.state(se, b)
		bi := api.BackendInfo{Addr: id, Weight: b.v.Weight, Healthy: b.v.Healthy, Check: cmpOr(b.v.Check, "none"), Owner: b.owner,
			State: state, Ports: []string{}, InTable: inTable[id], Selections: sel[id], Flows: flows[[3]string{se.v.Network, se.v.Name, id}]}
		for _, p := range ports {
			bi.Ports = append(bi.Ports, p.String())
		}
		si.Flows += bi.Flows
		si.Backends = append(si.Backends, bi)
	}
	return si
}

func cmpOr(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

// flowCounts counts the balancer's flows by network, service and backend.
func (n *Node) flowCounts() map[[3]string]int {
	out := map[[3]string]int{}
	for _, f := range n.lb.Flows() {
		out[[3]string{f.Network, f.Service, f.BackendID}]++
	}
	return out
}

// Services lists the services of the joined networks; it implements
// api.ServiceBackend.
func (n *Node) Services(context.Context) ([]api.ServiceInfo, error) {
	s, err := n.svcState()
	if err != nil {
		return nil, err
	}
	flows, st := n.flowCounts(), n.lb.Stats()
	out := []api.ServiceInfo{}
	for _, j := range s.c.joinedList() {
		for _, se := range s.read(j.Name) {
			out = append(out, s.info(se, flows, st))
		}
	}
	return out, nil
}

// Service describes one service; it implements api.ServiceBackend.
func (n *Node) Service(_ context.Context, network, name string) (api.ServiceInfo, error) {
	s, err := n.svcState()
	if err != nil {
		return api.ServiceInfo{}, err
	}
	if network, err = s.pickNetwork(network, name); err != nil {
		return api.ServiceInfo{}, err
	}
	se, ok := s.find(network, name)
	if !ok {
		return api.ServiceInfo{}, fault.NotFound("no service %q on network %q", name, network)
	}
	return s.info(se, n.flowCounts(), n.lb.Stats()), nil
}

// CreateService defines a service cluster-wide, owned by this node; it
// implements api.ServiceBackend.
func (n *Node) CreateService(ctx context.Context, req api.CreateService) (api.ServiceInfo, error) {
	s, err := n.svcState()
	if err != nil {
		return api.ServiceInfo{}, err
	}
	if !validServiceName(req.Name) {
		return api.ServiceInfo{}, fault.Invalid("service name %q is not valid: it is a DNS label, 1 to 63 letters, digits or '-', not starting or ending with '-'", req.Name)
	}
	network, err := s.pickNetwork(req.Network, "")
	if err != nil {
		return api.ServiceInfo{}, err
	}
	if len(req.Ports) == 0 {
		return api.ServiceInfo{}, fault.Invalid("a service needs at least one port: give --port 80/tcp")
	}
	v := catalog.Service{Name: req.Name, Network: network}
	var ports []lb.PortProto
	for _, p := range req.Ports {
		pp, err := parsePort(p)
		if err != nil {
			return api.ServiceInfo{}, fault.Invalid("%v", err)
		}
		if slices.Contains(ports, pp) {
			return api.ServiceInfo{}, fault.Invalid("port %v is given twice", pp)
		}
		ports = append(ports, pp)
		v.Ports = append(v.Ports, catalog.Port{Port: pp.Port, Proto: pp.Proto.String()})
	}
	nw, _ := s.c.ipam.Network(network)
	s.opMu.Lock()
	defer s.opMu.Unlock()
	existing := s.read(network)
	for _, se := range existing {
		if se.v.Name == req.Name {
			return api.ServiceInfo{}, fault.Conflict("service %q exists already on network %q (VIP %v)", req.Name, network, se.vip)
		}
	}
	if req.VIP != "" {
		vip, err := netip.ParseAddr(req.VIP)
		if err != nil || !vip.Is4() {
			return api.ServiceInfo{}, fault.Invalid("VIP %q is not an IPv4 address", req.VIP)
		}
		if nw.CIDR.IsValid() && !nw.CIDR.Contains(vip) {
			return api.ServiceInfo{}, fault.Invalid("VIP %v is outside network %q (%v)", vip, network, nw.CIDR)
		}
		for _, se := range existing {
			if se.vip == vip {
				return api.ServiceInfo{}, fault.Conflict("VIP %v is taken by service %q", vip, se.v.Name)
			}
		}
		if l, ok := s.c.ipam.Lookup(network, vip); ok {
			return api.ServiceInfo{}, fault.Conflict("VIP %v is leased to %q on node %s", vip, l.Owner, l.Node)
		}
		v.VIP = vip.String()
	} else {
		// A VIP given with --vip is not leased; should IPAM hand it out,
		// the lease stays (the address is in use) and the next one is taken.
		actx, cancel := context.WithTimeout(ctx, joinTimeout)
		defer cancel()
		for v.VIP == "" {
			vip, err := s.c.ipam.AllocateVIP(actx, network, "service:"+req.Name)
			if err != nil {
				return api.ServiceInfo{}, fault.Unavailable("network %q: no VIP (%v); give one with --vip", network, err)
			}
			if !slices.ContainsFunc(existing, func(se svcEntry) bool { return se.vip == vip }) {
				v.VIP = vip.String()
			}
		}
	}
	if err := s.c.g.Put(catalog.TableServices, network, catalog.ServiceKey(req.Name), v.Encode()); err != nil {
		return api.ServiceInfo{}, s.writeErr(err, "service", req.Name)
	}
	s.log.Info("service created", zap.String("network", network), zap.String("service", req.Name), zap.String("vip", v.VIP), zap.Strings("ports", req.Ports))
	s.changed()
	se, _ := s.find(network, req.Name)
	return s.info(se, nil, lb.Stats{}), nil
}

// writeErr turns a gossip write error into one sentence for the user:
// another node's entry is a *fault.OwnerError naming that node.
func (s *services) writeErr(err error, what, name string) error {
	if errors.Is(err, gossip.ErrNotOwner) {
		verb := "created"
		if what == "backend" {
			verb = "added"
		}
		oe := &gossip.OwnerError{}
		errors.As(err, &oe)
		return &fault.OwnerError{What: what + " " + name, Verb: verb, Owner: oe.Owner}
	}
	return fmt.Errorf("node: %s %s: %w", what, name, err)
}

// RemoveService deletes a service this node created, with the backends
// this node added to it, and releases its VIP; it implements
// api.ServiceBackend.
func (n *Node) RemoveService(_ context.Context, network, name string) error {
	s, err := n.svcState()
	if err != nil {
		return err
	}
	if network, err = s.pickNetwork(network, name); err != nil {
		return err
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	se, ok := s.find(network, name)
	if !ok {
		return fault.NotFound("no service %q on network %q", name, network)
	}
	if err := s.c.g.Delete(catalog.TableServices, network, name); err != nil {
		return s.writeErr(err, "service", name)
	}
	self := s.c.g.Name()
	for _, b := range se.backends {
		if b.owner == self {
			s.c.g.Delete(catalog.TableBackends, network, b.key)
		}
	}
	if l, ok := s.c.ipam.Lookup(network, se.vip); ok && l.Node == self {
		if err := s.c.ipam.Release(network, se.vip); err != nil {
			s.log.Warn("release VIP", zap.String("network", network), zap.Error(err))
		}
	}
	s.log.Info("service removed", zap.String("network", network), zap.String("service", name))
	s.changed()
	return nil
}

// AddBackend adds a backend owned by this node to a service, or updates
// the weight and check of one it added; it implements api.ServiceBackend.
func (n *Node) AddBackend(_ context.Context, req api.AddBackend) (api.ServiceInfo, error) {
	s, err := n.svcState()
	if err != nil {
		return api.ServiceInfo{}, err
	}
	network, err := s.pickNetwork(req.Network, req.Service)
	if err != nil {
		return api.ServiceInfo{}, err
	}
	a, err := netip.ParseAddrPort(req.Addr)
	if err != nil || !a.Addr().Is4() || a.Port() == 0 {
		return api.ServiceInfo{}, fault.Invalid("backend %q: want an overlay IPv4 address and port such as 10.200.1.1:8080", req.Addr)
	}
	if req.Weight > maxWeight {
		return api.ServiceInfo{}, fault.Invalid("weight %d is out of range (0-%d)", req.Weight, maxWeight)
	}
	switch req.Check {
	case "none":
		req.Check = ""
	case "", "tcp", "udp":
	default:
		return api.ServiceInfo{}, fault.Invalid("check %q: want tcp, udp or none", req.Check)
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	se, ok := s.find(network, req.Service)
	if !ok {
		return api.ServiceInfo{}, fault.NotFound("no service %q on network %q; create it with 'overlayd service create %s --network %s --port PORT/PROTO'", req.Service, network, req.Service, network)
	}
	if nw, ok := s.c.ipam.Network(network); ok && !nw.CIDR.Contains(a.Addr()) {
		return api.ServiceInfo{}, fault.Invalid("backend %v is outside network %q (%v)", a, network, nw.CIDR)
	}
	if a.Addr() == se.vip {
		return api.ServiceInfo{}, fault.Invalid("backend %v is the service's own VIP", a)
	}
	healthy := true
	key := catalog.BackendKey(req.Service, a)
	if e, ok := s.c.g.Get(catalog.TableBackends, network, key); ok && e.Owner == s.c.g.Name() {
		if old, err := catalog.DecodeBackend(e.Value); err == nil {
			if old.Check == req.Check {
				healthy = old.Healthy
			}
			if req.ServicePort == 0 { // an update keeps the port it serves
				req.ServicePort = old.Port
			}
		}
	}
	if _, err := servedPorts(se.ports, a, req.ServicePort); err != nil {
		return api.ServiceInfo{}, fault.Invalid("service %s: %v", req.Service, err)
	}
	if err := s.putBackend(network, key, catalog.Backend{Service: req.Service, Addr: a.String(), Weight: req.Weight, Healthy: healthy, Check: req.Check, Port: req.ServicePort}); err != nil {
		return api.ServiceInfo{}, err
	}
	s.log.Info("backend added", zap.String("network", network), zap.String("service", req.Service), zap.Stringer("backend", a), zap.Uint32("weight", req.Weight), zap.String("check", cmpOr(req.Check, "none")), zap.Uint16("service_port", req.ServicePort))
	s.changed()
	se, _ = s.find(network, req.Service)
	return s.info(se, n.flowCounts(), n.lb.Stats()), nil
}

// backendWait bounds how long a command waits for a backend entry that is
// not here (yet): one added on another node a moment ago may still be on
// its way.
const backendWait = 2 * time.Second

// lookupBackend returns the backends entry under key, including one whose
// owner this node does not yet know to take part in the network (so that
// a refusal can name its owner), waiting up to wait for one that has not
// arrived.
func (s *services) lookupBackend(network, key string, wait time.Duration) (gossip.Entry, bool) {
	find := func() (gossip.Entry, bool) {
		if e, ok := s.c.g.Get(catalog.TableBackends, network, key); ok {
			return e, true
		}
		for _, e := range s.c.g.ListAll(catalog.TableBackends, network) {
			if e.Key == key {
				return e, true
			}
		}
		return gossip.Entry{}, false
	}
	if e, ok := find(); ok || wait <= 0 {
		return e, ok
	}
	ch, cancel := s.c.g.Watch(catalog.TableBackends, network)
	defer cancel()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		if e, ok := find(); ok {
			return e, true
		}
		select {
		case <-ch:
		case <-timer.C:
			return find()
		case <-s.c.stop:
			return gossip.Entry{}, false
		}
	}
}

func (s *services) putBackend(network, key string, v catalog.Backend) error {
	if err := s.c.g.Put(catalog.TableBackends, network, key, v.Encode()); err != nil {
		return s.writeErr(err, "backend", v.Addr)
	}
	return nil
}

// RemoveBackend deletes a backend this node added or, with drain, sets
// its weight to 0; it implements api.ServiceBackend.
func (n *Node) RemoveBackend(_ context.Context, ref api.BackendRef, drain bool) (api.ServiceInfo, error) {
	s, err := n.svcState()
	if err != nil {
		return api.ServiceInfo{}, err
	}
	network, err := s.pickNetwork(ref.Network, ref.Service)
	if err != nil {
		return api.ServiceInfo{}, err
	}
	a, err := netip.ParseAddrPort(ref.Addr)
	if err != nil {
		return api.ServiceInfo{}, fault.Invalid("backend %q: want IP:PORT as listed by 'overlayd service show %s'", ref.Addr, ref.Service)
	}
	key := catalog.BackendKey(ref.Service, a)
	notFound := fault.NotFound("service %q on network %q has no backend %v", ref.Service, network, a)
	if _, ok := s.lookupBackend(network, key, backendWait); !ok { // without opMu: other writes go on meanwhile
		return api.ServiceInfo{}, notFound
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	e, ok := s.lookupBackend(network, key, 0)
	if !ok {
		return api.ServiceInfo{}, notFound
	}
	if e.Owner != s.c.g.Name() {
		return api.ServiceInfo{}, &fault.OwnerError{What: "backend " + a.String(), Verb: "added", Owner: e.Owner}
	}
	if drain {
		v, err := catalog.DecodeBackend(e.Value)
		if err != nil {
			return api.ServiceInfo{}, fmt.Errorf("node: backend %v: %w", a, err)
		}
		v.Weight = 0
		if err := s.putBackend(network, key, v); err != nil {
			return api.ServiceInfo{}, err
		}
		s.log.Info("backend draining", zap.String("network", network), zap.String("service", ref.Service), zap.Stringer("backend", a))
	} else {
		if err := s.c.g.Delete(catalog.TableBackends, network, key); err != nil {
			return api.ServiceInfo{}, s.writeErr(err, "backend", a.String())
		}
		s.log.Info("backend removed", zap.String("network", network), zap.String("service", ref.Service), zap.Stringer("backend", a))
	}
	s.changed()
	se, _ := s.find(network, ref.Service)
	return s.info(se, n.flowCounts(), n.lb.Stats()), nil
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
			if b.State == stateActive {
				sum.Active++
			}
			if b.InTable {
				sum.InTables++
			}
		}
	}
	return sum
}

// checkLoop probes this node's backends that have a check, every
// checkInterval, and gossips their health when it changes.
func (s *services) checkLoop() {
	t := time.NewTicker(checkInterval)
	defer t.Stop()
	for {
		select {
		case <-s.c.stop:
			return
		case <-t.C:
		}
		s.checkAll()
	}
}

type probeTarget struct {
	network, key string
	v            catalog.Backend
}

func (s *services) checkAll() {
	defer s.checks.Add(1)
	self := s.c.g.Name()
	var targets []probeTarget
	for _, j := range s.c.joinedList() {
		for _, e := range s.c.g.List(catalog.TableBackends, j.Name) {
			if e.Owner != self {
				continue
			}
			v, err := catalog.DecodeBackend(e.Value)
			if err != nil || v.Check == "" {
				continue
			}
			targets = append(targets, probeTarget{j.Name, e.Key, v})
		}
	}
	if len(targets) == 0 {
		return
	}
	results := make([]error, len(targets))
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	go func() {
		select {
		case <-s.c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for i, pt := range targets {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = s.probe(ctx, pt.v) }()
	}
	wg.Wait()
	cancel()
	changed := false
	for i, pt := range targets {
		fk := pt.network + "\x00" + pt.key
		healthy := pt.v.Healthy
		if results[i] == nil {
			delete(s.fails, fk)
			healthy = true
		} else {
			s.fails[fk]++
			if s.fails[fk] >= checkFailures {
				healthy = false
			}
		}
		if healthy == pt.v.Healthy {
			continue
		}
		s.opMu.Lock()
		// Re-read: the entry may have changed while the probe ran.
		e, ok := s.c.g.Get(catalog.TableBackends, pt.network, pt.key)
		cur, err := catalog.DecodeBackend(e.Value) // no entry: an empty value, an error
		if ok && e.Owner == self && err == nil && cur.Check == pt.v.Check && cur.Healthy != healthy {
			cur.Healthy = healthy
			if err := s.putBackend(pt.network, pt.key, cur); err != nil {
				s.log.Warn("health", zap.String("backend", cur.Addr), zap.Error(err))
			} else {
				changed = true
				s.log.Info("backend health changed", zap.String("network", pt.network), zap.String("service", cur.Service),
					zap.String("backend", cur.Addr), zap.Bool("healthy", healthy), zap.NamedError("probe", results[i]))
			}
		}
		s.opMu.Unlock()
	}
	if changed {
		s.poke()
	}
}

// probe checks one backend through this node's attachment: the netstack
// in netstack mode, the host's sockets (which route the overlay to the
// device) otherwise.
func (s *services) probe(ctx context.Context, v catalog.Backend) error {
	dial := s.c.n.Dial
	if s.c.n.ns == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, v.Check, v.Addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if v.Check != "udp" {
		return nil
	}
	// UDP: a datagram that draws an ICMP port unreachable (a read error)
	// fails; an answer or silence passes.
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	if _, err := conn.Write([]byte("overlayd health check\n")); err != nil {
		return err
	}
	var buf [512]byte
	if _, err := conn.Read(buf[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return err
	}
	return nil
}
