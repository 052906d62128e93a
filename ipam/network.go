package ipam

// This file holds networks: their definition, cluster-wide, and their
// address layout (pools, offsets), and taking part in one.

import (
	"encoding/binary"
	"fmt"
	"math/big"
	"net/netip"
	"strings"

	"github.com/overlayd/overlayd/gossip"
)

// layout is a network's address arithmetic, in offsets from the CIDR base.
type layout struct {
	Network
	size   uint64 // addresses in the CIDR
	nodeLo uint64 // node pool [nodeLo, vipLo)
	vipLo  uint64 // VIP pool [vipLo, vipHi)
	vipHi  uint64
	base   *big.Int
}

func newLayout(n Network) (*layout, error) {
	hostBits := n.CIDR.Addr().BitLen() - n.CIDR.Bits()
	if !n.CIDR.IsValid() || hostBits > 32 || hostBits < 6 {
		return nil, fmt.Errorf("ipam: network %q: CIDR %v must have 6 to 32 host bits", n.Name, n.CIDR)
	}
	l := &layout{Network: n, size: 1 << hostBits}
	l.CIDR = n.CIDR.Masked()
	l.base = new(big.Int).SetBytes(l.CIDR.Addr().AsSlice())
	l.vipLo = l.size - max(l.size/16, 16)
	l.vipHi = l.size
	if l.CIDR.Addr().Is4() {
		l.vipHi-- // broadcast
	}
	l.nodeLo = 2
	l.DNS = DNSAddr(l.CIDR)
	return l, nil
}

// DNSAddr is the DNS address of a network with CIDR cidr: its first
// usable address, which ipam never hands out (offset 1; nodes start at 2).
func DNSAddr(cidr netip.Prefix) netip.Addr { return cidr.Masked().Addr().Next() }

func (l *layout) addr(off uint64) netip.Addr {
	v := new(big.Int).Add(l.base, new(big.Int).SetUint64(off))
	b := v.FillBytes(make([]byte, l.CIDR.Addr().BitLen()/8))
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (l *layout) offset(a netip.Addr) (uint64, bool) {
	if !l.CIDR.Contains(a) {
		return 0, false
	}
	v := new(big.Int).Sub(new(big.Int).SetBytes(a.AsSlice()), l.base)
	return v.Uint64(), true
}

func (l *layout) pool(p byte) (lo, hi uint64) {
	if p == poolVIP {
		return l.vipLo, l.vipHi
	}
	return l.nodeLo, l.vipLo
}

func (l *layout) String() string { return fmt.Sprintf("%q (%v)", l.Name, l.CIDR) }

// CreateNetwork defines a network cluster-wide; this node owns its pools
// until it hands ranges out. Fails if the name exists.
func (p *IPAM) CreateNetwork(name string, cidr netip.Prefix, vni uint32) error {
	l, err := newLayout(Network{Name: name, CIDR: cidr, VNI: vni, Creator: p.name})
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
	for _, pool := range []byte{poolNode, poolVIP} {
		lo, hi := l.pool(pool)
		if err := p.putRangeLocked(name, rng{Pool: pool, Start: lo, End: hi, Owner: p.name, Version: 1, Creator: p.name}); err != nil {
			return err
		}
	}
	v := binary.AppendUvarint([]byte(l.CIDR.String()+"\x00"), uint64(vni))
	if err := p.t.Put(tableNetworks, "", name, v); err != nil {
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
	pfx, err := netip.ParsePrefix(c)
	if !ok || n <= 0 || n != len(rest) || err != nil || vni > 1<<24 {
		return nil, fmt.Errorf("ipam: network %q: bad definition", name)
	}
	return newLayout(Network{Name: name, CIDR: pfx, VNI: uint32(vni), Creator: e.Owner})
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
func Describe(name string, cidr netip.Prefix, vni uint32) (Network, error) {
	l, err := newLayout(Network{Name: name, CIDR: cidr, VNI: vni})
	if err != nil {
		return Network{}, err
	}
	return l.Network, nil
}
