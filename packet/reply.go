package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// ReplyTTL is the TTL (IPv6: hop limit) of the packets the builders write.
const ReplyTTL = 64

// MaxICMPQuote bounds how much of the offending packet an ICMP error
// quotes, so that the message fits in 576 bytes (RFC 1812 §4.3.2.3).
const MaxICMPQuote = 576 - header.IPv4MinimumSize - header.ICMPv4MinimumSize

// ICMP types and codes of the errors we send.
const (
	ICMPDestUnreachable = uint8(header.ICMPv4DstUnreachable)  // 3
	ICMPNetUnreachable  = uint8(header.ICMPv4NetUnreachable)  // 0
	ICMPHostUnreachable = uint8(header.ICMPv4HostUnreachable) // 1
	ICMPPortUnreachable = uint8(header.ICMPv4PortUnreachable) // 3
	ICMPFragNeeded      = uint8(header.ICMPv4FragmentationNeeded)
)

// Errors of the builders.
var (
	ErrShortBuffer = errors.New("packet: output buffer too short")
	ErrNotTCP      = errors.New("packet: not a valid unfragmented TCP packet")
	ErrNotUDP      = errors.New("packet: not a valid unfragmented UDP packet")
	ErrRST         = errors.New("packet: never answer a RST with a RST")
	ErrNoReply     = errors.New("packet: this packet must not be answered (MayAnswer)")
	ErrFamily      = errors.New("packet: an ICMP error of one IP family about a packet of the other")
)

// MayAnswer is the one rule for when a packet may be answered with an
// error of our own making (ICMP destination unreachable or fragmentation
// needed, ICMPv6 destination unreachable or packet too big, TCP RST).
//
// For IPv4, after RFC 1122 §3.2.2 and RFC 1812 §4.3.2.7: never about a
// packet whose source or destination is not a single host (unspecified,
// loopback, multicast, class E, the limited broadcast 255.255.255.255, or
// the directed broadcast of network), nor about a non-initial fragment,
// nor about an ICMP error.
//
// For IPv6, after RFC 4443 §2.4(e): never about an ICMPv6 error or a
// redirect, nor about a packet to a multicast address (we make no use of
// the exceptions for packet too big and parameter problem), nor about one
// whose source is not a single node (unspecified, multicast, or the
// subnet-router anycast address of network, RFC 4291 §2.6.1); nor, as for
// IPv4, about loopback addresses or a non-initial fragment.
//
// network is the prefix of the overlay network the packet is on, as
// configured (10.1.0.0/16 makes 10.1.255.255 a broadcast and 10.1.0.255 a
// host; fd00::/64 makes fd00:: the subnet-router anycast), or the zero
// Prefix when unknown. Every builder of this package applies it.
func MayAnswer(p *IP, network netip.Prefix) bool {
	if p.v6 {
		return mayAnswer6(p, network)
	}
	if len(p.b) < header.IPv4MinimumSize || p.FragmentOffset() != 0 {
		return false
	}
	if !singleHost(p.SrcAddr(), network) || !singleHost(p.DstAddr(), network) {
		return false
	}
	if p.Proto == ICMP {
		if len(p.Payload()) == 0 {
			return false
		}
		switch header.ICMPv4Type(p.ICMPType) {
		case header.ICMPv4Echo, header.ICMPv4EchoReply, header.ICMPv4Timestamp, header.ICMPv4TimestampReply,
			header.ICMPv4InfoRequest, header.ICMPv4InfoReply, 17, 18: // queries; 17, 18: address mask
		default:
			return false // an error, or a type we do not know: never answer it
		}
	}
	return true
}

// singleHost reports whether a names a single host: not unspecified,
// loopback, multicast, class E or the limited broadcast, and not the
// directed broadcast (all host bits set) of network. Networks of /31 and
// /32 have no broadcast address (RFC 3021).
func singleHost(a netip.Addr, network netip.Prefix) bool {
	b := a.As4()
	if a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || b[0] >= 240 {
		return false // 240.0.0.0/4 holds class E and 255.255.255.255
	}
	if network.IsValid() && network.Addr().Is4() && network.Bits() < 31 && network.Contains(a) {
		host := ^uint32(0) >> network.Bits()
		if binary.BigEndian.Uint32(b[:])&host == host {
			return false
		}
	}
	return true
}

// BuildICMPError writes to out the ICMPv4 error of type typ and code
// about p, an IPv4 packet, quoting p up to MaxICMPQuote bytes; mtu is the
// next-hop MTU of "fragmentation needed" (0 otherwise). The error comes
// from p's destination: to the sender the overlay is one link, and a host
// drops ICMP from its own address as martian. It returns the length
// written (out needs 576 bytes at most), or ErrNoReply when MayAnswer(p,
// network) says no, ErrFamily for an IPv6 packet (see BuildICMPv6Error,
// or BuildAnswer for either), or ErrShortBuffer.
func BuildICMPError(p *IP, network netip.Prefix, typ, code uint8, mtu uint16, out []byte) (int, error) {
	if p.v6 {
		return 0, ErrFamily
	}
	if !MayAnswer(p, network) {
		return 0, ErrNoReply
	}
	quote := p.b[:min(len(p.b), MaxICMPQuote)]
	n := header.IPv4MinimumSize + header.ICMPv4MinimumSize + len(quote)
	if len(out) < n {
		return 0, ErrShortBuffer
	}
	writeIPv4(out[:header.IPv4MinimumSize], n, ICMP, [4]byte(p.Dst[12:]), [4]byte(p.Src[12:]))
	ic := header.ICMPv4(out[header.IPv4MinimumSize:n])
	ic.SetType(header.ICMPv4Type(typ))
	ic.SetCode(header.ICMPv4Code(code))
	binary.BigEndian.PutUint32(ic[4:8], uint32(mtu)) // unused, or next-hop MTU in the low 16 bits
	copy(ic[header.ICMPv4MinimumSize:], quote)
	ic.SetChecksum(0)
	ic.SetChecksum(^checksum.Checksum(ic, 0))
	return n, nil
}

// BuildICMPPortUnreachable writes to out the port unreachable (ICMP, or
// ICMPv6 for an IPv6 packet) that answers p, a UDP datagram (a client's,
// to a VIP with no backend, before any rewrite). It fails with ErrNotUDP
// for anything but a valid unfragmented UDP packet, and as BuildICMPError
// (or BuildICMPv6Error) otherwise.
func BuildICMPPortUnreachable(p *IP, network netip.Prefix, out []byte) (int, error) {
	if p.Proto != UDP || p.Fragment() || !p.l4Valid {
		return 0, ErrNotUDP
	}
	if p.v6 {
		return BuildICMPv6Error(p, network, ICMPv6DestUnreachable, ICMPv6PortUnreachable, 0, out)
	}
	return BuildICMPError(p, network, ICMPDestUnreachable, ICMPPortUnreachable, 0, out)
}

// BuildTCPReset writes to out the TCP RST that answers p, a segment a
// client sent (to a VIP, before any rewrite), over IPv4 or IPv6 as p
// came: from p's destination address and port back to its source, with
// sequence and acknowledgment numbers per RFC 9293 §3.10.7.1 (seq = the
// segment's ACK if it has one; otherwise seq 0 and ACK = SEG.SEQ +
// SEG.LEN). It returns the length written (40 bytes, 60 for IPv6). It
// fails for a RST (ErrRST), anything but a valid unfragmented TCP segment
// (ErrNotTCP), a packet MayAnswer refuses (ErrNoReply) and an out too
// short (ErrShortBuffer).
func BuildTCPReset(p *IP, network netip.Prefix, out []byte) (int, error) {
	if p.Proto != TCP || p.Fragment() || !p.l4Valid {
		return 0, ErrNotTCP
	}
	if p.TCPFlags&FlagRST != 0 {
		return 0, ErrRST
	}
	if !MayAnswer(p, network) {
		return 0, ErrNoReply
	}
	hl := header.IPv4MinimumSize
	if p.v6 {
		hl = header.IPv6MinimumSize
	}
	n := hl + header.TCPMinimumSize
	if len(out) < n {
		return 0, ErrShortBuffer
	}
	in := header.TCP(p.Payload())
	var seq, ack uint32
	flags := header.TCPFlagRst
	if p.TCPFlags&FlagACK != 0 {
		seq = in.AckNumber()
	} else {
		segLen := uint32(len(in) - int(in.DataOffset()))
		if p.TCPFlags&FlagSYN != 0 {
			segLen++
		}
		if p.TCPFlags&FlagFIN != 0 {
			segLen++
		}
		ack = in.SequenceNumber() + segLen
		flags |= header.TCPFlagAck
	}
	var src, dst tcpip.Address
	if p.v6 {
		writeIPv6(out[:hl], header.TCPMinimumSize, TCP, &p.Dst, &p.Src)
		src, dst = tcpip.AddrFrom16(p.Dst), tcpip.AddrFrom16(p.Src)
	} else {
		s, d := [4]byte(p.Dst[12:]), [4]byte(p.Src[12:])
		writeIPv4(out[:hl], n, TCP, s, d)
		src, dst = tcpip.AddrFrom4(s), tcpip.AddrFrom4(d)
	}
	t := header.TCP(out[hl:n])
	t.Encode(&header.TCPFields{
		SrcPort:    p.DPort,
		DstPort:    p.SPort,
		SeqNum:     seq,
		AckNum:     ack,
		DataOffset: header.TCPMinimumSize,
		Flags:      flags,
	})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, header.TCPMinimumSize)
	t.SetChecksum(^t.CalculateChecksum(xsum))
	return n, nil
}

// writeIPv4 writes a 20-byte IPv4 header with DF set.
func writeIPv4(b []byte, total int, proto uint8, src, dst [4]byte) {
	h := header.IPv4(b)
	h.Encode(&header.IPv4Fields{
		TotalLength: uint16(total),
		Flags:       header.IPv4FlagDontFragment,
		TTL:         ReplyTTL,
		Protocol:    proto,
		SrcAddr:     tcpip.AddrFrom4(src),
		DstAddr:     tcpip.AddrFrom4(dst),
	})
	binary.BigEndian.PutUint16(b[OffChecksum:], 0)
	h.SetChecksum(^h.CalculateChecksum())
}
