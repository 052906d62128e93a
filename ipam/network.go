package ipam

// This file holds networks: their definition, cluster-wide, and their
// address layout (families, pools, offsets), and taking part in one.

import (
	"encoding/binary"
	"fmt"
	"math/big"
	"net/netip"
	"strings"

	"github.com/overlayd/overlayd/gossip"
)

// Family is an address family of a network: IPv4 or IPv6.
type Family uint8

// The families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// FamilyOf is a's family (an IPv4-mapped IPv6 address is IPv4).
func FamilyOf(a netip.Addr) Family {
	if a.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

// Families are the families of cidrs, in their order.
func Families(cidrs []netip.Prefix) []Family {
	out := make([]Family, len(cidrs))
	for i, c := range cidrs {
		out[i] = FamilyOf(c.Addr())
	}
	return out
}

// maxOffsetBits bounds a family's offset space: an IPv6 /64 has 64 host
// bits, of which only the low 32 are handed out (the offsets).
const maxOffsetBits = 32

// The prefix lengths an IPv6 CIDR may have: at least 64 addresses, as
// for IPv4; of a prefix of more than 32 host bits (a /64) only the low 32
// are handed out.
const (
	MinBits6 = 48
	MaxBits6 = 122
)

// fam is one family's address arithmetic, in offsets from its CIDR's
// first address.
type fam struct {
	cidr      netip.Prefix
	node, vip byte   // its pools
	size      uint64 // offsets [0, size)
	nodeLo    uint64 // node pool [nodeLo, vipLo)
	vipLo     uint64 // VIP pool [vipLo, vipHi)
	vipHi     uint64
	base      *big.Int
}

// layout is a network's address arithmetic: one fam per CIDR.
type layout struct {
	Network
	fams []fam
}

// slot is an address as an offset of its family.
type slot struct {
	v6  bool
	off uint64
}

// Pools by family.
func poolFamily(p byte) Family {
	if p == poolNode6 || p == poolVIP6 {
		return IPv6
	}
	return IPv4
}

// CheckCIDRs checks a network's CIDRs as ipam lays them out: one or two,
// at most one per family, each with 6 or more host bits (IPv4 at most 32,
// IPv6 from /48 to /122, of which the low 32 host bits are used). It
// returns them masked, IPv4 first.
func CheckCIDRs(cidrs []netip.Prefix) ([]netip.Prefix, error) {
	var v4, v6 netip.Prefix
	for _, c := range cidrs {
		switch {
		case !c.IsValid():
			return nil, fmt.Errorf("ipam: CIDR %v is not a prefix", c)
		case c.Addr().Is4() && v4.IsValid(), c.Addr().Is6() && v6.IsValid():
			return nil, fmt.Errorf("ipam: CIDRs %v: at most one of each family", cidrs)
		case c.Addr().Is4() && c.Bits() > 32-6:
			return nil, fmt.Errorf("ipam: CIDR %v must have 6 to 32 host bits", c)
		case c.Addr().Is6() && (c.Addr().Is4In6() || c.Bits() < MinBits6 || c.Bits() > MaxBits6):
			return nil, fmt.Errorf("ipam: IPv6 CIDR %v must be between /%d and /%d", c, MinBits6, MaxBits6)
		case c.Addr().Is4():
			v4 = c.Masked()
		default:
			v6 = c.Masked()
		}
	}
	var out []netip.Prefix
	for _, c := range []netip.Prefix{v4, v6} {
		if c.IsValid() {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ipam: a network needs a CIDR")
	}
	return out, nil
}

func newLayout(n Network) (*layout, error) {
	cidrs, err := CheckCIDRs(n.CIDRs)
	if err != nil {
		return nil, fmt.Errorf("ipam: network %q: %s", n.Name, unprefix(err))
	}
	l := &layout{Network: n}
	l.CIDRs, l.DNS = cidrs, nil
	for _, c := range cidrs {
		hostBits := c.Addr().BitLen() - c.Bits()
		f := fam{cidr: c, size: 1 << min(hostBits, maxOffsetBits), node: poolNode, vip: poolVIP}
		f.base = new(big.Int).SetBytes(c.Addr().AsSlice())
		f.vipLo = f.size - max(f.size/16, 16)
		f.vipHi = f.size
		if c.Addr().Is4() {
			f.vipHi-- // broadcast
		} else {
			f.node, f.vip = poolNode6, poolVIP6
		}
		f.nodeLo = 2
		l.fams = append(l.fams, f)
		l.DNS = append(l.DNS, DNSAddr(c))
	}
	return l, nil
}

func unprefix(err error) string { return strings.TrimPrefix(err.Error(), "ipam: ") }

// DNSAddr is the DNS address of a network with CIDR cidr: its first
// usable address, which ipam never hands out (offset 1; nodes start at 2).
// A dual-stack network has one per family.
func DNSAddr(cidr netip.Prefix) netip.Addr { return cidr.Masked().Addr().Next() }

// family returns the layout of family f, if the network has it.
func (l *layout) family(f Family) (*fam, bool) {
	for i := range l.fams {
		if FamilyOf(l.fams[i].cidr.Addr()) == f {
			return &l.fams[i], true
		}
	}
	return nil, false
}

// addr is the address at offset off of family v6.
func (l *layout) addr(v6 bool, off uint64) netip.Addr {
	x := IPv4
	if v6 {
		x = IPv6
	}
	f, _ := l.family(x)
	v := new(big.Int).Add(f.base, new(big.Int).SetUint64(off))
	b := v.FillBytes(make([]byte, f.cidr.Addr().BitLen()/8))
	a, _ := netip.AddrFromSlice(b)
	return a
}

// slot is a's offset in its family; false when a is outside the network
// or beyond its family's offset space.
func (l *layout) slot(a netip.Addr) (slot, bool) {
	a = a.Unmap()
	f, ok := l.family(FamilyOf(a))
	if !ok || !f.cidr.Contains(a) {
		return slot{}, false
	}
	v := new(big.Int).Sub(new(big.Int).SetBytes(a.AsSlice()), f.base)
	if !v.IsUint64() || v.Uint64() >= f.size {
		return slot{}, false
	}
	return slot{v6: a.Is6(), off: v.Uint64()}, true
}

// pool returns the offsets of pool p; ok is false for a pool of a family
// the network does not have.
func (l *layout) pool(p byte) (lo, hi uint64, ok bool) {
	f, ok := l.family(poolFamily(p))
	switch {
	case !ok:
		return 0, 0, false
	case p == f.vip:
		return f.vipLo, f.vipHi, true
	}
	return f.nodeLo, f.vipLo, true
}

// poolOf is the node or VIP pool of family f.
func (l *layout) poolOf(f Family, vip bool) (byte, error) {
	x, ok := l.family(f)
	if !ok {
		return 0, fmt.Errorf("ipam: network %s has no %v CIDR", l, f)
	}
	if vip {
		return x.vip, nil
	}
	return x.node, nil
}

func (l *layout) String() string { return fmt.Sprintf("%q (%s)", l.Name, JoinCIDRs(l.CIDRs)) }

// JoinCIDRs is cidrs as one string, "10.10.0.0/16,fd00:10::/64": the form
// of the networks entry and of the state file.
func JoinCIDRs(cidrs []netip.Prefix) string {
	s := make([]string, len(cidrs))
	for i, c := range cidrs {
		s[i] = c.String()
	}
	return strings.Join(s, ",")
}

// parseCIDRs reads JoinCIDRs' form.
func parseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// networkValue is the networks entry's value: "CIDR[,CIDR]\x00" and the
// VNI as a uvarint. An IPv4 network's is what older nodes wrote; older
// nodes cannot read a dual-stack or IPv6 network's ("bad definition").
func networkValue(cidrs []netip.Prefix, vni uint32) []byte {
	return binary.AppendUvarint([]byte(JoinCIDRs(cidrs)+"\x00"), uint64(vni))
}

// CreateNetwork defines a network cluster-wide with one CIDR per family
// (CheckCIDRs); this node owns its pools until it hands ranges out. Fails
// if the name exists.
func (p *IPAM) CreateNetwork(name string, cidrs []netip.Prefix, vni uint32) error {
	l, err := newLayout(Network{Name: name, CIDRs: cidrs, VNI: vni, Creator: p.name})
	if err != nil {
		return err
	}
	p.mu.Lock()
	err = p.createLocked(l, name, vni)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	p.changed(name) // without the lock: OnChange may call Export
	return nil
}

func (p *IPAM) createLocked(l *layout, name string, vni uint32) error {
	if _, ok := p.networkEntry(name); ok {
		return fmt.Errorf("ipam: network %q exists", name)
	}
	if err := p.t.JoinNetwork(name); err != nil {
		return fmt.Errorf("ipam: network %q: %w", name, err)
	}
	p.nets[name] = true
	for _, f := range l.fams {
		for _, pool := range []byte{f.node, f.vip} {
			lo, hi, _ := l.pool(pool)
			if err := p.putRangeLocked(name, rng{Pool: pool, Start: lo, End: hi, Owner: p.name, Version: 1, Creator: p.name}); err != nil {
				return err
			}
		}
	}
	if err := p.t.Put(tableNetworks, "", name, networkValue(l.CIDRs, vni)); err != nil {
		return fmt.Errorf("ipam: create network %q: %w", name, err)
	}
	return nil
}

// Network returns a network's definition as this node knows it.
func (p *IPAM) Network(name string) (Network, bool) {
	l, err := p.layout(name)
	if err != nil {
		return Network{}, false
	}
	return l.Network, true
}

// Networks returns every network defined in the cluster as this node
// knows them (also those whose creator is down), sorted by name.
func (p *IPAM) Networks() []Network {
	var out []Network
	for _, e := range p.t.ListAll(tableNetworks, "") {
		if l, err := p.layout(e.Key); err == nil {
			out = append(out, l.Network)
		}
	}
	return out
}

// networkEntry returns a network's definition, also while its creator is
// down (a network outlives its creator).
func (p *IPAM) networkEntry(name string) (gossip.Entry, bool) {
	for _, e := range p.t.ListAll(tableNetworks, "") {
		if e.Key == name {
			return e, true
		}
	}
	return gossip.Entry{}, false
}

func (p *IPAM) layout(name string) (*layout, error) {
	e, ok := p.networkEntry(name)
	if !ok {
		return nil, fmt.Errorf("ipam: unknown network %q", name)
	}
	c, rest, ok := strings.Cut(string(e.Value), "\x00")
	vni, n := binary.Uvarint([]byte(rest))
	cidrs, err := parseCIDRs(c)
	if !ok || n <= 0 || n != len(rest) || err != nil || vni > 1<<24 {
		return nil, fmt.Errorf("ipam: network %q: bad definition (from a node of another version?)", name)
	}
	return newLayout(Network{Name: name, CIDRs: cidrs, VNI: uint32(vni), Creator: e.Owner})
}

// join makes this node a participant of network (to see its ranges).
func (p *IPAM) joinLocked(network string) error {
	if p.nets[network] {
		return nil
	}
	if err := p.t.JoinNetwork(network); err != nil {
		return fmt.Errorf("ipam: network %q: %w", network, err)
	}
	p.nets[network] = true
	return nil
}

// Participate makes this node take part in network's IPAM again (answer
// range requests, keep its own ranges) without the state Import would
// bring: after a restart whose state file was lost, the node's ranges and
// leases come back from its peers (gossip adopts them as its own).
func (p *IPAM) Participate(network string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.joinLocked(network)
}

// Describe returns the definition of a network as this package lays it
// out (its DNS address filled in), for a network known from elsewhere
// than the tables: a node's own record of a network it joined, before
// the definition has reached it after a restart.
func Describe(name string, cidrs []netip.Prefix, vni uint32) (Network, error) {
	l, err := newLayout(Network{Name: name, CIDRs: cidrs, VNI: vni})
	if err != nil {
		return Network{}, err
	}
	return l.Network, nil
}
