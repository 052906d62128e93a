package flow

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// IP protocol numbers that FromPacket reads ports (or an echo identifier) from.
const (
	ProtoICMP   = uint8(header.ICMPv4ProtocolNumber) // 1
	ProtoTCP    = uint8(header.TCPProtocolNumber)    // 6
	ProtoUDP    = uint8(header.UDPProtocolNumber)    // 17
	ProtoICMPv6 = uint8(header.ICMPv6ProtocolNumber) // 58
	ProtoSCTP   = 132
)

// Key is the 5-tuple of an IP flow, packed: addresses as 16 bytes (IPv4 in
// its IPv4-mapped IPv6 form, with a family flag so a real IPv6 packet that
// carries ::ffff:a.b.c.d is a different flow), ports, protocol. It holds no
// pointers, is comparable, and is meant to be used by value as a map key.
//
// The zero Key is no flow; see IsValid. Build one with FromPacket or MakeKey.
//
// Ports are 0 for protocols without ports and for IP fragments (an IPv4
// fragment, first or not, or an IPv6 packet with a Fragment header that is
// not atomic), so all fragments of a datagram are one flow. For ICMP and
// ICMPv6 echo request and reply both ports hold the echo identifier, so a
// request and its reply are one flow reversed (see Reverse).
type Key struct {
	// The addresses as 16 bytes in two big-endian words each, as netip
	// keeps them. Words rather than arrays keep Key in registers across
	// calls and let the hashes load it without byte shuffling.
	srcHi, srcLo, dstHi, dstLo uint64
	sport, dport               uint16
	proto                      uint8
	family                     uint8 // 0 (zero Key), 4 or 6
}

// MakeKey returns the key of the flow from src to dst over proto, equal to
// what FromPacket returns for such a packet. src and dst should be of the
// same family; the key's family is that of src. An IPv4-mapped IPv6 address
// is IPv6 here, as it is on the wire: Unmap addresses from a dual-stack
// socket first. An invalid src gives the zero (invalid) family.
func MakeKey(proto uint8, src, dst netip.AddrPort) Key {
	s, d := src.Addr().As16(), dst.Addr().As16()
	k := Key{
		srcHi: binary.BigEndian.Uint64(s[:8]),
		srcLo: binary.BigEndian.Uint64(s[8:]),
		dstHi: binary.BigEndian.Uint64(d[:8]),
		dstLo: binary.BigEndian.Uint64(d[8:]),
		sport: src.Port(),
		dport: dst.Port(),
		proto: proto,
	}
	switch {
	case src.Addr().Is4():
		k.family = 4
	case src.Addr().Is6():
		k.family = 6
	}
	return k
}

// IsValid reports whether k is a flow (not the zero Key).
func (k Key) IsValid() bool { return k.family != 0 }

// Is4 reports whether k is an IPv4 flow.
func (k Key) Is4() bool { return k.family == 4 }

// Src returns the source address and port.
func (k Key) Src() netip.AddrPort { return netip.AddrPortFrom(k.addr(k.srcHi, k.srcLo), k.sport) }

// Dst returns the destination address and port.
func (k Key) Dst() netip.AddrPort { return netip.AddrPortFrom(k.addr(k.dstHi, k.dstLo), k.dport) }

// Proto returns the IP protocol number (for IPv6, that of the upper-layer
// header after any extension headers).
func (k Key) Proto() uint8 { return k.proto }

// Reverse returns the key of the opposite direction of the flow.
func (k Key) Reverse() Key {
	k.srcHi, k.srcLo, k.dstHi, k.dstLo = k.dstHi, k.dstLo, k.srcHi, k.srcLo
	k.sport, k.dport = k.dport, k.sport
	return k
}

func (k Key) addr(hi, lo uint64) netip.Addr {
	var a [16]byte
	binary.BigEndian.PutUint64(a[:8], hi)
	binary.BigEndian.PutUint64(a[8:], lo)
	switch k.family {
	case 4:
		return netip.AddrFrom4([4]byte(a[12:]))
	case 6:
		return netip.AddrFrom16(a)
	}
	return netip.Addr{}
}

// String returns "proto src -> dst", for logs and tests (it allocates).
func (k Key) String() string {
	if !k.IsValid() {
		return "invalid"
	}
	var p string
	switch k.proto {
	case ProtoTCP:
		p = "tcp"
	case ProtoUDP:
		p = "udp"
	case ProtoICMP:
		p = "icmp"
	case ProtoICMPv6:
		p = "icmpv6"
	case ProtoSCTP:
		p = "sctp"
	default:
		p = fmt.Sprintf("proto-%d", k.proto)
	}
	return p + " " + k.Src().String() + " -> " + k.Dst().String()
}

// v4Mapped is the low word of ::ffff:0.0.0.0, the IPv4-mapped prefix.
const v4Mapped = 0xffff << 32

// FromPacket returns the flow key of an IPv4 or IPv6 packet (pkt starts at
// the IP header; bytes after the IP total/payload length are ignored). It
// reports false for anything else and for a malformed or truncated packet:
// an IP header that gVisor's IsValid rejects, an IPv6 extension header chain
// that runs off the payload (or is longer than 8 headers), or a TCP, UDP,
// SCTP or ICMP header shorter than its minimum. It never panics and
// allocates nothing.
func FromPacket(pkt []byte) (Key, bool) {
	sh, sl, dh, dl, e, ok := parse(pkt)
	if !ok {
		return Key{}, false
	}
	return Key{
		srcHi: sh, srcLo: sl, dstHi: dh, dstLo: dl,
		sport: uint16(e), dport: uint16(e >> 16), proto: uint8(e >> 32), family: uint8(e >> 40),
	}, true
}

// parse is FromPacket returning the key as its five words (see Key.words),
// which stay in registers: Hash uses them without building a Key in memory.
func parse(pkt []byte) (sh, sl, dh, dl, e uint64, ok bool) {
	if len(pkt) == 0 {
		return
	}
	switch pkt[0] >> 4 {
	case header.IPv4Version:
		return parseIPv4(pkt)
	case header.IPv6Version:
		return parseIPv6(pkt)
	}
	return
}

// tail packs the fifth key word.
func tail(sport, dport uint16, proto, family uint8) uint64 {
	return uint64(sport) | uint64(dport)<<16 | uint64(proto)<<32 | uint64(family)<<40
}

func parseIPv4(pkt []byte) (sh, sl, dh, dl, e uint64, ok bool) {
	ip := header.IPv4(pkt)
	if !ip.IsValid(len(pkt)) {
		return
	}
	sl = v4Mapped | uint64(binary.BigEndian.Uint32(pkt[12:16]))
	dl = v4Mapped | uint64(binary.BigEndian.Uint32(pkt[16:20]))
	proto := ip.Protocol()
	if ip.More() || ip.FragmentOffset() != 0 {
		return 0, sl, 0, dl, tail(0, 0, proto, 4), true
	}
	sport, dport, ok := ports(proto, ProtoICMP, pkt[ip.HeaderLength():ip.TotalLength()])
	if !ok {
		return 0, 0, 0, 0, 0, false
	}
	return 0, sl, 0, dl, tail(sport, dport, proto, 4), true
}

// maxExtHeaders bounds the IPv6 extension header walk.
const maxExtHeaders = 8

func parseIPv6(pkt []byte) (sh, sl, dh, dl, e uint64, ok bool) {
	ip := header.IPv6(pkt)
	if !ip.IsValid(len(pkt)) {
		return
	}
	sh = binary.BigEndian.Uint64(pkt[8:16])
	sl = binary.BigEndian.Uint64(pkt[16:24])
	dh = binary.BigEndian.Uint64(pkt[24:32])
	dl = binary.BigEndian.Uint64(pkt[32:40])
	payload := pkt[header.IPv6MinimumSize : header.IPv6MinimumSize+int(ip.PayloadLength())]
	next := pkt[6]
	for range maxExtHeaders {
		var n int
		switch header.IPv6ExtensionHeaderIdentifier(next) {
		case header.IPv6HopByHopOptionsExtHdrIdentifier,
			header.IPv6RoutingExtHdrIdentifier,
			header.IPv6DestinationOptionsExtHdrIdentifier:
			if len(payload) < 8 {
				return 0, 0, 0, 0, 0, false
			}
			n = (int(payload[1]) + 1) * 8
		case header.IPv6FragmentExtHdrIdentifier:
			if len(payload) < header.IPv6FragmentExtHdrLength {
				return 0, 0, 0, 0, 0, false
			}
			if binary.BigEndian.Uint16(payload[2:4])&^6 != 0 { // offset or M set
				return sh, sl, dh, dl, tail(0, 0, payload[0], 6), true
			}
			n = header.IPv6FragmentExtHdrLength
		case ipv6AuthHeader:
			if len(payload) < 8 {
				return 0, 0, 0, 0, 0, false
			}
			n = (int(payload[1]) + 2) * 4
		default:
			sport, dport, ok := ports(next, ProtoICMPv6, payload)
			if !ok {
				return 0, 0, 0, 0, 0, false
			}
			return sh, sl, dh, dl, tail(sport, dport, next, 6), true
		}
		if n > len(payload) {
			return 0, 0, 0, 0, 0, false
		}
		next = payload[0]
		payload = payload[n:]
	}
	return 0, 0, 0, 0, 0, false
}

// ipv6AuthHeader is the IP Authentication Header (RFC 4302), whose length
// field counts 4-byte units minus 2.
const ipv6AuthHeader = 51

// ports returns the ports of the transport header of protocol proto at the
// start of l4, and false if it is too short; icmp is the ICMP of the IP
// version (ProtoICMP or ProtoICMPv6), whose echo identifier is used for both
// ports.
func ports(proto, icmp uint8, l4 []byte) (sport, dport uint16, ok bool) {
	switch proto {
	case ProtoTCP:
		if len(l4) < header.TCPMinimumSize {
			return 0, 0, false
		}
		if off := int(header.TCP(l4).DataOffset()); off < header.TCPMinimumSize || off > len(l4) {
			return 0, 0, false
		}
	case ProtoUDP:
		if len(l4) < header.UDPMinimumSize {
			return 0, 0, false
		}
		if n := int(header.UDP(l4).Length()); n < header.UDPMinimumSize || n > len(l4) {
			return 0, 0, false
		}
	case ProtoSCTP:
		if len(l4) < 12 { // RFC 9260 common header
			return 0, 0, false
		}
	case icmp:
		if len(l4) < header.ICMPv4MinimumSize { // == ICMPv6MinimumSize
			return 0, 0, false
		}
		switch l4[0] {
		case uint8(header.ICMPv4Echo), uint8(header.ICMPv4EchoReply):
			if icmp != ProtoICMP {
				return 0, 0, true
			}
		case uint8(header.ICMPv6EchoRequest), uint8(header.ICMPv6EchoReply):
			if icmp != ProtoICMPv6 {
				return 0, 0, true
			}
		default:
			return 0, 0, true
		}
		id := binary.BigEndian.Uint16(l4[4:6])
		return id, id, true
	default: // no ports; also ICMP in the other IP version
		return 0, 0, true
	}
	return binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4]), true
}
