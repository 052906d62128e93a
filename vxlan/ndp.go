package vxlan

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// NDP message types (RFC 4861 §4.3, §4.4), the ICMPv6 types of the only
// two NDP messages overlayd sends or answers.
const (
	NDPSolicit = 135 // neighbour solicitation: who has Target?
	NDPAdvert  = 136 // neighbour advertisement: Target is at this MAC
)

const (
	ipv6HeaderLen = 40
	icmpv6Proto   = 58
	ndpHopLimit   = 255 // RFC 4861 §7.1: anything else came from off-link
	ndpMsgLen     = 24  // type, code, checksum, flags/reserved, target
	ndpOptLen     = 8   // one Ethernet link-layer address option

	ndpOptSourceLL = 1 // source link-layer address (in solicitations)
	ndpOptTargetLL = 2 // target link-layer address (in advertisements)

	ndpFlagRouter    = 0x80
	ndpFlagSolicited = 0x40
	ndpFlagOverride  = 0x20

	// ndpMaxOptions bounds the options walk: a message can hold no more
	// in a 64 KiB packet, and nothing overlayd takes needs more than one.
	ndpMaxOptions = 65535 / 8
)

// NDPLen is the length of the NDP packets overlayd sends: an IPv6 header,
// the solicitation or advertisement, and one link-layer address option.
// Like ARP (see TrailerLen), they may be followed by overlayd's trailer,
// which a Linux host cuts off with the rest of the frame beyond the IPv6
// payload length.
const NDPLen = ipv6HeaderLen + ndpMsgLen + ndpOptLen

// AllNodes is ff02::1, the link-local all-nodes group (RFC 4291 §2.7.1),
// where an advertisement answering an unspecified source goes.
var AllNodes = netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x01})

// SolicitedNode returns the solicited-node multicast address of a, an
// IPv6 address: ff02::1:ff00:0/104 and a's low 24 bits (RFC 4291 §2.7.1),
// where a solicitation for a is sent.
func SolicitedNode(a netip.Addr) netip.Addr {
	b := a.As16()
	return netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
}

// MulticastMAC returns the Ethernet group address of the IPv6 multicast
// address a: 33:33 and a's low 32 bits (RFC 2464 §7); for a
// solicited-node address that is 33:33:ff:xx:xx:xx.
func MulticastMAC(a netip.Addr) MAC {
	b := a.As16()
	return MAC{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// NDP is a view of an IPv6 packet that carries an NDP neighbour
// solicitation or advertisement (RFC 4861 §4.3, §4.4) right after its
// fixed header, the only way overlayd sends them and Linux does:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version|    Traffic Class      |          Flow Label           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Payload Length (24 + opts)   | Next Hdr (58) | Hop Limit(255)|
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|            Source Address (16 octets: 8-23)                   |
//	|            Destination Address (16 octets: 24-39)             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Type (135/136)|   Code (0)    |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|R|S|O|                     Reserved                            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|            Target Address (16 octets: 48-63)                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Type (1/2)   |  Length (1)   |   Link-Layer Address (MAC)... |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// (R, S, O: advertisements only.) Check IsValid before reading; the
// accessors panic on a view that is not valid. The encoders need
// len(n) >= NDPLen.
type NDP []byte

// IsNDP reports whether pkt, an IPv6 packet, looks like a neighbour
// solicitation or advertisement (its fixed header followed by ICMPv6 of
// one of the two types), cheaply, before IsValid checks it all.
func IsNDP(pkt []byte) bool {
	return len(pkt) > ipv6HeaderLen && pkt[0]>>4 == 6 && pkt[6] == icmpv6Proto &&
		(pkt[ipv6HeaderLen] == NDPSolicit || pkt[ipv6HeaderLen] == NDPAdvert)
}

// IsValid reports whether n is a well-formed neighbour solicitation or
// advertisement as RFC 4861 §7.1 has a node check it: IPv6 with ICMPv6
// right after the fixed header, hop limit 255, code 0, a payload length
// inside n that holds the message, a correct ICMPv6 checksum, a target
// that is not multicast, options each of a non-zero length within the
// payload, and, for an advertisement to a multicast group, the S flag
// clear. It allocates nothing.
func (n NDP) IsValid() bool {
	if !IsNDP(n) || len(n) < ipv6HeaderLen+ndpMsgLen {
		return false
	}
	pl := int(binary.BigEndian.Uint16(n[4:6]))
	if pl < ndpMsgLen || ipv6HeaderLen+pl > len(n) || n[7] != ndpHopLimit || n[ipv6HeaderLen+1] != 0 {
		return false
	}
	if n[48] == 0xff || n.sum(pl) != 0xffff {
		return false
	}
	if n.Type() == NDPAdvert && n[24] == 0xff && n.Solicited() {
		return false
	}
	_, ok := n.option(0)
	return ok
}

// sum is the ones' complement sum of the ICMPv6 message of length pl
// (checksum field included) and its pseudo-header (RFC 8200 §8.1).
func (n NDP) sum(pl int) uint16 {
	var ph [8]byte // upper-layer length and next header
	binary.BigEndian.PutUint32(ph[0:4], uint32(pl))
	ph[7] = icmpv6Proto
	s := checksum.Checksum(n[8:ipv6HeaderLen], 0) // source and destination
	s = checksum.Checksum(ph[:], s)
	return checksum.Checksum(n[ipv6HeaderLen:ipv6HeaderLen+pl], s)
}

// option finds the first option of type typ among n's options and
// returns its body (after type and length); typ 0 matches none, so it
// only checks that the options are well formed. ok is false when they
// are not.
func (n NDP) option(typ uint8) (body []byte, ok bool) {
	opts := n[ipv6HeaderLen+ndpMsgLen : n.end()]
	for range ndpMaxOptions {
		if len(opts) == 0 {
			return body, true
		}
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return nil, false
		}
		l := int(opts[1]) * 8
		if opts[0] == typ && body == nil {
			body = opts[2:l]
		}
		opts = opts[l:]
	}
	return body, len(opts) == 0
}

// end is where the IPv6 packet ends within n: what follows is padding
// (or overlayd's trailer).
func (n NDP) end() int { return ipv6HeaderLen + int(binary.BigEndian.Uint16(n[4:6])) }

// Type returns NDPSolicit or NDPAdvert.
func (n NDP) Type() uint8 { return n[ipv6HeaderLen] }

// Src returns the IPv6 source address (the unspecified address :: in a
// solicitation for duplicate address detection).
func (n NDP) Src() netip.Addr { return netip.AddrFrom16([16]byte(n[8:24])) }

// Dst returns the IPv6 destination address.
func (n NDP) Dst() netip.Addr { return netip.AddrFrom16([16]byte(n[24:40])) }

// Target returns the target address: the one asked about in a
// solicitation, the one advertised in an advertisement.
func (n NDP) Target() netip.Addr { return netip.AddrFrom16([16]byte(n[48:64])) }

// Router, Solicited and Override return an advertisement's R, S and O
// flags (RFC 4861 §4.4).
func (n NDP) Router() bool    { return n[44]&ndpFlagRouter != 0 }
func (n NDP) Solicited() bool { return n[44]&ndpFlagSolicited != 0 }
func (n NDP) Override() bool  { return n[44]&ndpFlagOverride != 0 }

// LinkAddr returns the MAC in the message's link-layer address option:
// the source's in a solicitation, the target's in an advertisement; ok is
// false when there is none (or it is not an Ethernet one).
func (n NDP) LinkAddr() (mac MAC, ok bool) {
	typ := uint8(ndpOptSourceLL)
	if n.Type() == NDPAdvert {
		typ = ndpOptTargetLL
	}
	body, _ := n.option(typ)
	if len(body) != 6 {
		return MAC{}, false
	}
	return MAC(body), true
}

// Trailer returns the capabilities in overlayd's trailer after the IPv6
// packet of n, a valid NDP view that runs to the end of its frame, and
// whether there is one.
func (n NDP) Trailer() (caps uint8, ok bool) {
	t := n[n.end():]
	if len(t) < TrailerLen || [4]byte(t[:4]) != trailerMagic || t[4] != 1 {
		return 0, false
	}
	return t[5], true
}

// EncodeSolicit writes a solicitation from srcMAC/src asking who has
// target, to target's solicited-node group (send it in a frame to
// MulticastMAC(SolicitedNode(target))). The addresses must be IPv6;
// anything else is a programmer error and panics.
func (n NDP) EncodeSolicit(srcMAC MAC, src, target netip.Addr) {
	n.encode(NDPSolicit, 0, ndpOptSourceLL, srcMAC, src, SolicitedNode(target), target)
}

// EncodeAdvert writes an advertisement from target saying that target is
// at mac, to dst (the solicitation's source, or AllNodes when that was
// unspecified), with the S flag when it answers a solicitation and the O
// flag always: the answer is the one true MAC, to be taken over any
// cached one. The addresses must be IPv6; anything else is a programmer
// error and panics.
func (n NDP) EncodeAdvert(mac MAC, target, dst netip.Addr, solicited bool) {
	flags := uint8(ndpFlagOverride)
	if solicited {
		flags |= ndpFlagSolicited
	}
	n.encode(NDPAdvert, flags, ndpOptTargetLL, mac, target, dst, target)
}

func (n NDP) encode(typ, flags, opt uint8, mac MAC, src, dst, target netip.Addr) {
	_ = n[NDPLen-1]
	if !src.Is6() || !dst.Is6() || !target.Is6() {
		panic("vxlan: NDP needs IPv6 addresses")
	}
	s, d, t := src.As16(), dst.As16(), target.As16()
	binary.BigEndian.PutUint32(n[0:4], 6<<28)
	binary.BigEndian.PutUint16(n[4:6], ndpMsgLen+ndpOptLen)
	n[6], n[7] = icmpv6Proto, ndpHopLimit
	copy(n[8:24], s[:])
	copy(n[24:40], d[:])
	m := n[ipv6HeaderLen:NDPLen]
	m[0], m[1], m[2], m[3] = typ, 0, 0, 0
	m[4], m[5], m[6], m[7] = flags, 0, 0, 0
	copy(m[8:24], t[:])
	m[24], m[25] = opt, 1
	copy(m[26:32], mac[:])
	binary.BigEndian.PutUint16(m[2:4], ^n.sum(ndpMsgLen+ndpOptLen))
}
