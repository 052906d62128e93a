package router

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
)

// Route says that an overlay prefix lives behind a VTEP.
type Route struct {
	Prefix netip.Prefix   // overlay destinations, masked
	VTEP   netip.AddrPort // the underlay address that hosts them
	VNI    uint32         // the network the prefix belongs to
	Owner  string         // who declared it: "static" or a node name
}

func (r Route) String() string {
	return fmt.Sprintf("%v@%v vni %d (%s)", r.Prefix, r.VTEP, r.VNI, r.Owner)
}

// Network is an overlay network this router is attached to.
type Network struct {
	VNI uint32
	// Addrs are this node's addresses on the network, each with the
	// network's prefix length of its family: one per family, IPv4 first
	// (an IPv4-only or IPv6-only network has one). IPv4 addresses are
	// unmapped.
	Addrs []netip.Prefix
	// Local are other addresses of the attachment on the network (its
	// DNS addresses): an endpoint's packets to them are switched to the
	// attachment, as to Addrs.
	Local []netip.Addr
}

// network is a Network as the data path reads it: the node's address of
// each family apart.
type network struct {
	Network
	v4, v6 netip.Prefix // the node's address and prefix per family; the zero Prefix: none
	v6a    [16]byte     // v6's address as bytes (compared per packet); all zeros when none
}

// prefix returns the node's address and prefix of a's family on n, or
// the zero Prefix.
func (n *network) prefix(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return n.v4
	}
	return n.v6
}

// contains reports whether a is inside the network's prefix of its family.
func (n *network) contains(a netip.Addr) bool {
	return n.v4.Contains(a) || n.v6.Contains(a)
}

// isNode reports whether a is one of the node's own addresses on n.
func (n *network) isNode(a netip.Addr) bool {
	return a.IsValid() && (a == n.v4.Addr() || a == n.v6.Addr())
}

// holds reports whether a is the attachment's address on n.
func (n *network) holds(a netip.Addr) bool {
	return n.isNode(a) || slices.Contains(n.Local, a)
}

// table is an immutable routing snapshot: built by SetRoutes, read per
// packet without locks.
type table struct {
	routes []Route
	// extraPeers are the peers given to SetRoutes beside the routes.
	extraPeers []netip.AddrPort
	// levels holds one exact-match map per prefix length present, longest
	// first; a lookup tries each level once (IPv4 has at most 33).
	levels []level
	// peers is the set of underlay IPs that may send us VXLAN.
	peers map[netip.Addr]struct{}
	// vteps is every distinct VTEP per VNI, for flooding in L2 mode.
	vteps map[uint32][]netip.AddrPort
	// byIP maps an underlay IP to its VTEP when exactly one VTEP has that
	// IP, so a datagram's source can be told apart from its VTEP port.
	byIP map[netip.Addr]netip.AddrPort
	// vtepSet holds every VTEP, of routes and peers alike.
	vtepSet map[netip.AddrPort]struct{}
}

type level struct {
	bits int
	m    map[netip.Prefix]int // masked prefix -> index into routes
}

// buildTable validates routes and returns a snapshot. Later duplicates of
// the same prefix replace earlier ones only if they are the same route; two
// different VTEPs for one prefix is an error.
func buildTable(routes []Route, extraPeers []netip.AddrPort) (*table, error) {
	t := &table{
		extraPeers: append([]netip.AddrPort(nil), extraPeers...),
		peers:      make(map[netip.Addr]struct{}),
		vteps:      make(map[uint32][]netip.AddrPort),
		byIP:       make(map[netip.Addr]netip.AddrPort),
		vtepSet:    make(map[netip.AddrPort]struct{}),
	}
	seen := make(map[netip.Prefix]int)
	byBits := make(map[int]map[netip.Prefix]int)
	for _, r := range routes {
		if !r.Prefix.IsValid() {
			return nil, fmt.Errorf("router: route %v: invalid prefix", r)
		}
		if !r.VTEP.IsValid() || r.VTEP.Port() == 0 {
			return nil, fmt.Errorf("router: route %v: invalid VTEP address", r)
		}
		r.Prefix = r.Prefix.Masked()
		r.VTEP = netip.AddrPortFrom(r.VTEP.Addr().Unmap(), r.VTEP.Port())
		if i, ok := seen[r.Prefix]; ok {
			if t.routes[i].VTEP != r.VTEP {
				return nil, fmt.Errorf("router: prefix %v is routed to both %v and %v", r.Prefix, t.routes[i].VTEP, r.VTEP)
			}
			continue
		}
		seen[r.Prefix] = len(t.routes)
		m := byBits[r.Prefix.Bits()]
		if m == nil {
			m = make(map[netip.Prefix]int)
			byBits[r.Prefix.Bits()] = m
		}
		m[r.Prefix] = len(t.routes)
		t.routes = append(t.routes, r)
	}
	for bits, m := range byBits {
		t.levels = append(t.levels, level{bits: bits, m: m})
	}
	sort.Slice(t.levels, func(i, j int) bool { return t.levels[i].bits > t.levels[j].bits })

	ambiguous := make(map[netip.Addr]bool)
	addVTEP := func(vni uint32, v netip.AddrPort, flood bool) {
		t.peers[v.Addr()] = struct{}{}
		t.vtepSet[v] = struct{}{}
		if prev, ok := t.byIP[v.Addr()]; ok && prev != v {
			ambiguous[v.Addr()] = true
		}
		t.byIP[v.Addr()] = v
		if flood && !slices.Contains(t.vteps[vni], v) {
			t.vteps[vni] = append(t.vteps[vni], v)
		}
	}
	for _, r := range t.routes {
		addVTEP(r.VNI, r.VTEP, true)
	}
	for _, v := range extraPeers {
		addVTEP(0, netip.AddrPortFrom(v.Addr().Unmap(), v.Port()), false)
	}
	for a := range ambiguous {
		delete(t.byIP, a)
	}
	return t, nil
}

// lookup returns the longest-prefix route for dst. It allocates nothing.
func (t *table) lookup(dst netip.Addr) (*Route, bool) {
	for i := range t.levels {
		l := &t.levels[i]
		if l.bits > dst.BitLen() {
			continue
		}
		p, err := dst.Prefix(l.bits)
		if err != nil {
			continue
		}
		if idx, ok := l.m[p]; ok {
			return &t.routes[idx], true
		}
	}
	return nil, false
}

// isPeer reports whether src may send us VXLAN.
func (t *table) isPeer(src netip.AddrPort) bool {
	_, ok := t.peers[src.Addr().Unmap()]
	return ok
}

// vtepOf names the VTEP a datagram from src came from: src itself if it is
// a VTEP, else the only VTEP with src's IP (a peer that sends from per-flow
// source ports), else false.
func (t *table) vtepOf(src netip.AddrPort) (netip.AddrPort, bool) {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	v, ok := t.byIP[src.Addr()]
	if ok {
		return v, true
	}
	for _, vs := range t.vteps {
		if slices.Contains(vs, src) {
			return src, true
		}
	}
	return netip.AddrPort{}, false
}

// owns reports whether src, the source of a datagram, may speak for ip:
// it must be the VTEP that ip's route names, or a per-flow source port
// of it (same IP, a port that is no other VTEP's). An address without a
// route is owned by nobody. Nodes that share one underlay IP (rootless
// nodes on one host) are told apart only when they send from their VTEP
// port.
func (t *table) owns(ip netip.Addr, src netip.AddrPort) bool {
	rt, ok := t.lookup(ip)
	if !ok {
		return false
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if src == rt.VTEP {
		return true
	}
	if src.Addr() != rt.VTEP.Addr() {
		return false
	}
	_, other := t.vtepSet[src]
	return !other
}
