package router

import (
	"encoding/binary"
	"net/netip"

	"github.com/overlayd/overlayd/packet"
)

// queueAnswer builds answer a about p, of either family (packet's
// builders and rule: ICMP, ICMPv6 or a TCP RST), and queues it for the
// device the batch was read from. mtu is the MTU of packet.AnswerTooBig.
func (r *Router) queueAnswer(b *outBatch, p *packet.IP, a packet.Answer, mtu int) {
	network := r.networkOf(srcAddr(p))
	if !packet.MayAnswer(p, network) {
		return
	}
	buf := b.ctlBuf()
	if p.Is6() {
		buf = b.ctlBuf6()
	}
	if buf == nil {
		return
	}
	n, err := packet.BuildAnswer(p, network, a, mtu, buf[headroom:])
	if err != nil || n == 0 {
		return
	}
	if r.lb != nil && a != packet.AnswerReset {
		// p may have been DNATed to a backend: the client must see
		// the error about the packet it sent, from and to the VIP.
		r.lb.Inbound(buf[headroom : headroom+n])
	}
	b.icmp = append(b.icmp, buf[:headroom+n])
}

// networkOf returns the prefix of this node's network that holds a (of
// a's family), or the zero Prefix: what packet.MayAnswer needs to know a
// directed broadcast or a subnet-router anycast address.
func (r *Router) networkOf(a netip.Addr) netip.Prefix {
	for _, n := range *r.nets.Load() {
		if p := n.prefix(a); p.Contains(a) {
			return p.Masked()
		}
	}
	return netip.Prefix{}
}

// parseDrop is why a packet the view refused is dropped: DropExtHeaders
// for an IPv6 packet whose fixed header is sound (its extension header
// chain is what the view refused: too long, out of order or cut short),
// else DropMalformed.
func parseDrop(pkt []byte) DropReason {
	const fixed = 40
	if len(pkt) < fixed || pkt[0]>>4 != 6 || fixed+int(binary.BigEndian.Uint16(pkt[4:6])) > len(pkt) ||
		packet.Is4([16]byte(pkt[packet.OffSrc6:])) || packet.Is4([16]byte(pkt[packet.OffDst6:])) {
		return DropMalformed
	}
	return DropExtHeaders
}

// srcAddr and dstAddr are p's addresses as netip values (IPv4 unmapped),
// read from the tuple's bytes in place: packet.Tuple's methods take the
// tuple by value, a copy of 40 bytes per call that was a fifth of the
// local switching path.
func srcAddr(p *packet.IP) netip.Addr {
	if p.Is6() {
		return netip.AddrFrom16(p.Src)
	}
	return netip.AddrFrom4([4]byte(p.Src[12:16]))
}

func dstAddr(p *packet.IP) netip.Addr {
	if p.Is6() {
		return netip.AddrFrom16(p.Dst)
	}
	return netip.AddrFrom4([4]byte(p.Dst[12:16]))
}
