package gossip

import (
	"errors"
	"net/netip"
)

// Meta is what a node tells the cluster about itself in its memberlist node
// metadata.
//
//	+---------+--------+---------+-------+---------+---------+
//	| version | flags  | len     | VTEP  | len     | Version |
//	| 1 byte  | 1 byte | 1 byte  |       | 1 byte  |         |
//	+---------+--------+---------+-------+---------+---------+
//
// flags bit 0: the node is leaving (set by Leave just before it leaves, so
// peers can tell a graceful leave from a death).
//
// VTEP is netip.AddrPort.MarshalBinary (4 or 16 address bytes, zone, then
// the port little endian); a v4-mapped one is read as its IPv4 address.
type Meta struct {
	VTEP    netip.AddrPort // underlay address and port of the node's VXLAN endpoint
	Version string         // overlayd version string of the node

	leaving bool
}

const metaVersion = 1

var errMeta = errors.New("gossip: bad node metadata")

func (m Meta) encode() []byte {
	vtep, _ := m.VTEP.MarshalBinary()
	ver := m.Version
	if len(ver) > 255 {
		ver = ver[:255]
	}
	var flags byte
	if m.leaving {
		flags |= 1
	}
	b := []byte{metaVersion, flags, byte(len(vtep))}
	b = append(b, vtep...)
	b = append(b, byte(len(ver)))
	return append(b, ver...)
}

func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) == 0 {
		return m, nil // a node without metadata (not an overlayd node)
	}
	if b[0] != metaVersion || len(b) < 3 || b[1]&^1 != 0 {
		return m, errMeta
	}
	m.leaving = b[1]&1 != 0
	n := int(b[2])
	b = b[3:]
	if len(b) < n+1 {
		return m, errMeta
	}
	if err := m.VTEP.UnmarshalBinary(b[:n]); err != nil {
		return Meta{}, errMeta
	}
	// A v4-mapped VTEP is its IPv4 address: VTEPs are compared unmapped.
	m.VTEP = netip.AddrPortFrom(m.VTEP.Addr().Unmap(), m.VTEP.Port())
	b = b[n:]
	n = int(b[0])
	b = b[1:]
	if len(b) != n {
		return Meta{}, errMeta
	}
	m.Version = string(b)
	return m, nil
}
