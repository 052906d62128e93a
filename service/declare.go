package service

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/lb"
)

// Declared is a service as a declarative description gives it ('overlayd
// apply -f FILE', the services section of the configuration). Line is its
// line in the file (0: none); errors name it.
type Declared struct {
	Name    string
	Network string
	VIP     string
	Ports   []string // none: a service created elsewhere, not created here
	// Backends are this node's backends of the service; nil leaves them
	// alone.
	Backends []DeclaredBackend
	Line     int
}

// DeclaredBackend is one backend of this node: Addr is IP:PORT, or :PORT
// for the node's own address on the service's network.
type DeclaredBackend struct {
	Addr        string
	Weight      uint32
	Check       string // tcp, udp, none or ""
	ServicePort uint16
	Line        int
}

// Declare makes the service sv describes exist: it creates a missing one
// (which needs ports), checks that an existing one has the VIP and ports
// given, and, when sv lists backends, makes this node's backends of it
// exactly those, but for the backends keep reports (an expose's, say).
// changed is told each change, one line each.
func (m *Manager) Declare(ctx context.Context, sv Declared, keep func(network, key string) bool, changed func(format string, args ...any)) error {
	what := "service " + sv.Name
	network, err := m.PickNetwork(sv.Network, sv.Name)
	if err != nil {
		return fault.AtLine(sv.Line, what, err)
	}
	se, ok := m.find(network, sv.Name)
	if !ok && len(sv.Ports) == 0 {
		return fault.AtLine(sv.Line, what, fault.NotFound("no service %q on network %q (yet); give its ports to create it here", sv.Name, network))
	}
	if !ok {
		info, err := m.Create(ctx, Create{Name: sv.Name, Network: network, Ports: sv.Ports, VIP: sv.VIP})
		if err != nil {
			return fault.AtLine(sv.Line, what, err)
		}
		changed("service %s: created on network %s (VIP %s, ports %s)", sv.Name, network, strings.Join(info.VIPs, ","), strings.Join(info.Ports, " "))
		if se, ok = m.find(network, sv.Name); !ok {
			return fault.AtLine(sv.Line, what, errors.New("service: created but not found in the service table"))
		}
	} else if err := sameService(se, sv); err != nil {
		return fault.AtLine(sv.Line, what, err)
	}
	if sv.Backends == nil {
		return nil
	}
	return m.declareBackends(network, se, sv, keep, changed)
}

// sameService checks that an existing service is the one the request
// describes: a VIP or ports that differ are not changed by Declare.
func sameService(se svcEntry, sv Declared) error {
	hint := fmt.Sprintf("remove it with 'overlayd service rm %s' on node %s to change it", sv.Name, se.owner)
	if a, err := netip.ParseAddr(sv.VIP); sv.VIP != "" && (err != nil || !slices.Contains(se.vips, a.Unmap())) {
		return fault.Conflict("exists with VIP %s, not %s; %s", vipList(se.vips), sv.VIP, hint)
	}
	if len(sv.Ports) == 0 {
		return nil // created elsewhere; its ports are its creator's
	}
	var want []lb.PortProto
	for _, p := range sv.Ports {
		pp, err := parsePort(p)
		if err != nil {
			return fault.Invalid("%v", err)
		}
		want = append(want, pp)
	}
	have := slices.Clone(se.ports)
	cmp := func(a, b lb.PortProto) int { return strings.Compare(a.String(), b.String()) }
	slices.SortFunc(want, cmp)
	slices.SortFunc(have, cmp)
	if !slices.Equal(slices.Compact(want), have) {
		hs := make([]string, len(have))
		for i, p := range have {
			hs[i] = p.String()
		}
		return fault.Conflict("exists with ports %s, not %s; %s", strings.Join(hs, " "), strings.Join(sv.Ports, " "), hint)
	}
	return nil
}

// declareBackends makes this node's backends of se exactly sv.Backends.
func (m *Manager) declareBackends(network string, se svcEntry, sv Declared, keep func(network, key string) bool, changed func(string, ...any)) error {
	var self []netip.Addr // this node's addresses there, of the families the service has VIPs of
	for _, j := range m.o.Networks() {
		if j.Name == network {
			for _, a := range j.Addrs {
				if slices.ContainsFunc(se.vips, func(v netip.Addr) bool { return v.Is4() == a.Is4() }) {
					self = append(self, a)
				}
			}
		}
	}
	type want struct {
		b    DeclaredBackend
		addr netip.AddrPort
	}
	var wants []want
	for _, b := range sv.Backends {
		if b.Check == "none" {
			b.Check = ""
		}
		if port, ok := strings.CutPrefix(b.Addr, ":"); ok && len(self) > 0 {
			// This node's address of each family the service has a VIP
			// of: a dual-stack service gets one backend per family.
			p, err := strconv.ParseUint(port, 10, 16)
			if err != nil || p == 0 {
				return fault.AtLine(b.Line, "service "+sv.Name+": backend "+b.Addr, fault.Invalid("want an overlay IP:PORT, or :PORT for this node's address"))
			}
			for _, a := range self {
				wants = append(wants, want{b, netip.AddrPortFrom(a, uint16(p))})
			}
			continue
		}
		a, err := netip.ParseAddrPort(b.Addr)
		if err != nil || a.Port() == 0 || a.Addr().Zone() != "" {
			return fault.AtLine(b.Line, "service "+sv.Name+": backend "+b.Addr, fault.Invalid("want an overlay IP:PORT, or :PORT for this node's address"))
		}
		wants = append(wants, want{b, netip.AddrPortFrom(a.Addr().Unmap(), a.Port())})
	}
	selfName := m.o.Gossip.Name()
	cur := map[netip.AddrPort]bkEntry{}
	for _, b := range se.backends {
		if b.owner == selfName {
			cur[b.addr] = b
		}
	}
	for _, w := range wants {
		c, exists := cur[w.addr]
		delete(cur, w.addr)
		samePort := w.b.ServicePort == 0 || c.v.Port == w.b.ServicePort
		if exists && c.v.Weight == w.b.Weight && c.v.Check == w.b.Check && samePort {
			continue
		}
		if _, err := m.AddBackend(AddBackend{Service: sv.Name, Network: network, Addr: w.addr.String(), Weight: w.b.Weight, Check: w.b.Check, ServicePort: w.b.ServicePort}); err != nil {
			return fault.AtLine(w.b.Line, "service "+sv.Name+": backend "+w.addr.String(), err)
		}
		switch {
		case !exists:
			changed("service %s: backend %v added (weight %d, check %s)", sv.Name, w.addr, w.b.Weight, cmp0(w.b.Check, "none"))
		case !samePort:
			changed("service %s: backend %v serves port %d (was %d)", sv.Name, w.addr, w.b.ServicePort, c.v.Port)
		case c.v.Weight != w.b.Weight && c.v.Check != w.b.Check:
			changed("service %s: backend %v weight %d → %d, check %s → %s", sv.Name, w.addr, c.v.Weight, w.b.Weight, cmp0(c.v.Check, "none"), cmp0(w.b.Check, "none"))
		case c.v.Weight != w.b.Weight:
			changed("service %s: backend %v weight %d → %d", sv.Name, w.addr, c.v.Weight, w.b.Weight)
		default:
			changed("service %s: backend %v check %s → %s", sv.Name, w.addr, cmp0(c.v.Check, "none"), cmp0(w.b.Check, "none"))
		}
	}
	stale := make([]netip.AddrPort, 0, len(cur))
	for a := range cur {
		stale = append(stale, a)
	}
	slices.SortFunc(stale, netip.AddrPort.Compare)
	for _, a := range stale {
		if keep != nil && keep(network, catalog.BackendKey(sv.Name, a)) {
			continue
		}
		if _, err := m.RemoveBackend(BackendRef{Service: sv.Name, Network: network, Addr: a.String()}, false); err != nil {
			return fault.AtLine(sv.Line, "service "+sv.Name+": backend "+a.String(), err)
		}
		changed("service %s: backend %v removed", sv.Name, a)
	}
	return nil
}
