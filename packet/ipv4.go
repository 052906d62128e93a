package packet

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// IP protocol numbers the view reads ports (or an echo identifier) from.
const (
	ICMP = uint8(header.ICMPv4ProtocolNumber) // 1
	TCP  = uint8(header.TCPProtocolNumber)    // 6
	UDP  = uint8(header.UDPProtocolNumber)    // 17
	SCTP = 132
)

// TCP flags, as in the TCP header.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagACK = 0x10
)

// IPv4 header field offsets.
const (
	OffChecksum = 10
	OffSrc      = 12
	OffDst      = 16
)

// Tuple is the 5-tuple of an IPv4 flow in the direction a packet travels.
// It holds no pointers and is comparable: the balancer keys connection
// tracking by it, and Hash spreads flows by it. Ports are 0 for protocols
// without ports and for fragments (so all fragments of a datagram are one
// flow); for an ICMP echo request or reply both hold the echo identifier.
type Tuple struct {
	Src, Dst     [4]byte
	SPort, DPort uint16
	Proto        uint8
}

// Reverse returns the tuple of the opposite direction.
func (t Tuple) Reverse() Tuple {
	return Tuple{Src: t.Dst, Dst: t.Src, SPort: t.DPort, DPort: t.SPort, Proto: t.Proto}
}

// IPv4 is a parsed view of an IPv4 packet: Parse fills it once, in place,
// without allocating, and the packet path reads it instead of the bytes.
// A caller that rewrites the packet (the balancer's NAT) keeps Tuple in
// step with the bytes.
type IPv4 struct {
	// Tuple is the packet's 5-tuple; its ports are valid when L4Valid.
	Tuple
	// TCPFlags are the flags of a TCP segment.
	TCPFlags uint8
	// ICMPType and ICMPCode are those of an ICMP message.
	ICMPType, ICMPCode uint8

	b       []byte // the packet, trimmed to its total length
	hl      uint8  // header length in bytes
	frag    uint16 // flags and fragment offset, as on the wire
	l4Valid bool
	l4Done  bool // ParseTransport has run
}

// Parse fills p from pkt, an IPv4 packet starting at its header: the
// header (ParseHeader) and the transport fields (ParseTransport). It
// reports false, leaving p unusable, for anything that is not a valid IPv4
// header (gVisor's IsValid: version, header and total length within pkt);
// bytes after the total length (Ethernet padding, TUN slack) are not part
// of the view. A transport header too short for its protocol (TCP, UDP,
// SCTP, ICMP) is not an error of Parse: L4Valid reports it. Parse never
// panics and allocates nothing.
func (p *IPv4) Parse(pkt []byte) bool {
	if !p.ParseHeader(pkt) {
		return false
	}
	p.ParseTransport()
	return true
}

// ParseHeader is the first half of Parse: it checks and reads the IPv4
// header alone, leaving the ports, TCP flags and ICMP fields zero and
// L4Valid false until ParseTransport. A path that may never need them
// (delivery to the attachment, where only the balancer, when it tracks
// flows, reads ports) parses the header and lets the one reader that
// needs the rest complete the view: still one parse per packet.
func (p *IPv4) ParseHeader(pkt []byte) bool {
	// The checks of gVisor's IPv4.IsValid; the view is written field by
	// field (a whole-struct store costs twice the parse).
	if len(pkt) < header.IPv4MinimumSize || pkt[0]>>4 != header.IPv4Version {
		p.b = nil
		return false
	}
	hl, tl := int(pkt[0]&0xf)*4, int(binary.BigEndian.Uint16(pkt[2:4]))
	if hl < header.IPv4MinimumSize || hl > tl || tl > len(pkt) {
		p.b = nil
		return false
	}
	p.Src, p.Dst, p.Proto = [4]byte(pkt[OffSrc:]), [4]byte(pkt[OffDst:]), pkt[9]
	p.SPort, p.DPort = 0, 0
	p.TCPFlags, p.ICMPType, p.ICMPCode = 0, 0, 0
	p.b = pkt[:tl]
	p.hl = uint8(hl)
	p.frag = binary.BigEndian.Uint16(pkt[6:8])
	p.l4Valid, p.l4Done = false, false
	return true
}

// ParseTransport completes a view filled by ParseHeader with the
// transport fields; after Parse, or a second time, it does nothing.
func (p *IPv4) ParseTransport() {
	if p.l4Done || p.b == nil {
		return
	}
	p.l4Done = true
	if p.frag&0x3fff != 0 {
		p.l4Valid = true // a fragment: no transport header to read, ports stay 0
		return
	}
	l4 := p.b[p.hl:]
	switch p.Proto {
	case TCP:
		if len(l4) >= header.TCPMinimumSize {
			if off := int(l4[12]>>4) * 4; off >= header.TCPMinimumSize && off <= len(l4) {
				p.SPort, p.DPort = binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
				p.TCPFlags = l4[13]
				p.l4Valid = true
			}
		}
	case UDP:
		if len(l4) >= header.UDPMinimumSize {
			if n := int(binary.BigEndian.Uint16(l4[4:6])); n >= header.UDPMinimumSize && n <= len(l4) {
				p.SPort, p.DPort = binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
				p.l4Valid = true
			}
		}
	case SCTP:
		if len(l4) >= 12 { // RFC 9260 common header
			p.SPort, p.DPort = binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
			p.l4Valid = true
		}
	case ICMP:
		if len(l4) > 0 {
			p.ICMPType = l4[0]
		}
		if len(l4) >= header.ICMPv4MinimumSize {
			p.ICMPCode = l4[1]
			if t := header.ICMPv4Type(l4[0]); t == header.ICMPv4Echo || t == header.ICMPv4EchoReply {
				id := binary.BigEndian.Uint16(l4[4:6])
				p.SPort, p.DPort = id, id
			}
			p.l4Valid = true
		}
	default:
		p.l4Valid = true
	}
}

// Bytes returns the packet, trimmed to its total length.
func (p *IPv4) Bytes() []byte { return p.b }

// Len returns the packet's total length.
func (p *IPv4) Len() int { return len(p.b) }

// HeaderLen returns the IPv4 header length in bytes.
func (p *IPv4) HeaderLen() int { return int(p.hl) }

// Header returns the IPv4 header.
func (p *IPv4) Header() []byte { return p.b[:p.hl] }

// Payload returns the transport header and payload, up to the total length.
func (p *IPv4) Payload() []byte { return p.b[p.hl:] }

// L4Valid reports whether the transport header is long enough for its
// protocol, so that Tuple's ports, TCPFlags and the ICMP fields are those
// of the packet (always true for a fragment and for protocols without
// ports).
func (p *IPv4) L4Valid() bool { return p.l4Valid }

// DontFragment reports whether DF is set.
func (p *IPv4) DontFragment() bool { return p.frag&0x4000 != 0 }

// MoreFragments reports whether MF is set.
func (p *IPv4) MoreFragments() bool { return p.frag&0x2000 != 0 }

// FragmentOffset returns the fragment offset in bytes.
func (p *IPv4) FragmentOffset() int { return int(p.frag&0x1fff) * 8 }

// Fragment reports whether the packet is a fragment, first or not.
func (p *IPv4) Fragment() bool { return p.frag&0x3fff != 0 }

// Quoted returns the packet quoted by p when p is an ICMP error
// (destination unreachable, time exceeded, parameter problem) about a TCP
// or UDP packet: the quoted bytes from its IPv4 header on, its header
// length, and its 5-tuple as it travelled. The quote holds at least the 8
// transport bytes with the ports. ok is false for every other packet,
// including a quoted non-initial fragment, which has no ports.
func (p *IPv4) Quoted() (inner []byte, ihl int, t Tuple, ok bool) {
	if p.Proto != ICMP || p.Fragment() || !p.l4Valid {
		return nil, 0, t, false
	}
	switch header.ICMPv4Type(p.ICMPType) {
	case header.ICMPv4DstUnreachable, header.ICMPv4TimeExceeded, header.ICMPv4ParamProblem:
	default:
		return nil, 0, t, false
	}
	inner = p.Payload()[header.ICMPv4MinimumSize:]
	if len(inner) < header.IPv4MinimumSize || inner[0]>>4 != header.IPv4Version {
		return nil, 0, t, false
	}
	ihl = int(inner[0]&0xf) * 4
	proto := inner[9]
	if ihl < header.IPv4MinimumSize || len(inner) < ihl+8 || (proto != TCP && proto != UDP) {
		return nil, 0, t, false
	}
	if binary.BigEndian.Uint16(inner[6:])&0x1fff != 0 { // a non-first fragment has no ports
		return nil, 0, t, false
	}
	t = Tuple{
		Src: [4]byte(inner[OffSrc:]), Dst: [4]byte(inner[OffDst:]),
		SPort: binary.BigEndian.Uint16(inner[ihl:]), DPort: binary.BigEndian.Uint16(inner[ihl+2:]),
		Proto: proto,
	}
	return inner, ihl, t, true
}
