package router

import (
	"context"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/packet"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/vxlan"
)

// outBatch is the reusable state of one batch towards the underlay: the
// datagrams to send and the ICMP errors to hand back to the attachment.
// Nothing in it is allocated per packet.
type outBatch struct {
	bufs  [][]byte // packet buffers the attachment reads into
	sizes []int

	send  [][]byte // datagrams for the underlay, slices of bufs or ctl
	dsts  []netip.AddrPort
	flows []uint32

	ctl  [][]byte // scratch buffers for ARP and ICMP we originate
	nctl int

	icmp [][]byte // ICMP errors for the attachment, at offset headroom, slices of ctl

	pkts, bytes uint64 // forwarded in this batch

	hit lastHop // the previous packet's destination, valid for one batch
	acc netAcc  // this batch's packets per network
}

// lastHop remembers where the previous packet of a batch went. The route
// table snapshot is fixed for a batch, so it stays right within one.
type lastHop struct {
	dst netip.Addr
	rt  *Route
	mac vxlan.MAC
	ok  bool
}

// ctlSize fits an ICMP error (576 bytes, RFC 1812 §4.3.2.3) or an ARP
// frame, behind headroom.
const ctlSize = headroom + 576

func newOutBatch(n int) *outBatch {
	b := &outBatch{
		bufs:  make([][]byte, n),
		sizes: make([]int, n),
		send:  make([][]byte, 0, n*2),
		dsts:  make([]netip.AddrPort, 0, n*2),
		flows: make([]uint32, 0, n*2),
		ctl:   make([][]byte, n),
		icmp:  make([][]byte, 0, n),
	}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, bufSize)
		b.ctl[i] = make([]byte, ctlSize)
	}
	return b
}

func (b *outBatch) reset() {
	b.send = b.send[:0]
	b.dsts = b.dsts[:0]
	b.flows = b.flows[:0]
	b.icmp = b.icmp[:0]
	b.nctl = 0
	b.pkts, b.bytes = 0, 0
	b.hit = lastHop{}
}

// add queues one datagram for the underlay.
func (b *outBatch) add(d []byte, dst netip.AddrPort, h uint32) {
	b.send = append(b.send, d)
	b.dsts = append(b.dsts, dst)
	b.flows = append(b.flows, h)
}

// ctlBuf hands out a scratch buffer, or nil when the batch has used them all.
func (b *outBatch) ctlBuf() []byte {
	if b.nctl == len(b.ctl) {
		return nil
	}
	c := b.ctl[b.nctl]
	b.nctl++
	return c
}

func (r *Router) outboundLoop(ctx context.Context) {
	n := min(max(r.dev.BatchSize(), 1), maxBatch)
	b := newOutBatch(n)
	var errLog rateLog
	for {
		cnt, err := r.dev.Read(b.bufs, b.sizes, headroom)
		if cnt > 0 {
			b.reset()
			r.outbound(b, cnt)
			r.flushUnderlay(b)
			r.flushICMP(b)
		}
		if err != nil {
			if isClosed(err) || ctx.Err() != nil {
				return
			}
			if errLog.ok() {
				r.log.Warn("read from attachment", zap.String("device", r.dev.Name()), zap.Error(err))
			}
		}
	}
}

// outbound decides the fate of n packets read from the attachment: each is
// encapsulated in place and queued for the underlay, or answered, or
// dropped and counted.
func (r *Router) outbound(b *outBatch, n int) {
	t := r.tab.Load()
	for i := range n {
		pkt := b.bufs[i][headroom : headroom+b.sizes[i]]
		if r.layer == stack.L2 {
			r.outboundFrame(b, t, i, pkt)
		} else {
			r.outboundPacket(b, t, i, pkt)
		}
	}
	r.out.packets.Add(b.pkts)
	r.out.bytes.Add(b.bytes)
	b.acc.flush(true)
}

// outboundPacket handles an IP packet from an L3 attachment.
func (r *Router) outboundPacket(b *outBatch, t *table, i int, pkt []byte) {
	if len(pkt) == 0 {
		r.drops.Add(DropMalformed)
		return
	}
	if pkt[0]>>4 != 4 {
		r.drops.Add(DropUnsupported)
		return
	}
	var view packet.IPv4 // on the stack: parsed once, handed to lb, the hash and the ICMP decisions
	p := &view
	if !p.Parse(pkt) {
		r.drops.Add(DropMalformed)
		return
	}
	pkt = p.Bytes()
	if r.lb != nil {
		switch r.lb.OutboundIPv4(p) { // DNAT to a backend, in place
		case lb.Reset:
			r.drops.Add(DropLBReset)
			r.queueReset(b, p)
			return
		case lb.Drop:
			r.drops.Add(DropLBRefused)
			return
		}
	}
	dst := netip.AddrFrom4(p.Dst)
	if b.hit.ok && b.hit.dst == dst && len(pkt) <= r.pathMTU {
		// Same destination as the packet before (a TSO burst split into
		// segments): reuse its route and MAC.
		r.encapOut(b, i, p, b.hit.rt, b.hit.mac)
		return
	}
	rt, ok := t.lookup(dst)
	if !ok {
		r.drops.Add(DropNoRoute)
		r.queueICMP(b, p, packet.ICMPDestUnreachable, packet.ICMPNetUnreachable, 0)
		return
	}
	if len(pkt) > r.pathMTU {
		r.drops.Add(DropTooBig)
		if p.DontFragment() {
			r.queueICMP(b, p, packet.ICMPDestUnreachable, packet.ICMPFragNeeded, uint16(r.pathMTU))
		}
		return
	}
	k := neighKey{vni: rt.VNI, ip: dst}
	mac, ok := r.neigh.get(k)
	if !ok {
		ask, kept := r.pending.add(k, rt.VTEP, pkt, time.Now())
		if ask {
			r.queueARPRequest(b, k, rt.VTEP)
		}
		if !kept {
			r.drops.Add(DropQueueFull)
		}
		return
	}
	b.hit = lastHop{dst: dst, rt: rt, mac: mac, ok: true}
	r.encapOut(b, i, p, rt, mac)
}

// encapOut encapsulates packet i, parsed as p, in place and queues it for
// rt's VTEP, with p's flow hash for the outer source port.
func (r *Router) encapOut(b *outBatch, i int, p *packet.IPv4, rt *Route, mac vxlan.MAC) {
	h := p.Hash()
	n := p.Len()
	frame := vxlan.Encap(b.bufs[i], headroom, n, rt.VNI, mac, r.mac, vxlan.EtherTypeIPv4)
	b.add(frame, rt.VTEP, h)
	b.pkts++
	b.bytes += uint64(n)
	b.acc.add(r, rt.VNI, n, true)
}

// outboundFrame handles an Ethernet frame from an L2 attachment: known
// unicast goes to the VTEP that taught us the MAC, the rest is flooded to
// every VTEP of the network (head-end replication).
func (r *Router) outboundFrame(b *outBatch, t *table, i int, frame []byte) {
	if len(frame) < vxlan.EthernetLen {
		r.drops.Add(DropMalformed)
		return
	}
	if len(frame)-vxlan.EthernetLen > r.pathMTU {
		r.drops.Add(DropTooBig)
		return
	}
	vni := r.l2VNI
	eth := vxlan.Ethernet(frame)
	var h uint32
	if eth.Type() == vxlan.EtherTypeIPv4 {
		h = packet.Hash(frame[vxlan.EthernetLen:])
	}
	buf := b.bufs[i]
	vxlan.Header(buf[headroom-vxlan.HeaderLen : headroom]).Encode(vni)
	d := buf[headroom-vxlan.HeaderLen : headroom+len(frame)]
	dst := eth.Dst()
	if !dst.IsMulticast() {
		if vtep, ok := r.fdb.get(macKey{vni: vni, mac: dst}); ok {
			b.add(d, vtep, h)
			b.pkts++
			b.bytes += uint64(len(frame))
			b.acc.add(r, vni, len(frame), true)
			return
		}
	}
	vteps := t.vteps[vni]
	if len(vteps) == 0 {
		r.drops.Add(DropNoRoute)
		return
	}
	for _, v := range vteps {
		b.add(d, v, h)
	}
	b.pkts++
	b.bytes += uint64(len(frame))
	b.acc.add(r, vni, len(frame), true)
}

// queueARPRequest asks vtep who has k.ip, inside the tunnel.
func (r *Router) queueARPRequest(b *outBatch, k neighKey, vtep netip.AddrPort) {
	nw, ok := (*r.nets.Load())[k.vni]
	if !ok {
		return
	}
	buf := b.ctlBuf()
	if buf == nil {
		return
	}
	vxlan.ARP(buf[headroom:headroom+vxlan.ARPLen]).EncodeRequest(r.mac, nw.Addr.Addr(), k.ip)
	d := vxlan.Encap(buf, headroom, vxlan.ARPLen, k.vni, vxlan.Broadcast, r.mac, vxlan.EtherTypeARP)
	b.add(d, vtep, 0)
	r.arpAsked.Add(1)
}

// flushUnderlay sends what the batch queued for the underlay.
func (r *Router) flushUnderlay(b *outBatch) {
	if len(b.send) == 0 {
		return
	}
	n, err := r.ul.WriteBatch(b.send, b.dsts, b.flows)
	if err != nil {
		for range len(b.send) - n {
			r.drops.Add(DropWriteError)
		}
		if !isClosed(err) {
			r.log.Debug("write to underlay", zap.Error(err))
		}
	}
}

// flushICMP hands the batch's ICMP errors to the attachment.
func (r *Router) flushICMP(b *outBatch) {
	if len(b.icmp) == 0 {
		return
	}
	r.devMu.Lock()
	_, err := r.dev.Write(b.icmp, headroom)
	r.devMu.Unlock()
	if err == nil {
		r.icmpSent.Add(uint64(len(b.icmp)))
	}
}
