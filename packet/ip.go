package packet

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// IP protocol numbers the view reads ports (or an echo identifier) from.
const (
	ICMP   = uint8(header.ICMPv4ProtocolNumber) // 1
	TCP    = uint8(header.TCPProtocolNumber)    // 6
	UDP    = uint8(header.UDPProtocolNumber)    // 17
	ICMPv6 = uint8(header.ICMPv6ProtocolNumber) // 58
	SCTP   = 132
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

// IPv6 header field offsets.
const (
	OffSrc6 = 8
	OffDst6 = 24
)

// Tuple is the 5-tuple of a flow in the direction a packet travels. It
// holds no pointers and is comparable: the balancer keys connection
// tracking by it, and Hash spreads flows by it. Addresses are 16 bytes,
// an IPv4 address in its IPv4-mapped form (::ffff:a.b.c.d, what
// netip.Addr.As16 returns); the view refuses an IPv6 packet with a mapped
// address (RFC 4291 §2.5.5.2: never on the wire), so the form tells the
// family. Ports are 0 for protocols without ports and for fragments (so
// all fragments of a datagram are one flow); for an ICMP or ICMPv6 echo
// request or reply both hold the echo identifier.
type Tuple struct {
	Src, Dst     [16]byte
	SPort, DPort uint16
	Proto        uint8
}

// TupleFrom returns the tuple of a flow from src to dst over proto.
func TupleFrom(src, dst netip.AddrPort, proto uint8) Tuple {
	return Tuple{Src: src.Addr().As16(), Dst: dst.Addr().As16(), SPort: src.Port(), DPort: dst.Port(), Proto: proto}
}

// Reverse returns the tuple of the opposite direction.
func (t Tuple) Reverse() Tuple {
	return Tuple{Src: t.Dst, Dst: t.Src, SPort: t.DPort, DPort: t.SPort, Proto: t.Proto}
}

// Is4 reports whether t is a flow of IPv4 (its addresses are IPv4-mapped).
func (t *Tuple) Is4() bool { return is4(&t.Src) }

// The accessors read t through a pointer: a Tuple copied by value for a
// call costs more than the call (see hash).

// SrcAddr returns the source address, an IPv4 one unmapped.
func (t *Tuple) SrcAddr() netip.Addr { return addr(&t.Src) }

// DstAddr returns the destination address, an IPv4 one unmapped.
func (t *Tuple) DstAddr() netip.Addr { return addr(&t.Dst) }

// SrcAddrPort returns the source address and port.
func (t *Tuple) SrcAddrPort() netip.AddrPort { return netip.AddrPortFrom(addr(&t.Src), t.SPort) }

// DstAddrPort returns the destination address and port.
func (t *Tuple) DstAddrPort() netip.AddrPort { return netip.AddrPortFrom(addr(&t.Dst), t.DPort) }

// addr returns a as a netip.Addr, an IPv4 one unmapped.
func addr(a *[16]byte) netip.Addr {
	return netip.AddrFrom16(*a).Unmap()
}

// Is4 reports whether a, an address in a Tuple, is IPv4-mapped.
func Is4(a [16]byte) bool { return is4(&a) }

func is4(a *[16]byte) bool {
	return binary.LittleEndian.Uint64(a[:8]) == 0 && binary.LittleEndian.Uint32(a[8:12]) == mappedLE
}

// mappedLE is bytes 8 to 11 of an IPv4-mapped address (0, 0, 0xff, 0xff)
// read as a little-endian word.
const mappedLE = 0xffff0000

// IP is a parsed view of an IPv4 or IPv6 packet: Parse fills it once, in
// place, without allocating, and the packet path reads it instead of the
// bytes. A caller that rewrites the packet (the balancer's NAT) keeps
// Tuple in step with the bytes.
type IP struct {
	// Tuple is the packet's 5-tuple; its ports are valid when L4Valid.
	// Its Proto is the transport protocol: for IPv6, the header after the
	// extension headers (or, in a fragment, the fragment header's next
	// header).
	Tuple
	// TCPFlags are the flags of a TCP segment.
	TCPFlags uint8
	// ICMPType and ICMPCode are those of an ICMP message (ICMPv6 for IPv6).
	ICMPType, ICMPCode uint8

	b       []byte // the packet, trimmed to its total length
	hl      uint16 // bytes before the transport header: the IPv4 header, or the IPv6 header and its extension headers
	frag    uint16 // IPv4 flags and fragment offset, as on the wire; for IPv6 the same bits, from the fragment header (and ipv6Routed)
	v6      bool
	l4Valid bool
	l4Done  bool // ParseTransport has run
}

// Parse fills p from pkt, an IPv4 or IPv6 packet starting at its header
// (the version nibble says which): the headers (ParseHeader) and the
// transport fields (ParseTransport). It reports false, leaving p
// unusable, for anything that is not a valid header: for IPv4 gVisor's
// IsValid (version, header and total length within pkt); for IPv6 the
// fixed header, a payload length within pkt, no IPv4-mapped address, and
// an extension header chain (hop-by-hop first, routing, destination
// options, fragment, AH) of at most MaxExtHeaders headers, each within
// the payload. Bytes after the total length (Ethernet padding, TUN slack)
// are not part of the view. A transport header too short for its
// protocol (TCP, UDP, SCTP, ICMP, ICMPv6) is not an error of Parse:
// L4Valid reports it. Parse never panics and allocates nothing.
func (p *IP) Parse(pkt []byte) bool {
	if !p.ParseHeader(pkt) {
		return false
	}
	p.ParseTransport()
	return true
}

// ParseHeader is the first half of Parse: it checks and reads the IP
// header (and the IPv6 extension headers) alone, leaving the ports, TCP
// flags and ICMP fields zero and L4Valid false until ParseTransport. A
// path that may never need them (delivery to the attachment, where only
// the balancer, when it tracks flows, reads ports) parses the header and
// lets the one reader that needs the rest complete the view: still one
// parse per packet.
func (p *IP) ParseHeader(pkt []byte) bool {
	if len(pkt) < header.IPv4MinimumSize || pkt[0]>>4 != header.IPv4Version {
		if len(pkt) >= header.IPv6MinimumSize && pkt[0]>>4 == header.IPv6Version {
			return p.parseHeader6(pkt)
		}
		p.b = nil
		return false
	}
	// IPv4, in line: the checks of gVisor's IPv4.IsValid; the view is
	// written field by field (a whole-struct store costs twice the parse).
	hl, tl := int(pkt[0]&0xf)*4, int(binary.BigEndian.Uint16(pkt[2:4]))
	if hl < header.IPv4MinimumSize || hl > tl || tl > len(pkt) {
		p.b = nil
		return false
	}
	// The addresses as two 8-byte stores each: 0, then 0:0:ffff:a.b.c.d
	// (little-endian words: no byte swaps).
	binary.LittleEndian.PutUint64(p.Src[:8], 0)
	binary.LittleEndian.PutUint64(p.Src[8:], mappedLE|uint64(binary.LittleEndian.Uint32(pkt[OffSrc:]))<<32)
	binary.LittleEndian.PutUint64(p.Dst[:8], 0)
	binary.LittleEndian.PutUint64(p.Dst[8:], mappedLE|uint64(binary.LittleEndian.Uint32(pkt[OffDst:]))<<32)
	p.Proto = pkt[9]
	p.SPort, p.DPort = 0, 0
	p.TCPFlags, p.ICMPType, p.ICMPCode = 0, 0, 0
	p.b = pkt[:tl]
	p.hl = uint16(hl)
	p.frag = binary.BigEndian.Uint16(pkt[6:8])
	p.v6, p.l4Valid, p.l4Done = false, false, false
	return true
}

// ParseTransport completes a view filled by ParseHeader with the
// transport fields; after Parse, or a second time, it does nothing.
func (p *IP) ParseTransport() {
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
	case ICMP, ICMPv6:
		if (p.Proto == ICMPv6) != p.v6 {
			p.l4Valid = true // ICMPv4 over IPv6, ICMPv6 over IPv4: a protocol without ports
			return
		}
		if len(l4) > 0 {
			p.ICMPType = l4[0]
		}
		if len(l4) >= header.ICMPv4MinimumSize { // 8, as ICMPv6MinimumSize
			p.ICMPCode = l4[1]
			if p.isEcho() {
				id := binary.BigEndian.Uint16(l4[4:6])
				p.SPort, p.DPort = id, id
			}
			p.l4Valid = true
		}
	default:
		p.l4Valid = true
	}
}

// isEcho reports whether p's ICMP type is an echo request or reply of
// its family.
func (p *IP) isEcho() bool {
	if p.v6 {
		t := header.ICMPv6Type(p.ICMPType)
		return t == header.ICMPv6EchoRequest || t == header.ICMPv6EchoReply
	}
	t := header.ICMPv4Type(p.ICMPType)
	return t == header.ICMPv4Echo || t == header.ICMPv4EchoReply
}

// SrcAddr returns the packet's source address, an IPv4 one unmapped. It
// shadows Tuple's: the view knows its family without reading the
// address (half the cost, once or twice per packet).
func (p *IP) SrcAddr() netip.Addr {
	if p.v6 {
		return netip.AddrFrom16(p.Src)
	}
	return netip.AddrFrom4([4]byte(p.Src[12:16]))
}

// DstAddr returns the packet's destination address, an IPv4 one unmapped.
func (p *IP) DstAddr() netip.Addr {
	if p.v6 {
		return netip.AddrFrom16(p.Dst)
	}
	return netip.AddrFrom4([4]byte(p.Dst[12:16]))
}

// Is6 reports whether p is an IPv6 packet.
func (p *IP) Is6() bool { return p.v6 }

// Version returns the IP version, 4 or 6.
func (p *IP) Version() int {
	if p.v6 {
		return 6
	}
	return 4
}

// Bytes returns the packet, trimmed to its total length.
func (p *IP) Bytes() []byte { return p.b }

// Len returns the packet's total length.
func (p *IP) Len() int { return len(p.b) }

// HeaderLen returns the length of the headers before the transport
// header: the IPv4 header, or the IPv6 header and its extension headers
// (in a fragment, up to and with the fragment header).
func (p *IP) HeaderLen() int { return int(p.hl) }

// Header returns the headers before the transport header (HeaderLen).
func (p *IP) Header() []byte { return p.b[:p.hl] }

// Payload returns the transport header and payload, up to the total
// length (a fragment's data, for a fragment).
func (p *IP) Payload() []byte { return p.b[p.hl:] }

// L4Valid reports whether the transport header is long enough for its
// protocol, so that Tuple's ports, TCPFlags and the ICMP fields are those
// of the packet (always true for a fragment and for protocols without
// ports).
func (p *IP) L4Valid() bool { return p.l4Valid }

// DontFragment reports whether DF is set; always true for IPv6, which
// routers never fragment (RFC 8200 §5).
func (p *IP) DontFragment() bool { return p.frag&0x4000 != 0 }

// MoreFragments reports whether MF (IPv6: the fragment header's M flag)
// is set.
func (p *IP) MoreFragments() bool { return p.frag&0x2000 != 0 }

// FragmentOffset returns the fragment offset in bytes.
func (p *IP) FragmentOffset() int { return int(p.frag&0x1fff) * 8 }

// Routed reports whether p is an IPv6 packet with a routing header that
// has segments left (RFC 8200 §4.4): its destination address is the next
// hop of a source route, not the final destination that a transport
// checksum covers, so a NAT must not rewrite it.
func (p *IP) Routed() bool { return p.v6 && p.frag&ipv6Routed != 0 }

// Fragment reports whether the packet is a fragment, first or not. An
// IPv6 atomic fragment (a fragment header with offset 0 and M clear, RFC
// 6946) is not: it is read as a whole packet.
func (p *IP) Fragment() bool { return p.frag&0x3fff != 0 }

// Quoted returns the packet quoted by p when p is an ICMP error
// (destination unreachable, time exceeded, parameter problem; for ICMPv6
// also packet too big) about a TCP or UDP packet of p's family: the
// quoted bytes from its IP header on, the offset of its transport header
// (its IPv4 header length; for IPv6 after its extension headers), and
// its 5-tuple as it travelled. The quote holds at least the 8 transport
// bytes with the ports. ok is false for every other packet, including a
// quoted non-initial fragment, which has no ports.
func (p *IP) Quoted() (inner []byte, ihl int, t Tuple, ok bool) {
	if p.Fragment() || !p.l4Valid {
		return nil, 0, t, false
	}
	if p.v6 {
		return p.quoted6()
	}
	if p.Proto != ICMP {
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
		Src: netip.AddrFrom4([4]byte(inner[OffSrc:])).As16(), Dst: netip.AddrFrom4([4]byte(inner[OffDst:])).As16(),
		SPort: binary.BigEndian.Uint16(inner[ihl:]), DPort: binary.BigEndian.Uint16(inner[ihl+2:]),
		Proto: proto,
	}
	return inner, ihl, t, true
}
