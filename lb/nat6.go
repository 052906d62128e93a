package lb

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/overlayd/overlayd/packet"
)

// NAT66: the rewrites of IPv6 packets. IPv6 has no header checksum; the
// addresses are in the pseudo-header of the TCP, UDP and ICMPv6 checksums
// (RFC 8200 §8.1), which are updated incrementally (RFC 1624) as IPv4's.

// sumAddr16 is the one's-complement sum of the eight 16-bit words of a, a
// 16-byte address, taken as four 32-bit words and folded.
func sumAddr16(a []byte) uint16 {
	s := uint64(binary.BigEndian.Uint32(a[0:4])) + uint64(binary.BigEndian.Uint32(a[4:8])) +
		uint64(binary.BigEndian.Uint32(a[8:12])) + uint64(binary.BigEndian.Uint32(a[12:16]))
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return uint16(s)
}

// addAddr16 adds the change of a 16-byte address from old to new.
func (d *delta) addAddr16(old, new []byte) {
	if string(old[:16]) != string(new[:16]) {
		*d = delta(checksum.Combine(uint16(*d), checksum.Combine(sumAddr16(new), ^sumAddr16(old))))
	}
}

// rewrite6 sets the source (src true) or destination address and port of
// an IPv6 TCP or UDP packet b, whose transport header is l4 (long enough
// to hold its checksum field, checked by the caller), and updates the
// transport checksum incrementally.
func rewrite6(b, l4 []byte, proto uint8, src bool, addr *[16]byte, port uint16) {
	aoff, poff := packet.OffDst6, 2
	if src {
		aoff, poff = packet.OffSrc6, 0
	}
	var d delta
	d.addAddr16(b[aoff:aoff+16], addr[:])
	copy(b[aoff:aoff+16], addr[:])
	d.add(binary.BigEndian.Uint16(l4[poff:]), port)
	binary.BigEndian.PutUint16(l4[poff:], port)
	if proto == uint8(UDP) {
		d.applyUDP(l4, udpCsum)
	} else {
		d.apply(l4, tcpCsum)
	}
}

// rewriteQuoted6 rewrites the source (src true) or destination address
// and port of the IPv6 packet quoted in an ICMPv6 error (its transport
// header at inner[ihl:], of protocol proto) and, when quoted far enough,
// its transport checksum, and returns the change to the ICMPv6 checksum.
func rewriteQuoted6(inner []byte, ihl int, proto uint8, src bool, addr *[16]byte, port uint16) delta {
	aoff, poff := packet.OffDst6, 2
	if src {
		aoff, poff = packet.OffSrc6, 0
	}
	l4 := inner[ihl:]
	var icmp, d delta
	// The inner address changes the inner transport checksum (its
	// pseudo-header) and, as bytes of the message, the ICMPv6 checksum.
	d.addAddr16(inner[aoff:aoff+16], addr[:])
	icmp = d
	copy(inner[aoff:aoff+16], addr[:])
	oldPort := binary.BigEndian.Uint16(l4[poff:])
	d.add(oldPort, port)
	icmp.add(oldPort, port)
	binary.BigEndian.PutUint16(l4[poff:], port)
	csumOff := tcpCsum
	if proto == uint8(UDP) {
		csumOff = udpCsum
	}
	if len(l4) >= csumOff+2 {
		old := binary.BigEndian.Uint16(l4[csumOff:])
		if proto == uint8(UDP) {
			d.applyUDP(l4, csumOff)
		} else {
			d.apply(l4, csumOff)
		}
		icmp.add(old, binary.BigEndian.Uint16(l4[csumOff:]))
	}
	return icmp
}

// rewriteOuter6 sets the outer source (src true) or destination address of
// p, an ICMPv6 message, adding the change (its pseudo-header) to icmp, the
// change to its checksum, and applies icmp.
func rewriteOuter6(p *packet.IP, icmp delta, src bool, addr *[16]byte) {
	b := p.Bytes()
	aoff := packet.OffDst6
	if src {
		aoff = packet.OffSrc6
	}
	icmp.addAddr16(b[aoff:aoff+16], addr[:])
	copy(b[aoff:aoff+16], addr[:])
	icmp.apply(p.Payload(), icmpCsum)
	if src {
		p.Src = *addr
	} else {
		p.Dst = *addr
	}
}
