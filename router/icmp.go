package router

import (
	"net/netip"

	"github.com/overlayd/overlayd/packet"
)

// queueICMP builds an ICMPv4 error about p (packet's builder and rule)
// and queues it for the attachment. mtu is the next-hop MTU of
// "fragmentation needed".
func (r *Router) queueICMP(b *outBatch, p *packet.IP, typ, code uint8, mtu uint16) {
	network := r.networkOf(p.SrcAddr())
	if !packet.MayAnswer(p, network) {
		return
	}
	buf := b.ctlBuf()
	if buf == nil {
		return
	}
	n, err := packet.BuildICMPError(p, network, typ, code, mtu, buf[headroom:])
	if err != nil {
		return
	}
	if r.lb != nil {
		// p may have been DNATed to a backend: the client must see
		// the error about the packet it sent, from and to the VIP.
		r.lb.Inbound(buf[headroom : headroom+n])
	}
	b.icmp = append(b.icmp, buf[:headroom+n])
}

// networkOf returns the prefix of this node's network that holds a, or
// the zero Prefix: what packet.MayAnswer needs to know a directed broadcast.
func (r *Router) networkOf(a netip.Addr) netip.Prefix {
	for _, n := range *r.nets.Load() {
		if p := n.prefix(a); p.Contains(a) {
			return p.Masked()
		}
	}
	return netip.Prefix{}
}

// queueReset answers a client whose service flow has no backend: a TCP
// RST from the VIP for TCP, ICMP port unreachable for UDP.
func (r *Router) queueReset(b *outBatch, p *packet.IP) {
	network := r.networkOf(p.SrcAddr())
	if !packet.MayAnswer(p, network) {
		return
	}
	buf := b.ctlBuf()
	if buf == nil {
		return
	}
	out := buf[headroom:]
	var n int
	var err error
	switch p.Proto {
	case packet.TCP:
		n, err = packet.BuildTCPReset(p, network, out)
	case packet.UDP:
		n, err = packet.BuildICMPPortUnreachable(p, network, out)
	default:
		return
	}
	if err != nil || n == 0 {
		return
	}
	b.icmp = append(b.icmp, buf[:headroom+n])
}
