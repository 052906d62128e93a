package packet

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// MaxICMPv6Quote bounds how much of the offending packet an ICMPv6 error
// quotes, so that the message fits in the IPv6 minimum MTU (RFC 4443
// §2.4(c)).
const MaxICMPv6Quote = header.IPv6MinimumMTU - header.IPv6MinimumSize - header.ICMPv6MinimumSize

// ICMPv6 types and codes of the errors we send (RFC 4443 §3).
const (
	ICMPv6DestUnreachable    = uint8(header.ICMPv6DstUnreachable)     // 1
	ICMPv6NoRoute            = uint8(header.ICMPv6NetworkUnreachable) // 0: no route to destination
	ICMPv6AddressUnreachable = uint8(header.ICMPv6AddressUnreachable) // 3
	ICMPv6PortUnreachable    = uint8(header.ICMPv6PortUnreachable)    // 4
	ICMPv6PacketTooBig       = uint8(header.ICMPv6PacketTooBig)       // 2, code 0
)

// The ICMPv6 message (RFC 4443 §2.1):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Type      |     Code      |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|            Unused, or MTU (packet too big), or pointer         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|    As much of the invoking packet as fits in 1280 bytes ...    |
//
// The checksum covers the IPv6 pseudo-header (RFC 8200 §8.1): source,
// destination, upper-layer length and next header 58.

// mayAnswer6 is MayAnswer for an IPv6 packet.
func mayAnswer6(p *IP, network netip.Prefix) bool {
	if len(p.b) < header.IPv6MinimumSize || p.FragmentOffset() != 0 {
		return false
	}
	src, dst := p.SrcAddr(), p.DstAddr()
	if src.IsUnspecified() || src.IsMulticast() || src.IsLoopback() || dst.IsUnspecified() || dst.IsMulticast() || dst.IsLoopback() {
		return false
	}
	if subnetAnycast(src, network) || subnetAnycast(dst, network) {
		return false
	}
	if p.Proto == ICMPv6 {
		if len(p.Payload()) == 0 {
			return false
		}
		// Types below 128 are errors (RFC 4443 §2.1); a redirect is
		// never answered (§2.4(e.2)).
		if p.ICMPType < 128 || header.ICMPv6Type(p.ICMPType) == header.ICMPv6RedirectMsg {
			return false
		}
	}
	return true
}

// subnetAnycast reports whether a is the subnet-router anycast address of
// network (all host bits clear; none in a /127 or /128, RFC 6164).
func subnetAnycast(a netip.Addr, network netip.Prefix) bool {
	return network.IsValid() && network.Addr().Is6() && network.Bits() < 127 && network.Masked().Addr() == a
}

// BuildICMPv6Error writes to out the ICMPv6 error of type typ and code
// about p, an IPv6 packet, quoting p up to MaxICMPv6Quote bytes or as
// much as fits in out (at least its IPv6 header and 8 bytes: out of
// MaxAnswerLen always fits all); param is the MTU of "packet too big" or
// the pointer of "parameter problem" (0 otherwise). The error comes from
// p's destination, as BuildICMPError's. It returns the length written, or
// ErrNoReply when MayAnswer(p, network) says no, ErrFamily for an IPv4
// packet, or ErrShortBuffer.
func BuildICMPv6Error(p *IP, network netip.Prefix, typ, code uint8, param uint32, out []byte) (int, error) {
	if !p.v6 {
		return 0, ErrFamily
	}
	if !MayAnswer(p, network) {
		return 0, ErrNoReply
	}
	// As much as fits in out, and at least the IPv6 header and 8 bytes.
	q := min(len(p.b), MaxICMPv6Quote, len(out)-header.IPv6MinimumSize-header.ICMPv6MinimumSize)
	if q < min(len(p.b), header.IPv6MinimumSize+8) {
		return 0, ErrShortBuffer
	}
	quote := p.b[:q]
	l := header.ICMPv6MinimumSize + len(quote)
	n := header.IPv6MinimumSize + l
	writeIPv6(out[:header.IPv6MinimumSize], l, ICMPv6, &p.Dst, &p.Src)
	ic := out[header.IPv6MinimumSize:n]
	ic[0], ic[1] = typ, code
	binary.BigEndian.PutUint16(ic[2:4], 0)
	binary.BigEndian.PutUint32(ic[4:8], param)
	copy(ic[header.ICMPv6MinimumSize:], quote)
	xsum := header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, tcpip.AddrFrom16(p.Dst), tcpip.AddrFrom16(p.Src), uint16(l))
	binary.BigEndian.PutUint16(ic[2:4], ^checksum.Checksum(ic, xsum))
	return n, nil
}

// writeIPv6 writes a 40-byte IPv6 header (traffic class and flow label 0)
// in front of plen bytes of proto.
func writeIPv6(b []byte, plen int, proto uint8, src, dst *[16]byte) {
	binary.BigEndian.PutUint32(b[0:4], 6<<28)
	binary.BigEndian.PutUint16(b[4:6], uint16(plen))
	b[6], b[7] = proto, ReplyTTL
	copy(b[OffSrc6:OffSrc6+16], src[:])
	copy(b[OffDst6:OffDst6+16], dst[:])
}
