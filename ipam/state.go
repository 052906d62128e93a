package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
)

// Export format of a node's state in one network (written under
// --state-dir; a torn or corrupt file is detected by the checksum):
//
//	+--------+---------+--------------------------------------+--------+
//	| magic  | version | body                                 | CRC-32 |
//	| 6 bytes| 1 byte  |                                      | IEEE,BE|
//	+--------+---------+--------------------------------------+--------+
//
//	body: network, CIDRs (JoinCIDRs), creator (strings: uvarint length + bytes),
//	      VNI (uvarint), nranges, range*, nleases, (addr, owner)*
//	range: uvarint length + the range's table value
const exportMagic = "ovipam"

const maxExportItems = 1 << 20

var errCorrupt = errors.New("corrupt state")

// State is the decoded form of an export.
type State struct {
	Network Network
	Ranges  []rng
	Leases  []Lease
}

// Export returns this node's ranges and leases in network, to persist.
func (p *IPAM) Export(network string) ([]byte, error) {
	l, err := p.layout(network)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := State{Network: l.Network}
	for _, r := range p.ringLocked(l) {
		if r.Owner == p.name {
			s.Ranges = append(s.Ranges, r)
		}
	}
	for _, ls := range p.leasesLocked(l) {
		if ls.Node == p.name {
			s.Leases = append(s.Leases, ls)
		}
	}
	return encodeState(&s), nil
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func encodeState(s *State) []byte {
	b := append([]byte(exportMagic), 1)
	b = appendStr(b, s.Network.Name)
	b = appendStr(b, JoinCIDRs(s.Network.CIDRs))
	b = appendStr(b, s.Network.Creator)
	b = binary.AppendUvarint(b, uint64(s.Network.VNI))
	b = binary.AppendUvarint(b, uint64(len(s.Ranges)))
	for _, r := range s.Ranges {
		b = appendStr(b, string(r.encode()))
	}
	b = binary.AppendUvarint(b, uint64(len(s.Leases)))
	for _, ls := range s.Leases {
		b = appendStr(b, ls.Addr.String())
		b = appendStr(b, ls.Owner)
	}
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// DecodeState decodes an export; any damage is an error, never a panic.
func DecodeState(b []byte) (*State, error) {
	if len(b) < len(exportMagic)+1+4 || string(b[:len(exportMagic)]) != exportMagic {
		return nil, fmt.Errorf("ipam: state: not an ipam state file: %w", errCorrupt)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, fmt.Errorf("ipam: state: checksum mismatch (truncated or damaged file): %w", errCorrupt)
	}
	if body[len(exportMagic)] != 1 {
		return nil, fmt.Errorf("ipam: state: unknown version %d: %w", body[len(exportMagic)], errCorrupt)
	}
	d := body[len(exportMagic)+1:]
	bad := false
	uv := func() uint64 {
		v, n := binary.Uvarint(d)
		if n <= 0 {
			bad = true
			return 0
		}
		d = d[n:]
		return v
	}
	str := func() string {
		n := uv()
		if bad || n > uint64(len(d)) {
			bad = true
			return ""
		}
		s := string(d[:n])
		d = d[n:]
		return s
	}
	s := &State{}
	s.Network.Name = str()
	cidr := str()
	s.Network.Creator = str()
	vni := uv()
	var err error
	if s.Network.CIDRs, err = parseCIDRs(cidr); err != nil && !bad || vni >= 1<<24 {
		bad = true
	}
	s.Network.VNI = uint32(vni)
	if n := uv(); !bad && n <= maxExportItems && n <= uint64(len(d)) {
		for range n {
			r, ok := decodeRange([]byte(str()))
			if !ok {
				bad = true
				break
			}
			s.Ranges = append(s.Ranges, r)
		}
	} else {
		bad = true
	}
	if n := uv(); !bad && n <= maxExportItems && n <= uint64(len(d)) {
		for range n {
			a, err := netip.ParseAddr(str())
			owner := str()
			if err != nil || bad || a.Zone() != "" {
				bad = true
				break
			}
			s.Leases = append(s.Leases, Lease{Addr: a, Owner: owner})
		}
	} else {
		bad = true
	}
	if bad || len(d) != 0 {
		return nil, fmt.Errorf("ipam: state: malformed body: %w", errCorrupt)
	}
	l, err := newLayout(s.Network)
	if err != nil {
		return nil, fmt.Errorf("ipam: state: %w", err)
	}
	s.Network = l.Network
	return s, nil
}

// Import restores this node's ranges and leases from an Export, after a
// restart and before the first Allocate. A corrupt blob is an error and
// changes nothing.
func (p *IPAM) Import(b []byte) error {
	s, err := DecodeState(b)
	if err != nil {
		return err
	}
	l, _ := newLayout(s.Network)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.joinLocked(l.Name); err != nil {
		return err
	}
	if _, ok := p.networkEntry(l.Name); !ok && l.Creator == p.name {
		if err := p.t.Put(tableNetworks, "", l.Name, networkValue(l.CIDRs, l.VNI)); err != nil {
			return fmt.Errorf("ipam: import %q: %w", l.Name, err)
		}
	}
	for _, r := range s.Ranges {
		r.Owner = p.name
		if err := p.putRangeLocked(l.Name, r); err != nil {
			return err
		}
	}
	for _, ls := range s.Leases {
		if err := p.t.Put(tableLeases, l.Name, ls.Addr.String(), []byte(ls.Owner)); err != nil {
			return fmt.Errorf("ipam: import %q: lease %v: %w", l.Name, ls.Addr, err)
		}
	}
	return nil
}
