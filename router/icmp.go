package router

import (
	"encoding/binary"
	"net/netip"

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
	if !r.mayAnswer(orig) {
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
	if r.lb != nil {
		// orig may have been DNATed to a backend: the client must see
		// the error about the packet it sent, from and to the VIP.
		r.lb.Inbound(pkt)
	}
	b.icmp = append(b.icmp, buf[:headroom+total])
}

// networkOf returns the prefix of this node's network that holds a, or
// the zero Prefix: what lb.MayAnswer needs to know a directed broadcast.
func (r *Router) networkOf(a netip.Addr) netip.Prefix {
	for _, n := range *r.nets.Load() {
		if n.Addr.Contains(a) {
			return n.Addr.Masked()
		}
	}
	return netip.Prefix{}
}

// mayAnswer applies the one rule for our own errors (lb.MayAnswer) to a
// packet from the attachment.
func (r *Router) mayAnswer(orig []byte) bool {
	return lb.MayAnswer(orig, r.networkOf(netip.AddrFrom4([4]byte(orig[12:16]))))
}

// queueReset answers a client whose service flow has no backend: a TCP
// RST from the VIP for TCP, ICMP port unreachable for UDP.
func (r *Router) queueReset(b *outBatch, orig []byte) {
	if !r.mayAnswer(orig) {
		return
	}
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
