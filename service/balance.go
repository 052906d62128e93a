package service

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/ipam"
	"github.com/overlayd/overlayd/lb"
)

// svcEntry is a parsed services entry with its backends entries.
type svcEntry struct {
	v        catalog.Service
	owner    string
	time     uint64       // Lamport time of the entry: the earlier of two services claiming one VIP port wins
	vips     []netip.Addr // one per family, IPv4 first (catalog.Service.VIPs)
	ports    []lb.PortProto
	backends []bkEntry
}

type bkEntry struct {
	v     catalog.Backend
	key   string
	owner string
	addr  netip.AddrPort
}

// parse reads a network's service and backend entries (the services of a
// dead creator included: ListAll; backends of live owners only: List);
// malformed entries are skipped, and so are VIPs outside cidrs (the
// network's, when known).
func parse(network string, cidrs []netip.Prefix, services, backends []gossip.Entry) []svcEntry {
	var out []svcEntry
	idx := map[string]int{}
	for _, e := range services {
		v, err := catalog.ServiceEntry(e, network)
		if err != nil {
			continue
		}
		vips := v.VIPs()
		if len(cidrs) > 0 {
			vips = slices.DeleteFunc(vips, func(a netip.Addr) bool { return !ipam.Contains(cidrs, a) })
		}
		if len(vips) == 0 {
			continue
		}
		se := svcEntry{v: v, owner: e.Owner, time: e.Time, vips: vips}
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
	for _, e := range backends {
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

// read parses a network's service tables as they are now.
func (m *Manager) read(network string) []svcEntry {
	g := m.o.Gossip
	var cidrs []netip.Prefix
	for _, j := range m.o.Networks() {
		if j.Name == network {
			cidrs = j.CIDRs
		}
	}
	return parse(network, cidrs, g.ListAll(catalog.TableServices, network), g.List(catalog.TableBackends, network))
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
	StateActive      = "active"
	StateDraining    = "draining"    // weight 0
	StateUnhealthy   = "unhealthy"   // its health check fails
	StateUnreachable = "unreachable" // its address is not routed to a live node
	StateNoPort      = "no-port"     // it serves no port of the service (servedPorts)
)

// judge decides backends' states: a View with the live members, as sets.
type judge struct {
	vni    map[string]uint32 // joined network → VNI
	own    map[netip.Addr]bool
	local  map[string]map[netip.Addr]bool // network → this node's endpoints there
	routes []Route
	live   func(name string) bool
}

func newJudge(v View, live func(string) bool) judge {
	j := judge{vni: map[string]uint32{}, own: map[netip.Addr]bool{}, local: map[string]map[netip.Addr]bool{}, routes: v.Routes, live: live}
	for nw, as := range v.Local {
		j.local[nw] = map[netip.Addr]bool{}
		for _, a := range as {
			j.local[nw][a] = true
		}
	}
	for _, n := range v.Networks {
		j.vni[n.Name] = n.VNI
		for _, a := range n.Addrs {
			j.own[a] = true
		}
	}
	for _, a := range v.Own {
		j.own[a] = true
	}
	return j
}

// judgeNow is the judge of the view and members of now.
func (m *Manager) judgeNow() judge {
	live := map[string]bool{}
	for _, mb := range m.o.Gossip.Members() {
		if mb.State == gossip.StateAlive || mb.State == gossip.StateSuspect {
			live[mb.Name] = true
		}
	}
	return newJudge(m.View(), func(name string) bool { return live[name] })
}

// reachable: a is this node's or one of its endpoints', or the router's
// most specific route on the network that holds it is static or leads to
// a live member.
func (j judge) reachable(network string, a netip.Addr) bool {
	if j.own[a] || j.local[network][a] {
		return true
	}
	best := -1
	owner := ""
	for _, r := range j.routes {
		if r.VNI == j.vni[network] && r.Prefix.Contains(a) && r.Prefix.Bits() > best {
			best, owner = r.Prefix.Bits(), r.Owner
		}
	}
	return best >= 0 && (owner == "static" || j.live(owner))
}

// state is a backend's state on this node, and the service ports it
// serves. Only an active backend takes new flows; a draining one stays in
// its service so that its flows continue.
func (j judge) state(se svcEntry, b bkEntry) (string, []lb.PortProto) {
	ports, err := servedPorts(se.ports, b.addr, b.v.Port)
	switch {
	case err != nil:
		return StateNoPort, nil
	case !b.v.Healthy:
		return StateUnhealthy, ports
	case !j.reachable(se.v.Network, b.addr.Addr()):
		return StateUnreachable, ports
	case b.v.Weight == 0:
		return StateDraining, ports
	}
	return StateActive, ports
}

// balanced is the balancer's services for se, one per VIP (a dual-stack
// service is an IPv4 and an IPv6 service side by side, never a
// translation): each with its active and draining backends of the VIP's
// family, without those on this node's own addresses (the router does
// not hairpin a DNATed packet back into the attachment, so this node's
// clients are balanced over the other nodes' backends only).
func (j judge) balanced(se svcEntry) []lb.Service {
	out := make([]lb.Service, 0, len(se.vips))
	for i, vip := range se.vips {
		ls := lb.Service{Network: se.v.Network, Name: lbName(se.v.Name, i), VIP: vip, Ports: se.ports}
		for _, b := range se.backends {
			if b.addr.Addr().Is4() != vip.Is4() {
				continue
			}
			st, ports := j.state(se, b)
			if (st == StateActive || st == StateDraining) && !j.own[b.addr.Addr()] {
				ls.Backends = append(ls.Backends, lb.Backend{Addr: b.addr, Ports: ports, Weight: b.v.Weight})
			}
		}
		out = append(out, ls)
	}
	return out
}

// lbSuffix marks the balancer's service of a dual-stack service's second
// (IPv6) VIP: "web/6" beside "web". A service name is a DNS label, so no
// service has it.
const lbSuffix = "/6"

// lbName is the balancer's name of service name's VIP number i.
func lbName(name string, i int) string {
	if i == 0 {
		return name
	}
	return name + lbSuffix
}

// serviceOf is the service of a balancer's service name (lbName).
func serviceOf(lbName string) string { return strings.TrimSuffix(lbName, lbSuffix) }

// Balance is the balancer's services of the joined networks of v (those
// snap has tables of), from snap's entries and live members: each
// service with its active and draining backends that are not on this
// node. The order is the same on every node, so that of two services
// claiming one VIP port the earlier entry wins everywhere.
func Balance(snap catalog.Snapshot, v View) []lb.Service {
	var ses []svcEntry
	for _, n := range v.Networks {
		if t, ok := snap.Networks[n.Name]; ok {
			ses = append(ses, parse(n.Name, n.CIDRs, t.Services, t.Backends)...)
		}
	}
	slices.SortStableFunc(ses, func(a, b svcEntry) int {
		return cmp.Or(cmp.Compare(a.time, b.time), cmp.Compare(a.owner, b.owner), cmp.Compare(a.v.Network, b.v.Network), cmp.Compare(a.v.Name, b.v.Name))
	})
	j := newJudge(v, snap.Live)
	all := make([]lb.Service, 0, len(ses))
	for _, se := range ses {
		all = append(all, j.balanced(se)...)
	}
	return all
}

// Apply hands the balancer's services to s as one snapshot. A service s
// refuses (two services claiming one VIP port: the later entry loses) is
// left out alone, logged and shown by Services; every other service is
// published with it. Another error of s is logged, and the services
// refused before stay so.
func (m *Manager) Apply(s Setter, services []lb.Service) {
	rejected := map[[2]string]string{}
	if err := s.Set(services); err != nil {
		var serr *lb.SetError
		if !errors.As(err, &serr) {
			m.log.Error("balancer", zap.Error(err))
			return
		}
		for _, r := range serr.Rejected {
			k := [2]string{r.Network, serviceOf(r.Name)}
			why := r.Err.Error()
			if r.Name != k[1] {
				why = "IPv6 VIP: " + why
			}
			if rejected[k] != "" {
				why = rejected[k] + "; " + why
			}
			rejected[k] = why
		}
	}
	m.rmu.Lock()
	old := m.rejected
	m.rejected = rejected
	m.rmu.Unlock()
	for k, why := range rejected {
		if old[k] != why {
			m.log.Warn("service left out of the balancer", zap.String("network", k[0]), zap.String("service", k[1]), zap.String("reason", why))
		}
	}
	for k := range old {
		if _, still := rejected[k]; !still {
			m.log.Info("service balanced again", zap.String("network", k[0]), zap.String("service", k[1]))
		}
	}
}

// rejectedWhy says why this node does not balance a service ("" when it does).
func (m *Manager) rejectedWhy(network, name string) string {
	m.rmu.Lock()
	defer m.rmu.Unlock()
	return m.rejected[[2]string{network, name}]
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
