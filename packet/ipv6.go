package packet

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// The IPv6 header (RFC 8200 §3):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version| Traffic Class |           Flow Label                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Payload Length        |  Next Header  |   Hop Limit   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                   Source Address (16 bytes)                   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 Destination Address (16 bytes)                |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Extension headers (RFC 8200 §4) follow, each naming the next: hop-by-
// hop options, routing and destination options (RFC 8200 §4.3-4.6),
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Next Header  |  Hdr Ext Len  |  (Hdr Ext Len + 1) * 8 bytes  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// the authentication header (RFC 4302: (Payload Len + 2) * 4 bytes), and
// the fragment header (RFC 8200 §4.5), 8 bytes:
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                         Identification                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

// IPv6 extension header numbers the view walks.
const (
	ExtHopByHop = 0
	ExtRouting  = 43
	ExtFragment = 44
	ExtAH       = 51
	ExtDestOpts = 60
	// NoNextHeader ends a chain without a transport header (RFC 8200 §4.7).
	NoNextHeader = 59
)

// MaxExtHeaders bounds the IPv6 extension header chain the view walks: a
// packet with more is refused. RFC 8200 §4.1 orders at most 6 kinds, one
// of them (destination options) twice; 8 leaves room for an AH.
const MaxExtHeaders = 8

// The view's frag word for an IPv6 packet: ipv6DF (DF set, no fragment),
// with the fragment header's offset and M in IPv4's places, and
// ipv6Routed (IPv4's reserved bit, read only for IPv6) when a routing
// header has segments left.
const (
	ipv6DF     = 0x4000
	ipv6Routed = 0x8000
)

// parseHeader6 is ParseHeader for pkt, at least an IPv6 header long, of
// version 6.
func (p *IP) parseHeader6(pkt []byte) bool {
	tl := header.IPv6MinimumSize + int(binary.BigEndian.Uint16(pkt[4:6]))
	if tl > len(pkt) || Is4([16]byte(pkt[OffSrc6:])) || Is4([16]byte(pkt[OffDst6:])) {
		p.b = nil
		return false
	}
	b := pkt[:tl]
	proto, off, frag, ok := walk6(b, pkt[6])
	if !ok {
		p.b = nil
		return false
	}
	p.Src, p.Dst, p.Proto = [16]byte(pkt[OffSrc6:]), [16]byte(pkt[OffDst6:]), proto
	p.SPort, p.DPort = 0, 0
	p.TCPFlags, p.ICMPType, p.ICMPCode = 0, 0, 0
	p.b = b
	p.hl = uint16(off)
	p.frag = frag
	p.v6, p.l4Valid, p.l4Done = true, false, false
	return true
}

// walk6 walks the extension header chain of b, an IPv6 packet (or a
// quote of one) whose fixed header names next: it returns the protocol
// of the transport header and its offset, and the frag word (ipv6DF, with
// the fragment header's offset and M bit when there is one, and
// ipv6Routed for a routing header with segments left). In a
// fragment it stops after the fragment header: the protocol is the one
// the fragment header names, for every fragment of the datagram alike.
// ok is false for a chain of more than MaxExtHeaders headers, a
// hop-by-hop header that is not first, or a header that does not fit in
// b.
func walk6(b []byte, next uint8) (proto uint8, off int, frag uint16, ok bool) {
	off, frag = header.IPv6MinimumSize, ipv6DF
	for n := 0; ; n++ {
		switch next {
		case ExtHopByHop, ExtRouting, ExtFragment, ExtAH, ExtDestOpts:
		default:
			return next, off, frag, true
		}
		if n == MaxExtHeaders || (next == ExtHopByHop && n != 0) || len(b)-off < 8 {
			return 0, 0, 0, false
		}
		h := b[off:]
		switch next {
		case ExtFragment:
			w := binary.BigEndian.Uint16(h[2:4]) // offset in 8-byte units << 3 | res | M
			frag = ipv6DF | w>>3 | (w&1)<<13
			next, off = h[0], off+8
			if frag&0x3fff != 0 {
				return next, off, frag, true // the rest is the fragment's data
			}
		case ExtRouting:
			l := (int(h[1]) + 1) * 8
			if l > len(h) {
				return 0, 0, 0, false
			}
			if h[3] != 0 { // segments left: the destination is not the final one
				frag |= ipv6Routed
			}
			next, off = h[0], off+l
		case ExtAH:
			l := (int(h[1]) + 2) * 4
			if l > len(h) {
				return 0, 0, 0, false
			}
			next, off = h[0], off+l
		default:
			l := (int(h[1]) + 1) * 8
			if l > len(h) {
				return 0, 0, 0, false
			}
			next, off = h[0], off+l
		}
	}
}

// quoted6 is Quoted for an IPv6 packet.
func (p *IP) quoted6() (inner []byte, ihl int, t Tuple, ok bool) {
	if p.Proto != ICMPv6 {
		return nil, 0, t, false
	}
	switch header.ICMPv6Type(p.ICMPType) {
	case header.ICMPv6DstUnreachable, header.ICMPv6PacketTooBig, header.ICMPv6TimeExceeded, header.ICMPv6ParamProblem:
	default:
		return nil, 0, t, false
	}
	inner = p.Payload()[header.ICMPv6MinimumSize:]
	if len(inner) < header.IPv6MinimumSize || inner[0]>>4 != header.IPv6Version {
		return nil, 0, t, false
	}
	proto, off, frag, ok := walk6(inner, inner[6]) // the quote may be cut short: walked within it
	if !ok || frag&0x3fff != 0 || (proto != TCP && proto != UDP) || len(inner) < off+8 {
		return nil, 0, t, false
	}
	t = Tuple{
		Src: [16]byte(inner[OffSrc6:]), Dst: [16]byte(inner[OffDst6:]),
		SPort: binary.BigEndian.Uint16(inner[off:]), DPort: binary.BigEndian.Uint16(inner[off+2:]),
		Proto: proto,
	}
	return inner, off, t, true
}
