package router

import (
	"net/netip"

	"github.com/overlayd/overlayd/vxlan"
)

// IPv6 neighbour discovery inside the tunnel (RFC 4861), as ARP is for
// IPv4 (inboundARP, queueARPRequest): solicitations for the node's IPv6
// address and the hosted endpoints' are answered with the node's MAC, the
// MACs of peers are learned from their solicitations and advertisements
// (only from the VTEP that owns the address), and a packet for a peer
// whose MAC is unknown waits in the pending queue behind a solicitation.
// Both messages carry overlayd's trailer after the IPv6 packet, where a
// Linux host sees padding, so an overlayd VTEP on an IPv6-only network
// still says what it takes.

// etherType is the inner EtherType of an IP packet to a.
func etherType(a netip.Addr) uint16 {
	if a.Is4() {
		return vxlan.EtherTypeIPv4
	}
	return vxlan.EtherTypeIPv6
}

// queueSolicit asks vtep for k.ip's MAC inside the tunnel: an ARP request
// for an IPv4 address, a neighbour solicitation for an IPv6 one.
func (r *Router) queueSolicit(b *outBatch, k neighKey, vtep netip.AddrPort) {
	if k.ip.Is4() {
		r.queueARPRequest(b, k, vtep)
		return
	}
	nw, ok := (*r.nets.Load())[k.vni]
	if !ok || !nw.v6.IsValid() {
		return
	}
	buf := b.ctlBuf()
	if buf == nil {
		return
	}
	vxlan.NDP(buf[headroom:headroom+vxlan.NDPLen]).EncodeSolicit(r.mac, nw.v6.Addr(), k.ip)
	vxlan.EncodeTrailer(buf[headroom+vxlan.NDPLen:], vxlan.TrailerPartial)
	dst := vxlan.MulticastMAC(vxlan.SolicitedNode(k.ip))
	d := vxlan.Encap(buf, headroom, vxlan.NDPLen+vxlan.TrailerLen, k.vni, dst, r.mac, vxlan.EtherTypeIPv6)
	b.add(d, vtep, 0)
	r.arpAsked.Add(1)
}

// inboundNDP learns from a neighbour solicitation or advertisement on nw
// and answers solicitations for the node's IPv6 address and the hosted
// endpoints'. Only an address of the network that is no one's here, sent
// by the VTEP its route names, is learned; a solicitation from a
// link-local address (a Linux host confirming a neighbour it has,
// RFC 4861 §7.3.3) is answered, to the VTEP it came from, and teaches
// nothing. It counts what it drops.
func (r *Router) inboundNDP(b *inBatch, t *table, eps *epTable, nw *network, frame vxlan.Ethernet, src netip.AddrPort) {
	n := vxlan.NDP(frame.Payload())
	if !n.IsValid() {
		r.drops.Add(DropMalformed)
		return
	}
	mac, ok := n.LinkAddr()
	if !ok {
		mac = frame.Src() // a unicast solicitation may leave it out (RFC 4861 §4.3)
	}
	// who is the address the message speaks for: the solicitation's
	// source, the advertisement's target.
	who := n.Src()
	if n.Type() == vxlan.NDPAdvert {
		who = n.Target()
	}
	var vtep netip.AddrPort // the VTEP that hosts who, which is answered
	switch {
	case nw.v6.Contains(who) && !nw.isNode(who) && eps.byAddr[who] == nil:
		if !t.owns(who, src) {
			r.drops.Add(DropNotOwner)
			return
		}
		r.learn(b, neighKey{vni: nw.VNI, ip: who}, mac)
		rt, _ := t.lookup(who)
		vtep = rt.VTEP
	case n.Type() == vxlan.NDPSolicit && who.IsLinkLocalUnicast():
		if vtep, ok = t.vtepOf(src); !ok {
			r.drops.Add(DropNoRoute)
			return
		}
	default:
		r.drops.Add(DropNotForUs)
		return
	}
	caps, _ := n.Trailer()
	r.caps.set(vtep, caps&vxlan.TrailerPartial != 0)
	target := n.Target()
	if n.Type() != vxlan.NDPSolicit || (target != nw.v6.Addr() && eps.on(nw.VNI, target) == nil) {
		return
	}
	buf := b.reply.ctlBuf()
	if buf == nil {
		r.drops.Add(DropQueueFull)
		return
	}
	vxlan.NDP(buf[headroom:headroom+vxlan.NDPLen]).EncodeAdvert(r.mac, target, who, true)
	vxlan.EncodeTrailer(buf[headroom+vxlan.NDPLen:], vxlan.TrailerPartial)
	d := vxlan.Encap(buf, headroom, vxlan.NDPLen+vxlan.TrailerLen, nw.VNI, mac, r.mac, vxlan.EtherTypeIPv6)
	b.reply.add(d, vtep, 0)
	r.arpAnswers.Add(1)
}
