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
	if !replyable(p.key.src) {
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
	if !replyable(p.key.src) {
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

// replyable reports whether an error may be sent to src (RFC 1122 3.2.2:
// never to a broadcast, multicast or unspecified source).
func replyable(src [4]byte) bool {
	a := netip.AddrFrom4(src)
	return !a.IsUnspecified() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
