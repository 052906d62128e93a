package router

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/lb"
)

const (
	icmpDestUnreachable = 3
	icmpNetUnreachable  = 0
	icmpHostUnreachable = 1
	icmpFragNeeded      = 4
	icmpMaxLen          = 576 // RFC 1812 §4.3.2.3: an ICMP error fits 576 bytes
)

// validIPv4 checks an IPv4 packet and trims it to its total length
// (Ethernet padding, TUN slack).
func validIPv4(pkt []byte) ([]byte, bool) {
	ip := header.IPv4(pkt)
	if len(pkt) < header.IPv4MinimumSize || !ip.IsValid(len(pkt)) {
		return nil, false
	}
	return pkt[:ip.TotalLength()], true
}

// queueICMP builds an ICMPv4 error about orig and queues it for the
// attachment. The error seems to come from orig's destination: the host
// drops ICMP from its own address as martian, and to the host the overlay
// is one link. mtu is the next-hop MTU of "fragmentation needed".
func (r *Router) queueICMP(b *outBatch, orig []byte, typ, code uint8, mtu uint16) {
	if !mayAnswerWithICMP(orig) {
		return
	}
	buf := b.ctlBuf()
	if buf == nil {
		return
	}
	quote := min(len(orig), icmpMaxLen-header.IPv4MinimumSize-header.ICMPv4MinimumSize)
	total := header.IPv4MinimumSize + header.ICMPv4MinimumSize + quote
	pkt := buf[headroom : headroom+total]

	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(total),
		TTL:         64,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     header.IPv4(orig).DestinationAddress(),
		DstAddr:     header.IPv4(orig).SourceAddress(),
	})
	ip.SetChecksum(^ip.CalculateChecksum())

	ic := header.ICMPv4(pkt[header.IPv4MinimumSize:])
	ic.SetType(header.ICMPv4Type(typ))
	ic.SetCode(header.ICMPv4Code(code))
	binary.BigEndian.PutUint32(ic[4:8], uint32(mtu)) // unused, or next-hop MTU in the low 16 bits
	copy(ic[header.ICMPv4MinimumSize:], orig[:quote])
	ic.SetChecksum(0)
	ic.SetChecksum(^checksum.Checksum(ic, 0))
	b.icmp = append(b.icmp, buf[:headroom+total])
}

// mayAnswerWithICMP follows RFC 1122 §3.2.2: no ICMP error about an ICMP
// error, a non-initial fragment, or a packet to or from a multicast or
// broadcast address.
func mayAnswerWithICMP(orig []byte) bool {
	ip := header.IPv4(orig)
	if ip.FragmentOffset() != 0 {
		return false
	}
	src, dst := orig[12], orig[16]
	if src >= 224 || dst >= 224 || src == 0 || orig[19] == 255 {
		return false
	}
	if ip.Protocol() == uint8(header.ICMPv4ProtocolNumber) {
		hl := int(ip.HeaderLength())
		if len(orig) < hl+1 {
			return false
		}
		switch orig[hl] { // ICMP type
		case 0, 8, 13, 14, 15, 16, 17, 18: // echo, timestamp, info, mask: queries
		default:
			return false
		}
	}
	return true
}

// queueReset answers a client whose service flow has no backend: a TCP
// RST from the VIP for TCP, ICMP port unreachable for UDP.
func (r *Router) queueReset(b *outBatch, orig []byte) {
	buf := b.ctlBuf()
	if buf == nil {
		return
	}
	out := buf[headroom:]
	var n int
	var err error
	switch header.IPv4(orig).Protocol() {
	case uint8(header.TCPProtocolNumber):
		n, err = lb.BuildTCPReset(orig, out)
	case uint8(header.UDPProtocolNumber):
		n, err = lb.BuildICMPPortUnreachable(orig, out)
	default:
		return
	}
	if err != nil || n == 0 {
		return
	}
	b.icmp = append(b.icmp, buf[:headroom+n])
}
