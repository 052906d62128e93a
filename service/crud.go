package service

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/ipam"
	"github.com/overlayd/overlayd/lb"
)

// Create asks for a service.
type Create struct {
	Name    string
	Network string   // "": the node's only joined network
	Ports   []string // "80/tcp", "53/udp"
	VIP     string   // "": one from the network's VIP range
	// VIPs are more VIPs, after VIP: at most one per family of the
	// network; a family without one gets one from its VIP range.
	VIPs []string
}

// AddBackend asks for a backend of this node, or changes one it added.
type AddBackend struct {
	Service string
	Network string
	Addr    string // overlay ip:port
	Weight  uint32 // relative share; 0 means draining
	Check   string // tcp, udp, none or ""
	// ServicePort is the service port the backend serves; 0: by the rule
	// of servedPorts (see the package doc).
	ServicePort uint16
}

// BackendRef names one backend of a service.
type BackendRef struct {
	Service string
	Network string
	Addr    string
}

// Info describes a service with this node's balancer figures.
type Info struct {
	Name     string
	Network  string
	VIP      string   // the first of VIPs
	VIPs     []string // one per family of its network, IPv4 first
	Ports    []string // "80/tcp"
	Creator  string   // the node that created it (only it may remove it)
	Backends []BackendInfo
	Flows    int    // flows of this node's clients tracked now
	Error    string // why this node does not balance it; "" when it does
}

// BackendInfo is one backend of a service.
type BackendInfo struct {
	Addr    string
	Weight  uint32
	Healthy bool
	Check   string // tcp, udp or none
	Owner   string // the node that added it (only it may change it)
	State   string // StateActive, ...
	Ports   []string
	// InTable: this node's Maglev tables hold it with a positive weight.
	InTable    bool
	Flows      int
	Selections uint64
}

// maxWeight bounds a backend's weight.
const maxWeight = 65535

// validName: a DNS label (the service is NAME.NETWORK.overlay.).
func validName(s string) bool {
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

// PickNetwork resolves the network of a request: the one given (it must
// be joined), else the only joined network, else the one network whose
// tables hold the service name.
func (m *Manager) PickNetwork(network, service string) (string, error) {
	joined := m.o.Networks()
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
			if _, ok := m.o.Gossip.Get(catalog.TableServices, j.Name, service); ok {
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
func (m *Manager) find(network, name string) (svcEntry, bool) {
	for _, se := range m.read(network) {
		if se.v.Name == name {
			return se, true
		}
	}
	return svcEntry{}, false
}

// Has reports whether network's tables hold the service name.
func (m *Manager) Has(network, name string) bool {
	_, ok := m.find(network, name)
	return ok
}

// info describes a service with this node's balancer figures.
func (m *Manager) info(se svcEntry, flows map[[3]string]int, st lb.Stats) Info {
	si := Info{Name: se.v.Name, Network: se.v.Network, VIP: se.vips[0].String(), Creator: se.owner, Backends: []BackendInfo{},
		Error: m.rejectedWhy(se.v.Network, se.v.Name)}
	for _, v := range se.vips {
		si.VIPs = append(si.VIPs, v.String())
	}
	for _, p := range se.ports {
		si.Ports = append(si.Ports, p.String())
	}
	sel := map[string]uint64{}
	inTable := map[string]bool{}
	for _, ss := range st.Services {
		if ss.Network == se.v.Network && serviceOf(ss.Name) == se.v.Name {
			for _, b := range ss.Backends {
				sel[b.ID], inTable[b.ID] = b.Selections, b.Weight > 0
			}
		}
	}
	j := m.judgeNow()
	for _, b := range se.backends {
		id := b.addr.String()
		state, ports := j.state(se, b)
		bi := BackendInfo{Addr: id, Weight: b.v.Weight, Healthy: b.v.Healthy, Check: cmp0(b.v.Check, "none"), Owner: b.owner,
			State: state, Ports: []string{}, InTable: inTable[id], Selections: sel[id], Flows: flows[[3]string{se.v.Network, se.v.Name, id}]}
		for _, p := range ports {
			bi.Ports = append(bi.Ports, p.String())
		}
		si.Flows += bi.Flows
		si.Backends = append(si.Backends, bi)
	}
	return si
}

// cmp0 is a, or b when a is empty.
func cmp0(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

// Services lists the services of the joined networks.
func (m *Manager) Services() []Info {
	flows, st := m.figures()
	out := []Info{}
	for _, j := range m.o.Networks() {
		for _, se := range m.read(j.Name) {
			out = append(out, m.info(se, flows, st))
		}
	}
	return out
}

// Service describes one service.
func (m *Manager) Service(network, name string) (Info, error) {
	network, err := m.PickNetwork(network, name)
	if err != nil {
		return Info{}, err
	}
	se, ok := m.find(network, name)
	if !ok {
		return Info{}, fault.NotFound("no service %q on network %q", name, network)
	}
	flows, st := m.figures()
	return m.info(se, flows, st), nil
}

// Create defines a service cluster-wide, owned by this node.
func (m *Manager) Create(ctx context.Context, req Create) (Info, error) {
	if !validName(req.Name) {
		return Info{}, fault.Invalid("service name %q is not valid: it is a DNS label, 1 to 63 letters, digits or '-', not starting or ending with '-'", req.Name)
	}
	network, err := m.PickNetwork(req.Network, "")
	if err != nil {
		return Info{}, err
	}
	if len(req.Ports) == 0 {
		return Info{}, fault.Invalid("a service needs at least one port: give --port 80/tcp")
	}
	v := catalog.Service{Name: req.Name, Network: network}
	var ports []lb.PortProto
	for _, p := range req.Ports {
		pp, err := parsePort(p)
		if err != nil {
			return Info{}, fault.Invalid("%v", err)
		}
		if slices.Contains(ports, pp) {
			return Info{}, fault.Invalid("port %v is given twice", pp)
		}
		ports = append(ports, pp)
		v.Ports = append(v.Ports, catalog.Port{Port: pp.Port, Proto: pp.Proto.String()})
	}
	nw, _ := m.o.IPAM.Network(network)
	m.opMu.Lock()
	defer m.opMu.Unlock()
	existing := m.read(network)
	for _, se := range existing {
		if se.v.Name == req.Name {
			return Info{}, fault.Conflict("service %q exists already on network %q (VIP %s)", req.Name, network, vipList(se.vips))
		}
	}
	given, err := m.givenVIPs(network, nw, req, existing)
	if err != nil {
		return Info{}, err
	}
	fams := ipam.Families(nw.CIDRs)
	if len(fams) == 0 { // not known here (yet): what was given, else IPv4 as before
		for _, f := range []ipam.Family{ipam.IPv4, ipam.IPv6} {
			if _, ok := given[f]; ok {
				fams = append(fams, f)
			}
		}
		if len(fams) == 0 {
			fams = []ipam.Family{ipam.IPv4}
		}
	}
	var vips, allocated []netip.Addr
	for _, f := range fams {
		vip, ok := given[f]
		if !ok {
			// A VIP given with --vip is not leased; should IPAM hand it
			// out, the lease stays (the address is in use) and the next
			// one is taken.
			actx, cancel := context.WithTimeout(ctx, vipTimeout)
			for !vip.IsValid() {
				a, err := m.o.IPAM.AllocateVIP(actx, network, "service:"+req.Name, f)
				if err != nil {
					cancel()
					for _, a := range allocated {
						m.o.IPAM.Release(network, a)
					}
					what := ""
					if len(fams) > 1 {
						what = " " + f.String()
					}
					return Info{}, fault.Unavailable("network %q: no%s VIP (%v); give one with --vip", network, what, err)
				}
				if !slices.ContainsFunc(existing, func(se svcEntry) bool { return slices.Contains(se.vips, a) }) {
					vip = a
					allocated = append(allocated, a)
				}
			}
			cancel()
		}
		vips = append(vips, vip)
	}
	v.VIP = vips[0].String()
	if len(vips) > 1 {
		v.VIP6 = vips[1].String()
	}
	if err := m.o.Gossip.Put(catalog.TableServices, network, catalog.ServiceKey(req.Name), v.Encode()); err != nil {
		return Info{}, writeErr(err, "service", req.Name)
	}
	m.log.Info("service created", zap.String("network", network), zap.String("service", req.Name), zap.String("vip", vipList(vips)), zap.Strings("ports", req.Ports))
	m.changed()
	se, _ := m.find(network, req.Name)
	return m.info(se, nil, lb.Stats{}), nil
}

// givenVIPs checks the VIPs a create names, by family: each an address
// of the network's CIDR of its family, one per family, neither another
// service's nor leased.
func (m *Manager) givenVIPs(network string, nw ipam.Network, req Create, existing []svcEntry) (map[ipam.Family]netip.Addr, error) {
	all := req.VIPs
	if req.VIP != "" {
		all = append([]string{req.VIP}, all...)
	}
	out := map[ipam.Family]netip.Addr{}
	for _, s := range all {
		vip, err := netip.ParseAddr(s)
		if err != nil || vip.Zone() != "" {
			return nil, fault.Invalid("VIP %q is not an IP address", s)
		}
		vip = vip.Unmap()
		f := ipam.FamilyOf(vip)
		if _, dup := out[f]; dup {
			return nil, fault.Invalid("VIPs %v and %v are of one family; a service has at most one IPv4 and one IPv6 VIP", out[f], vip)
		}
		if len(nw.CIDRs) > 0 {
			if _, ok := nw.CIDR(f); !ok {
				return nil, fault.Invalid("VIP %v is %v, and network %q (%s) has no %v CIDR", vip, f, network, ipam.JoinCIDRs(nw.CIDRs), f)
			}
			if !nw.Contains(vip) {
				return nil, fault.Invalid("VIP %v is outside network %q (%s)", vip, network, ipam.JoinCIDRs(nw.CIDRs))
			}
		}
		for _, se := range existing {
			if slices.Contains(se.vips, vip) {
				return nil, fault.Conflict("VIP %v is taken by service %q", vip, se.v.Name)
			}
		}
		if l, ok := m.o.IPAM.Lookup(network, vip); ok {
			return nil, fault.Conflict("VIP %v is leased to %q on node %s", vip, l.Owner, l.Node)
		}
		out[f] = vip
	}
	return out, nil
}

// vipList is vips as "10.1.255.1,fd00:1::f000:0".
func vipList(vips []netip.Addr) string {
	s := make([]string, len(vips))
	for i, v := range vips {
		s[i] = v.String()
	}
	return strings.Join(s, ",")
}

// writeErr turns a gossip write error into one sentence for the user:
// another node's entry is a *fault.OwnerError naming that node.
func writeErr(err error, what, name string) error {
	if errors.Is(err, gossip.ErrNotOwner) {
		verb := "created"
		if what == "backend" {
			verb = "added"
		}
		oe := &gossip.OwnerError{}
		errors.As(err, &oe)
		return &fault.OwnerError{What: what + " " + name, Verb: verb, Owner: oe.Owner}
	}
	return fmt.Errorf("service: %s %s: %w", what, name, err)
}

// Remove deletes a service this node created, with the backends this
// node added to it, and releases its VIP.
func (m *Manager) Remove(network, name string) error {
	network, err := m.PickNetwork(network, name)
	if err != nil {
		return err
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	se, ok := m.find(network, name)
	if !ok {
		return fault.NotFound("no service %q on network %q", name, network)
	}
	g := m.o.Gossip
	if err := g.Delete(catalog.TableServices, network, name); err != nil {
		return writeErr(err, "service", name)
	}
	self := g.Name()
	for _, b := range se.backends {
		if b.owner == self {
			g.Delete(catalog.TableBackends, network, b.key)
		}
	}
	for _, vip := range se.vips {
		if l, ok := m.o.IPAM.Lookup(network, vip); ok && l.Node == self {
			if err := m.o.IPAM.Release(network, vip); err != nil {
				m.log.Warn("release VIP", zap.String("network", network), zap.Stringer("vip", vip), zap.Error(err))
			}
		}
	}
	m.log.Info("service removed", zap.String("network", network), zap.String("service", name))
	m.changed()
	return nil
}

// AddBackend adds a backend owned by this node to a service, or updates
// the weight and check of one it added.
func (m *Manager) AddBackend(req AddBackend) (Info, error) {
	network, err := m.PickNetwork(req.Network, req.Service)
	if err != nil {
		return Info{}, err
	}
	a, err := netip.ParseAddrPort(req.Addr)
	if err != nil || a.Port() == 0 || a.Addr().Zone() != "" {
		return Info{}, fault.Invalid("backend %q: want an overlay address and port such as 10.200.1.1:8080 or [fd00:10::3]:8080", req.Addr)
	}
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	if req.Weight > maxWeight {
		return Info{}, fault.Invalid("weight %d is out of range (0-%d)", req.Weight, maxWeight)
	}
	switch req.Check {
	case "none":
		req.Check = ""
	case "", "tcp", "udp":
	default:
		return Info{}, fault.Invalid("check %q: want tcp, udp or none", req.Check)
	}
	// A service created on another node a moment ago may still be on
	// its way here: wait for it without holding opMu.
	if !m.Has(network, req.Service) {
		m.waitService(network, req.Service)
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	se, ok := m.find(network, req.Service)
	if !ok {
		return Info{}, fault.NotFound("no service %q on network %q; create it with 'overlayd service create %s --network %s --port PORT/PROTO'", req.Service, network, req.Service, network)
	}
	if nw, ok := m.o.IPAM.Network(network); ok && !nw.Contains(a.Addr()) {
		return Info{}, fault.Invalid("backend %v is outside network %q (%s)", a, network, ipam.JoinCIDRs(nw.CIDRs))
	}
	if slices.Contains(se.vips, a.Addr()) {
		return Info{}, fault.Invalid("backend %v is the service's own VIP", a)
	}
	if !slices.ContainsFunc(se.vips, func(v netip.Addr) bool { return v.Is4() == a.Addr().Is4() }) {
		return Info{}, fault.Invalid("backend %v is %v and service %q has no VIP of that family (its VIP: %s); a backend serves the VIP of its family", a, ipam.FamilyOf(a.Addr()), req.Service, vipList(se.vips))
	}
	healthy := true
	key := catalog.BackendKey(req.Service, a)
	if e, ok := m.o.Gossip.Get(catalog.TableBackends, network, key); ok && e.Owner == m.o.Gossip.Name() {
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
		return Info{}, fault.Invalid("service %s: %v", req.Service, err)
	}
	if err := m.putBackend(network, key, catalog.Backend{Service: req.Service, Addr: a.String(), Weight: req.Weight, Healthy: healthy, Check: req.Check, Port: req.ServicePort}); err != nil {
		return Info{}, err
	}
	m.log.Info("backend added", zap.String("network", network), zap.String("service", req.Service), zap.Stringer("backend", a), zap.Uint32("weight", req.Weight), zap.String("check", cmp0(req.Check, "none")), zap.Uint16("service_port", req.ServicePort))
	m.changed()
	se, _ = m.find(network, req.Service)
	flows, st := m.figures()
	return m.info(se, flows, st), nil
}

// backendWait bounds how long a command waits for a backend entry that is
// not here (yet): one added on another node a moment ago may still be on
// its way.
const backendWait = 2 * time.Second

// lookupBackend returns the backends entry under key, including one whose
// owner this node does not yet know to take part in the network (so that
// a refusal can name its owner), waiting up to wait for one that has not
// arrived.
func (m *Manager) lookupBackend(network, key string, wait time.Duration) (gossip.Entry, bool) {
	g := m.o.Gossip
	find := func() (gossip.Entry, bool) {
		if e, ok := g.Get(catalog.TableBackends, network, key); ok {
			return e, true
		}
		for _, e := range g.ListAll(catalog.TableBackends, network) {
			if e.Key == key {
				return e, true
			}
		}
		return gossip.Entry{}, false
	}
	if e, ok := find(); ok || wait <= 0 {
		return e, ok
	}
	ch, cancel := g.Watch(catalog.TableBackends, network)
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
		case <-m.stop:
			return gossip.Entry{}, false
		}
	}
}

func (m *Manager) putBackend(network, key string, v catalog.Backend) error {
	if err := m.o.Gossip.Put(catalog.TableBackends, network, key, v.Encode()); err != nil {
		return writeErr(err, "backend", v.Addr)
	}
	return nil
}

// RemoveBackend deletes a backend this node added or, with drain, sets
// its weight to 0.
func (m *Manager) RemoveBackend(ref BackendRef, drain bool) (Info, error) {
	network, err := m.PickNetwork(ref.Network, ref.Service)
	if err != nil {
		return Info{}, err
	}
	a, err := netip.ParseAddrPort(ref.Addr)
	if err != nil {
		return Info{}, fault.Invalid("backend %q: want IP:PORT as listed by 'overlayd service show %s'", ref.Addr, ref.Service)
	}
	key := catalog.BackendKey(ref.Service, a)
	notFound := fault.NotFound("service %q on network %q has no backend %v", ref.Service, network, a)
	if _, ok := m.lookupBackend(network, key, backendWait); !ok { // without opMu: other writes go on meanwhile
		return Info{}, notFound
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	e, ok := m.lookupBackend(network, key, 0)
	if !ok {
		return Info{}, notFound
	}
	if e.Owner != m.o.Gossip.Name() {
		return Info{}, &fault.OwnerError{What: "backend " + a.String(), Verb: "added", Owner: e.Owner}
	}
	if drain {
		v, err := catalog.DecodeBackend(e.Value)
		if err != nil {
			return Info{}, fmt.Errorf("service: backend %v: %w", a, err)
		}
		v.Weight = 0
		if err := m.putBackend(network, key, v); err != nil {
			return Info{}, err
		}
		m.log.Info("backend draining", zap.String("network", network), zap.String("service", ref.Service), zap.Stringer("backend", a))
	} else {
		if err := m.o.Gossip.Delete(catalog.TableBackends, network, key); err != nil {
			return Info{}, writeErr(err, "backend", a.String())
		}
		m.log.Info("backend removed", zap.String("network", network), zap.String("service", ref.Service), zap.Stringer("backend", a))
	}
	m.changed()
	se, _ := m.find(network, ref.Service)
	flows, st := m.figures()
	return m.info(se, flows, st), nil
}

// unknownWait is how long adding a backend waits for a service this node
// does not know yet (as a join waits for a network): one created on
// another node a moment ago may still be on its way.
const unknownWait = 2 * time.Second

// waitService returns once network's tables hold the service name, or
// after unknownWait, or when the manager closes.
func (m *Manager) waitService(network, name string) {
	ch, cancel := m.o.Gossip.Watch(catalog.TableServices, network)
	defer cancel()
	t := time.NewTimer(unknownWait)
	defer t.Stop()
	if m.waiting != nil {
		m.waiting(network, name)
	}
	for !m.Has(network, name) {
		select {
		case _, open := <-ch:
			if !open {
				return // gossip closed
			}
		case <-t.C:
			return
		case <-m.stop:
			return
		}
	}
}
