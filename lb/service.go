package lb

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"

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
	// table. Empty means Addr.String().
	ID string
	// Addr is the backend's overlay address. Port 0 means "the port the
	// client connected to", for services with several ports.
	Addr netip.AddrPort
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

// svcID identifies a service across snapshots.
type svcID struct{ network, name string }

// fkey is a frontend: VIP, port and protocol.
type fkey struct {
	vip   [4]byte
	port  uint16
	proto uint8
}

// backend is the per-backend state shared by every snapshot in which the
// backend (same service, ID and address) is present, and by the flows
// pinned to it.
type backend struct {
	network, service, id string
	addr                 [4]byte
	port                 uint16 // 0: keep the client's destination port

	removed    atomic.Bool   // set once the backend has left the service
	selections atomic.Uint64 // new flows that picked this backend
}

// service is one service in a snapshot.
type service struct {
	id       svcID
	vip      [4]byte
	ports    []PortProto
	table    *maglev.Table
	backends []*backend // aligned with table.Backends()
}

// snapshot is the immutable service configuration read per packet.
type snapshot struct {
	services  map[svcID]*service
	order     []*service // sorted by network, name
	frontends map[fkey]*service
	// vips and backendIPs are the prefilters of Outbound and Inbound. They
	// hold the current VIPs and backend addresses (value -1) and, for
	// maxTimeout after their removal, former ones (value: removal time), so
	// flows through a removed service still get a prompt Reset.
	vips       map[[4]byte]int64
	backendIPs map[[4]byte]int64
}

var emptySnapshot = &snapshot{
	services:   map[svcID]*service{},
	frontends:  map[fkey]*service{},
	vips:       map[[4]byte]int64{},
	backendIPs: map[[4]byte]int64{},
}

// Set replaces the whole service configuration with services. It is
// idempotent and safe to call concurrently with packet processing: packets
// see either the old or the new configuration. A service whose backends
// did not change keeps its Maglev table; flows keep their backend for as
// long as that backend stays in its service, and get Reset once it leaves.
// Services of other networks are ignored when Options.Network is set. On
// error nothing changes.
func (b *Balancer) Set(services []Service) error {
	b.setMu.Lock()
	defer b.setMu.Unlock()
	old := b.snap.Load()
	now := b.nanos()
	next := &snapshot{
		services:   make(map[svcID]*service, len(services)),
		frontends:  make(map[fkey]*service),
		vips:       make(map[[4]byte]int64),
		backendIPs: make(map[[4]byte]int64),
	}
	kept := make(map[*backend]bool)
	for i := range services {
		s := &services[i]
		if b.opts.Network != "" && s.Network != b.opts.Network {
			continue
		}
		svc, err := b.buildService(s, old)
		if err != nil {
			return fmt.Errorf("lb: service %q: %w", s.Network+"/"+s.Name, err)
		}
		if _, dup := next.services[svc.id]; dup {
			return fmt.Errorf("lb: service %q: defined twice", s.Network+"/"+s.Name)
		}
		next.services[svc.id] = svc
		next.order = append(next.order, svc)
		for _, p := range svc.ports {
			k := fkey{svc.vip, p.Port, uint8(p.Proto)}
			if other, dup := next.frontends[k]; dup {
				return fmt.Errorf("lb: service %q: %v %v is already served by %q", s.Network+"/"+s.Name, s.VIP, p, other.id.network+"/"+other.id.name)
			}
			next.frontends[k] = svc
		}
		next.vips[svc.vip] = -1
		for _, be := range svc.backends {
			next.backendIPs[be.addr] = -1
			kept[be] = true
		}
	}
	slices.SortFunc(next.order, func(a, b *service) int {
		return cmp.Or(cmp.Compare(a.id.network, b.id.network), cmp.Compare(a.id.name, b.id.name))
	})
	retire := func(dst, prev map[[4]byte]int64) {
		for a, t := range prev {
			if _, live := dst[a]; live {
				continue
			}
			if t < 0 {
				dst[a] = now
			} else if now-t < b.maxTimeout {
				dst[a] = t
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
	return nil
}

// buildService validates s and builds its snapshot entry, reusing the
// table and backend state of the same service in old where possible.
func (b *Balancer) buildService(s *Service, old *snapshot) (*service, error) {
	if s.Name == "" {
		return nil, errors.New("empty name")
	}
	vip := s.VIP.Unmap()
	if !vip.Is4() {
		return nil, fmt.Errorf("VIP %v is not an IPv4 address", s.VIP)
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
	mbs := make([]maglev.Backend, len(s.Backends))
	addrs := make(map[string]netip.AddrPort, len(s.Backends))
	for i, be := range s.Backends {
		a := netip.AddrPortFrom(be.Addr.Addr().Unmap(), be.Addr.Port())
		if !a.Addr().Is4() {
			return nil, fmt.Errorf("backend %v is not an IPv4 address", be.Addr)
		}
		id := be.ID
		if id == "" {
			id = a.String()
		}
		if _, dup := addrs[id]; dup {
			return nil, fmt.Errorf("backend %q listed twice", id)
		}
		addrs[id] = a
		mbs[i] = maglev.Backend{ID: id, Weight: be.Weight}
	}
	svc := &service{id: svcID{s.Network, s.Name}, vip: vip.As4(), ports: ports}
	prev := old.services[svc.id]
	if prev != nil && prev.table.Size() == b.tableSize && sameBackends(prev, mbs, addrs) {
		svc.table, svc.backends = prev.table, prev.backends
		return svc, nil
	}
	t, err := maglev.New(mbs, b.tableSize)
	if err != nil {
		return nil, err
	}
	svc.table = t
	var prevByID map[string]*backend
	if prev != nil {
		prevByID = make(map[string]*backend, len(prev.backends))
		for _, pb := range prev.backends {
			prevByID[pb.id] = pb
		}
	}
	svc.backends = make([]*backend, len(t.Backends()))
	for i, mb := range t.Backends() {
		a := addrs[mb.ID]
		if pb := prevByID[mb.ID]; pb != nil && pb.addr == a.Addr().As4() && pb.port == a.Port() {
			svc.backends[i] = pb
		} else {
			svc.backends[i] = &backend{network: s.Network, service: s.Name, id: mb.ID, addr: a.Addr().As4(), port: a.Port()}
		}
	}
	return svc, nil
}

// sameBackends reports whether prev was built from exactly these backends.
func sameBackends(prev *service, mbs []maglev.Backend, addrs map[string]netip.AddrPort) bool {
	pbs := prev.table.Backends()
	if len(pbs) != len(mbs) {
		return false
	}
	for _, mb := range mbs {
		i, found := slices.BinarySearchFunc(pbs, mb.ID, func(x maglev.Backend, id string) int { return cmp.Compare(x.ID, id) })
		if !found || pbs[i].Weight != mb.Weight {
			return false
		}
		a, pb := addrs[mb.ID], prev.backends[i]
		if pb.addr != a.Addr().As4() || pb.port != a.Port() {
			return false
		}
	}
	return true
}
