package lb

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/lb/maglev"
)

// Proto is an IP transport protocol number.
type Proto uint8

// The transport protocols a service port can use.
const (
	TCP Proto = 6
	UDP Proto = 17
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto-" + strconv.Itoa(int(p))
}

// PortProto is one port of a service, such as 80/tcp.
type PortProto struct {
	Port  uint16
	Proto Proto
}

func (p PortProto) String() string { return strconv.Itoa(int(p.Port)) + "/" + p.Proto.String() }

// Backend is one instance behind a service.
type Backend struct {
	// ID identifies the backend stably on every node; it orders the Maglev
	// tables. Empty means Addr.String().
	ID string
	// Addr is the backend's overlay address. Port 0 means "the port the
	// client connected to".
	Addr netip.AddrPort
	// Ports are the service ports the backend serves: a new flow to
	// VIP:PORT only ever picks a backend whose Ports hold PORT (each port
	// has a Maglev table of its own). Empty means every port of the
	// service. Every port listed must be one of the service's.
	Ports []PortProto
	// Weight is the backend's relative share of new flows. 0 means
	// draining: no new flows, existing ones continue.
	Weight uint32
}

// Service is a VIP with ports, balanced over backends.
type Service struct {
	Network  string // overlay network; see Options.Network
	Name     string // unique within the network
	VIP      netip.Addr
	Ports    []PortProto
	Backends []Backend
}

// Rejected is a service that Set left out, and why.
type Rejected struct {
	Network, Name string
	Err           error
}

// SetError is the error of a Set that left services out; every other
// service was published.
type SetError struct {
	Rejected []Rejected // in the order of Set's argument
}

func (e *SetError) Error() string {
	var b strings.Builder
	for i, r := range e.Rejected {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "lb: service %q: %v", r.Network+"/"+r.Name, r.Err)
	}
	return b.String()
}

// svcID identifies a service across snapshots.
type svcID struct{ network, name string }

// fkey is a frontend: VIP, port and protocol.
type fkey struct {
	vip   [16]byte // IPv4-mapped for IPv4, as in packet.Tuple
	port  uint16
	proto uint8
}

// backend is the per-backend state shared by every snapshot in which the
// backend (same service, ID, address and ports) is present, and by the
// flows pinned to it.
type backend struct {
	network, service, id string
	addr                 [16]byte    // IPv4-mapped for IPv4
	port                 uint16      // 0: keep the client's destination port
	ports                []PortProto // the service ports it serves, resolved (never empty)

	removed    atomic.Bool   // set once the backend has left the service
	selections atomic.Uint64 // new flows that picked this backend
}

// portTable is the Maglev table of one port of a service.
type portTable struct {
	svc      *service
	port     PortProto
	table    *maglev.Table
	backends []*backend // aligned with table.Backends()
}

// service is one service in a snapshot.
type service struct {
	id       svcID
	vip      [16]byte
	ports    []PortProto
	tables   []*portTable // aligned with ports
	backends []*backend   // every backend, ordered by ID
	weights  []uint32     // aligned with backends
}

// snapshot is the immutable service configuration read per packet.
type snapshot struct {
	services  map[svcID]*service
	order     []*service // sorted by network, name
	frontends map[fkey]*portTable
	// vips and backendIPs are the prefilters of Outbound and Inbound. They
	// hold the current VIPs and backend addresses (value -1) and, for
	// maxTimeout after their removal, former ones (value: removal time), so
	// flows through a removed service still get a prompt Reset.
	vips       addrSet
	backendIPs addrSet
}

var emptySnapshot = &snapshot{
	services:   map[svcID]*service{},
	frontends:  map[fkey]*portTable{},
	vips:       newAddrSet(),
	backendIPs: newAddrSet(),
}

// Set replaces the whole service configuration with services, published
// as one snapshot. It is idempotent and safe to call concurrently with
// packet processing: packets see either the old or the new configuration.
// A port of a service whose backends did not change keeps its Maglev
// table; flows keep their backend for as long as that backend stays in
// its service, and get Reset once it leaves. Services of other networks
// are ignored when Options.Network is set.
//
// A service that is not valid, or that names a VIP port or a service
// name taken by a service earlier in the list, is left out alone: every
// other service is published all the same (their flows are never
// disturbed by it), and the returned *SetError names what was left out.
func (b *Balancer) Set(services []Service) error {
	b.setMu.Lock()
	defer b.setMu.Unlock()
	old := b.snap.Load()
	now := b.nanos()
	next := &snapshot{
		services:   make(map[svcID]*service, len(services)),
		frontends:  make(map[fkey]*portTable),
		vips:       newAddrSet(),
		backendIPs: newAddrSet(),
	}
	var serr SetError
	kept := make(map[*backend]bool)
	for i := range services {
		s := &services[i]
		if b.opts.Network != "" && s.Network != b.opts.Network {
			continue
		}
		svc, err := b.buildService(s, old)
		if err == nil {
			err = next.conflict(svc)
		}
		if err != nil {
			serr.Rejected = append(serr.Rejected, Rejected{Network: s.Network, Name: s.Name, Err: err})
			continue
		}
		next.services[svc.id] = svc
		next.order = append(next.order, svc)
		for _, pt := range svc.tables {
			next.frontends[fkey{svc.vip, pt.port.Port, uint8(pt.port.Proto)}] = pt
		}
		next.vips.set(svc.vip, -1)
		for _, be := range svc.backends {
			next.backendIPs.set(be.addr, -1)
			kept[be] = true
		}
	}
	slices.SortFunc(next.order, func(a, b *service) int {
		return cmp.Or(cmp.Compare(a.id.network, b.id.network), cmp.Compare(a.id.name, b.id.name))
	})
	retire := func(dst, prev addrSet) {
		for a, t := range prev.all() {
			if dst.has(&a) {
				continue
			}
			if t < 0 {
				dst.set(a, now)
			} else if now-t < b.maxTimeout {
				dst.set(a, t)
			}
		}
	}
	retire(next.vips, old.vips)
	retire(next.backendIPs, old.backendIPs)
	b.snap.Store(next)
	for _, svc := range old.order {
		for _, be := range svc.backends {
			if !kept[be] {
				be.removed.Store(true)
			}
		}
	}
	if len(serr.Rejected) > 0 {
		return &serr
	}
	return nil
}

// conflict reports whether svc cannot join snapshot s: its name or one of
// its VIP ports is taken already.
func (s *snapshot) conflict(svc *service) error {
	if _, dup := s.services[svc.id]; dup {
		return errors.New("defined twice")
	}
	for _, p := range svc.ports {
		if other := s.frontends[fkey{svc.vip, p.Port, uint8(p.Proto)}]; other != nil {
			return fmt.Errorf("%v %v is already served by %q", netip.AddrFrom16(svc.vip).Unmap(), p, other.svc.id.network+"/"+other.svc.id.name)
		}
	}
	return nil
}

// buildService validates s and builds its snapshot entry, reusing the
// tables and backend state of the same service in old where possible.
func (b *Balancer) buildService(s *Service, old *snapshot) (*service, error) {
	if s.Name == "" {
		return nil, errors.New("empty name")
	}
	vip := s.VIP.Unmap()
	if !vip.IsValid() || vip.Zone() != "" {
		return nil, fault.Invalid("VIP %v is not an IPv4 or IPv6 address without a zone", s.VIP)
	}
	if len(s.Ports) == 0 {
		return nil, errors.New("no ports")
	}
	ports := slices.Clone(s.Ports)
	for i, p := range ports {
		if p.Port == 0 || (p.Proto != TCP && p.Proto != UDP) {
			return nil, fmt.Errorf("port %v: want a non-zero tcp or udp port", p)
		}
		if slices.Contains(ports[:i], p) {
			return nil, fmt.Errorf("port %v listed twice", p)
		}
	}
	svc := &service{id: svcID{s.Network, s.Name}, vip: vip.As16(), ports: ports}
	prev := old.services[svc.id]
	var prevByID map[string]*backend
	if prev != nil {
		prevByID = make(map[string]*backend, len(prev.backends))
		for _, pb := range prev.backends {
			prevByID[pb.id] = pb
		}
	}
	weights := make(map[*backend]uint32, len(s.Backends))
	ids := make(map[string]bool, len(s.Backends))
	for _, be := range s.Backends {
		a := netip.AddrPortFrom(be.Addr.Addr().Unmap(), be.Addr.Port())
		if !a.Addr().IsValid() || a.Addr().Zone() != "" {
			return nil, fault.Invalid("backend %v is not an IPv4 or IPv6 address without a zone", be.Addr)
		}
		if a.Addr().Is4() != vip.Is4() {
			return nil, fault.Invalid("backend %v is %s but VIP %v is %s: a service and its backends are of one family (a dual-stack service is two services, one per family)",
				a, family(a.Addr()), vip, family(vip))
		}
		id := cmp.Or(be.ID, a.String())
		if ids[id] {
			return nil, fmt.Errorf("backend %q listed twice", id)
		}
		ids[id] = true
		served := ports
		if len(be.Ports) > 0 {
			served = nil
			for _, p := range be.Ports {
				if !slices.Contains(ports, p) {
					return nil, fmt.Errorf("backend %q serves port %v, which the service does not have", id, p)
				}
				if !slices.Contains(served, p) {
					served = append(served, p)
				}
			}
			// In the service's order, so that equal sets compare equal.
			served = slices.DeleteFunc(slices.Clone(ports), func(p PortProto) bool { return !slices.Contains(served, p) })
		}
		nb := &backend{network: s.Network, service: s.Name, id: id, addr: a.Addr().As16(), port: a.Port(), ports: served}
		if pb := prevByID[id]; pb != nil && pb.addr == nb.addr && pb.port == nb.port && slices.Equal(pb.ports, nb.ports) {
			nb = pb
		}
		svc.backends = append(svc.backends, nb)
		weights[nb] = be.Weight
	}
	slices.SortFunc(svc.backends, func(x, y *backend) int { return cmp.Compare(x.id, y.id) })
	svc.weights = make([]uint32, len(svc.backends))
	for i, be := range svc.backends {
		svc.weights[i] = weights[be]
	}
	for _, p := range ports {
		var mbs []maglev.Backend
		var bes []*backend
		for j, be := range svc.backends {
			if slices.Contains(be.ports, p) {
				mbs = append(mbs, maglev.Backend{ID: be.id, Weight: svc.weights[j]})
				bes = append(bes, be)
			}
		}
		pt := &portTable{svc: svc, port: p, backends: bes}
		// Reuse the table of the same port before, or of another port
		// with the same backends (53/tcp and 53/udp, say).
		if pp := prev.portTable(p); pp != nil && pp.table.Size() == b.tableSize && sameBackends(pp, mbs, bes) {
			pt.table = pp.table
		} else if i := slices.IndexFunc(svc.tables, func(o *portTable) bool { return sameBackends(o, mbs, bes) }); i >= 0 {
			pt.table = svc.tables[i].table
		} else {
			t, err := maglev.New(mbs, b.tableSize)
			if err != nil {
				return nil, fmt.Errorf("port %v: %w", p, err)
			}
			pt.table = t
		}
		svc.tables = append(svc.tables, pt)
	}
	return svc, nil
}

// family names a's address family, for errors.
func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// portTable returns the table of port p of s (nil s: none).
func (s *service) portTable(p PortProto) *portTable {
	if s == nil {
		return nil
	}
	for _, pt := range s.tables {
		if pt.port == p {
			return pt
		}
	}
	return nil
}

// sameBackends reports whether prev's table was built from exactly these
// backends (mbs and bes are aligned and ordered by ID, as a table's
// backends are).
func sameBackends(prev *portTable, mbs []maglev.Backend, bes []*backend) bool {
	pbs := prev.table.Backends()
	if len(pbs) != len(mbs) {
		return false
	}
	for i, mb := range mbs {
		if pbs[i] != mb || prev.backends[i] != bes[i] {
			return false
		}
	}
	return true
}
