package lb

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// ResetTTL is the TTL of the packets BuildTCPReset and
// BuildICMPPortUnreachable build.
const ResetTTL = 64

// MaxICMPQuote bounds how much of the offending packet
// BuildICMPPortUnreachable quotes, so that the message fits in 576 bytes
// (RFC 1812, section 4.3.2.3).
const MaxICMPQuote = 576 - header.IPv4MinimumSize - header.ICMPv4MinimumSize

// Errors of the reset builders.
var (
	errShortBuffer = errors.New("lb: output buffer too short")
	errNotTCP      = errors.New("lb: not a valid unfragmented IPv4 TCP packet")
	errNotUDP      = errors.New("lb: not a valid unfragmented IPv4 UDP packet")
	errRST         = errors.New("lb: never answer a RST with a RST")
	errNoReply     = errors.New("lb: source address must not be answered")
)

// BuildTCPReset writes to out the TCP RST that answers pkt, a packet a
// client sent to a VIP (as given to Outbound, before any rewrite): from the
// VIP and port back to the client, with sequence and acknowledgment numbers
// per RFC 9293 section 3.10.7.1 (seq = the segment's ACK if it has one;
// otherwise seq 0 and ACK = SEG.SEQ + SEG.LEN). It returns the length
// written (40 bytes). It fails for a RST, anything but a valid IPv4 TCP
// packet, and an out shorter than 40 bytes.
func BuildTCPReset(pkt []byte, out []byte) (int, error) {
	p, ok, _ := parse(pkt)
	if !ok || p.proto != uint8(TCP) {
		return 0, errNotTCP
	}
	if p.flags&flagRST != 0 {
		return 0, errRST
	}
	if !MayAnswer(pkt, netip.Prefix{}) {
		return 0, errNoReply
	}
	const n = header.IPv4MinimumSize + header.TCPMinimumSize
	if len(out) < n {
		return 0, errShortBuffer
	}
	in := header.TCP(p.l4)
	var seq, ack uint32
	flags := header.TCPFlagRst
	if p.flags&flagACK != 0 {
		seq = in.AckNumber()
	} else {
		segLen := uint32(len(in) - int(in.DataOffset()))
		if p.flags&flagSYN != 0 {
			segLen++
		}
		if p.flags&flagFIN != 0 {
			segLen++
		}
		ack = in.SequenceNumber() + segLen
		flags |= header.TCPFlagAck
	}
	writeIPv4(out[:header.IPv4MinimumSize], n, uint8(TCP), p.key.dst, p.key.src)
	t := header.TCP(out[header.IPv4MinimumSize:n])
	t.Encode(&header.TCPFields{
		SrcPort:    p.key.dport,
		DstPort:    p.key.sport,
		SeqNum:     seq,
		AckNum:     ack,
		DataOffset: header.TCPMinimumSize,
		Flags:      flags,
	})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpip.AddrFrom4(p.key.dst), tcpip.AddrFrom4(p.key.src), header.TCPMinimumSize)
	t.SetChecksum(^t.CalculateChecksum(xsum))
	return n, nil
}

// BuildICMPPortUnreachable writes to out the ICMP destination unreachable
// (port unreachable) message that answers pkt, a UDP packet a client sent
// to a VIP (as given to Outbound, before any rewrite): from the VIP back to
// the client, quoting pkt up to MaxICMPQuote bytes. It returns the length
// written; out needs 576 bytes at most. It fails for anything but a valid
// IPv4 UDP packet from a unicast address, and for a short out.
func BuildICMPPortUnreachable(pkt []byte, out []byte) (int, error) {
	p, ok, _ := parse(pkt)
	if !ok || p.proto != uint8(UDP) {
		return 0, errNotUDP
	}
	if !MayAnswer(pkt, netip.Prefix{}) {
		return 0, errNoReply
	}
	quote := pkt[:len(p.ip)+len(p.l4)]
	if len(quote) > MaxICMPQuote {
		quote = quote[:MaxICMPQuote]
	}
	n := header.IPv4MinimumSize + header.ICMPv4MinimumSize + len(quote)
	if len(out) < n {
		return 0, errShortBuffer
	}
	writeIPv4(out[:header.IPv4MinimumSize], n, uint8(icmpProto), p.key.dst, p.key.src)
	icmp := header.ICMPv4(out[header.IPv4MinimumSize:n])
	clear(icmp[:header.ICMPv4MinimumSize])
	icmp.SetType(header.ICMPv4DstUnreachable)
	icmp.SetCode(header.ICMPv4PortUnreachable)
	copy(icmp[header.ICMPv4MinimumSize:], quote)
	icmp.SetChecksum(^checksum.Checksum(icmp, 0))
	return n, nil
}

// writeIPv4 writes a 20-byte IPv4 header with DF set.
func writeIPv4(b []byte, total int, proto uint8, src, dst [4]byte) {
	h := header.IPv4(b)
	h.Encode(&header.IPv4Fields{
		TotalLength: uint16(total),
		Flags:       header.IPv4FlagDontFragment,
		TTL:         ResetTTL,
		Protocol:    proto,
		SrcAddr:     tcpip.AddrFrom4(src),
		DstAddr:     tcpip.AddrFrom4(dst),
	})
	binary.BigEndian.PutUint16(b[ipChecksum:], 0)
	h.SetChecksum(^h.CalculateChecksum())
}

// replyable reports whether an error may be sent to src, whatever its
// network: MayAnswer's rule for a source address.
func replyable(src [4]byte) bool { return singleHost(netip.AddrFrom4(src), netip.Prefix{}) }

// MayAnswer is the one rule for when a packet may be answered with an
// error of our own making (ICMP destination unreachable or fragmentation
// needed, TCP RST), after RFC 1122 section 3.2.2 and RFC 1812 section
// 4.3.2.7: never about a packet whose source or destination is not a
// single host (unspecified, loopback, multicast, class E, the limited
// broadcast 255.255.255.255, or the directed broadcast of network), nor
// about a non-initial fragment, nor about an ICMP error. pkt is an IPv4
// packet (checked by the caller); network is the prefix of the overlay
// network the packet is on, as configured (10.1.0.0/16 makes 10.1.255.255
// a broadcast and 10.1.0.255 a host), or the zero Prefix when unknown.
// Both the router's ICMP errors and the balancer's resets follow it.
func MayAnswer(pkt []byte, network netip.Prefix) bool {
	if len(pkt) < header.IPv4MinimumSize {
		return false
	}
	ip := header.IPv4(pkt)
	if ip.FragmentOffset() != 0 {
		return false
	}
	if !singleHost(netip.AddrFrom4([4]byte(pkt[12:16])), network) || !singleHost(netip.AddrFrom4([4]byte(pkt[16:20])), network) {
		return false
	}
	if ip.Protocol() == uint8(header.ICMPv4ProtocolNumber) {
		hl := int(ip.HeaderLength())
		if hl < header.IPv4MinimumSize || len(pkt) <= hl {
			return false
		}
		switch header.ICMPv4Type(pkt[hl]) {
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
