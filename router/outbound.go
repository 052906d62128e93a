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
	bufs    [][]byte // packet buffers the attachment reads into
	sizes   []int
	partial []bool              // per packet: its TCP checksum is still to be done (stack.PartialReader)
	pr      stack.PartialReader // reads into partial; nil: dev.Read, partial stays false

	send  [][]byte // datagrams for the underlay, slices of bufs or ctl
	dsts  []netip.AddrPort
	flows []uint32

	ctl  [][]byte // scratch buffers for ARP, NDP and ICMP we originate
	nctl int
	ctl6 [][]byte // bigger ones for ICMPv6 errors, made on first use
	nct6 int

	icmp [][]byte // ICMP errors for the attachment, at offset headroom, slices of ctl

	pkts, bytes uint64 // forwarded to the underlay in this batch

	src     *endpoint  // the endpoint whose device this batch was read from; nil: the attachment
	eps     *epTable   // the endpoints, fixed for a batch
	local   []localPkt // packets for local devices (switched, never the underlay)
	scratch [][]byte   // flushLocal's room
	lfwd    Counters   // switched to local devices in this batch
	drops   uint64     // dropped in this batch (the source endpoint's count)

	hit  lastHop  // the previous packet's destination, valid for one batch
	lhit localHop // the previous packet switched locally, valid for one batch
	acc  netAcc   // this batch's packets per network
}

// localHop remembers the local device the previous packet of a batch was
// switched to. The endpoint table is fixed for a batch.
type localHop struct {
	dst netip.Addr
	to  *endpoint // nil: the attachment
	mtu int
	ok  bool
}

// lastHop remembers where the previous packet of a batch went. The route
// table snapshot is fixed for a batch, so it stays right within one.
type lastHop struct {
	dst     netip.Addr
	rt      *Route
	mac     vxlan.MAC
	partial bool // rt.VTEP takes partial TCP checksums
	ok      bool
}

// ctlSize fits an ICMP error (576 bytes, RFC 1812 §4.3.2.3), an ARP or
// an NDP frame, behind headroom.
const ctlSize = headroom + 576

// ctl6Size fits an ICMPv6 error (up to the IPv6 minimum MTU, RFC 4443
// §2.4(c)) behind headroom; a batch sends at most maxICMPv6 of them (RFC
// 4443 §2.4(f) asks for a limit), in buffers made the first time a batch
// needs them, so a batch that never answers IPv6 costs nothing more.
const (
	ctl6Size  = headroom + packet.MaxAnswerLen
	maxICMPv6 = 8
)

func newOutBatch(n int) *outBatch { return newOutBatchSized(n, bufSize) }

// newOutBatchSized returns a batch of n packet buffers of size bytes.
func newOutBatchSized(n, size int) *outBatch {
	b := &outBatch{
		bufs:    make([][]byte, n),
		sizes:   make([]int, n),
		partial: make([]bool, n),
		send:    make([][]byte, 0, n*2),
		dsts:    make([]netip.AddrPort, 0, n*2),
		flows:   make([]uint32, 0, n*2),
		ctl:     make([][]byte, n),
		icmp:    make([][]byte, 0, n),
		local:   make([]localPkt, 0, n),
		scratch: make([][]byte, 0, n),
	}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, size)
		b.ctl[i] = make([]byte, ctlSize)
	}
	return b
}

func (b *outBatch) reset() {
	b.send = b.send[:0]
	b.dsts = b.dsts[:0]
	b.flows = b.flows[:0]
	b.icmp = b.icmp[:0]
	b.nctl, b.nct6 = 0, 0
	b.pkts, b.bytes = 0, 0
	b.local = b.local[:0]
	b.lfwd, b.drops = Counters{}, 0
	b.hit = lastHop{}
	b.lhit = localHop{}
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

// ctlBuf6 hands out a buffer for an ICMPv6 error, or nil when the batch
// has sent maxICMPv6.
func (b *outBatch) ctlBuf6() []byte {
	if b.nct6 == maxICMPv6 {
		return nil
	}
	if b.nct6 == len(b.ctl6) {
		b.ctl6 = append(b.ctl6, make([]byte, ctl6Size))
	}
	c := b.ctl6[b.nct6]
	b.nct6++
	return c
}

func (r *Router) outboundLoop(ctx context.Context) {
	b := newOutBatch(min(max(r.dev.BatchSize(), 1), maxBatch))
	b.pr, _ = r.dev.(stack.PartialReader)
	r.readLoop(ctx, r.dev, b, "read from attachment")
}

// readLoop forwards what dev reads, in batches of b, until dev is closed
// or ctx is done; a read error is logged (rate-limited) as msg, with fields.
func (r *Router) readLoop(ctx context.Context, dev stack.Device, b *outBatch, msg string, fields ...zap.Field) {
	var errLog rateLog
	for {
		var cnt int
		var err error
		if b.pr != nil {
			cnt, err = b.pr.ReadPartial(b.bufs, b.sizes, b.partial, headroom)
		} else {
			cnt, err = dev.Read(b.bufs, b.sizes, headroom)
		}
		if cnt > 0 {
			b.reset()
			r.outbound(b, cnt)
			r.flushUnderlay(b)
			r.flushLocal(b.local, b.scratch, headroom)
			r.flushICMP(b)
		}
		if err != nil {
			if isClosed(err) || ctx.Err() != nil {
				return
			}
			if errLog.ok() {
				r.log.Warn(msg, append(fields, zap.String("device", dev.Name()), zap.Error(err))...)
			}
		}
	}
}

// outbound decides the fate of n packets read from the attachment, or
// from the endpoint b.src: each is encapsulated in place and queued for
// the underlay, or queued for a local device, or answered, or dropped and
// counted.
func (r *Router) outbound(b *outBatch, n int) {
	t := r.tab.Load()
	b.eps = r.eps.Load()
	for i := range n {
		pkt := b.bufs[i][headroom : headroom+b.sizes[i]]
		if r.layer == stack.L2 {
			r.outboundFrame(b, t, i, pkt)
		} else if why := r.outboundPacket(b, t, i, pkt); why != DropNone {
			r.drops.Add(why)
			b.drops++
		}
	}
	r.out.packets.Add(b.pkts)
	r.out.bytes.Add(b.bytes)
	b.acc.flush(true)
	if len(b.local) > 0 {
		r.local.packets.Add(b.lfwd.Packets)
		r.local.bytes.Add(b.lfwd.Bytes)
	}
	if ep := b.src; ep != nil {
		ep.out.packets.Add(b.pkts + b.lfwd.Packets)
		ep.out.bytes.Add(b.bytes + b.lfwd.Bytes)
		if b.drops > 0 {
			ep.outDrops.Add(b.drops)
		}
	}
}

// outboundPacket handles an IP packet from an L3 attachment or an
// endpoint, and returns why it dropped it (DropNone: forwarded, answered
// or waiting for ARP).
func (r *Router) outboundPacket(b *outBatch, t *table, i int, pkt []byte) DropReason {
	if len(pkt) == 0 {
		return DropMalformed
	}
	if v := pkt[0] >> 4; v != 4 && v != 6 {
		return DropUnsupported
	}
	var view packet.IP // on the stack: parsed once, handed to lb, the hash and the ICMP decisions
	p := &view
	if !p.Parse(pkt) {
		return parseDrop(pkt)
	}
	pkt = p.Bytes()
	src := b.src
	if src != nil {
		own := src.a4
		if p.Is6() {
			own = src.a6
		}
		if srcAddr(p) != own {
			return DropSpoofedSource
		}
	}
	part := b.partial[i] // an IPv4 or IPv6 TCP segment (stack.IsPartialTCP)
	if r.lb != nil {
		v := r.lb.OutboundIP(p) // DNAT to a backend, in place
		if part {
			resumPartial(pkt)
		}
		switch v {
		case lb.Reset:
			r.queueAnswer(b, p, packet.AnswerReset, 0)
			return DropLBReset
		case lb.Drop:
			return DropLBRefused
		}
	}
	dst := dstAddr(p)
	if b.hit.ok && b.hit.dst == dst && len(pkt) <= r.pathMTU {
		// Same destination as the packet before (a TSO burst split into
		// segments): reuse its route and MAC.
		r.encapOut(b, i, p, b.hit.rt, b.hit.mac, part, b.hit.partial)
		return DropNone
	}
	if src != nil || len(b.eps.byAddr) > 0 {
		if why, done := r.outboundLocal(b, i, p, dst); done {
			return why
		}
	}
	rt, ok := t.lookup(dst)
	if src != nil && (!ok || rt.VNI != src.cfg.VNI) && (ok || r.isNodeAddr(dst)) {
		return DropOtherNetwork // a route, or this node's address, on another network
	}
	if !ok {
		r.queueAnswer(b, p, packet.AnswerNoRoute, 0)
		return DropNoRoute
	}
	if len(pkt) > r.pathMTU {
		if p.DontFragment() { // always, for IPv6: routers never fragment it
			r.queueAnswer(b, p, packet.AnswerTooBig, r.pathMTU)
		}
		return DropTooBig
	}
	k := neighKey{vni: rt.VNI, ip: dst}
	mac, ok := r.neigh.get(k)
	if !ok {
		if part {
			completePartial(pkt) // it leaves the batch, and may go to any VTEP
		}
		ask, kept := r.pending.add(k, rt.VTEP, pkt, time.Now())
		if ask {
			r.queueSolicit(b, k, rt.VTEP)
		}
		if !kept {
			return DropQueueFull
		}
		return DropNone
	}
	b.hit = lastHop{dst: dst, rt: rt, mac: mac, partial: r.caps.partial(rt.VTEP), ok: true}
	r.encapOut(b, i, p, rt, mac, part, b.hit.partial)
	return DropNone
}

// outboundLocal switches packet i, parsed as p, to a local device when
// dst is one: a hosted endpoint (of the sender's network, when the sender
// is an endpoint), or, for an endpoint's packet, this node's address on
// its network (the attachment). It reports whether it decided, and why it
// dropped the packet.
func (r *Router) outboundLocal(b *outBatch, i int, p *packet.IP, dst netip.Addr) (DropReason, bool) {
	src := b.src
	to, mtu := b.lhit.to, b.lhit.mtu
	if !b.lhit.ok || b.lhit.dst != dst {
		to = b.eps.byAddr[dst]
		switch {
		case to != nil:
			if src != nil && to.cfg.VNI != src.cfg.VNI {
				return DropOtherNetwork, true
			}
			mtu = to.mtu
		case src == nil:
			return DropNone, false
		default:
			nw, ok := (*r.nets.Load())[src.cfg.VNI]
			if !ok || !nw.holds(dst) {
				return DropNone, false
			}
			mtu = r.devMTU // to the attachment: to stays nil
		}
		b.lhit = localHop{dst: dst, to: to, mtu: mtu, ok: true}
	}
	n := p.Len()
	if mtu > 0 && n > mtu {
		if p.DontFragment() {
			r.queueAnswer(b, p, packet.AnswerTooBig, mtu)
		}
		return DropTooBig, true
	}
	if b.partial[i] {
		completePartial(p.Bytes()) // local devices get complete packets
	}
	if r.lb != nil && r.lb.InboundIP(p) == lb.Drop { // reverse NAT of a local backend's reply, in place
		return DropLBRefused, true
	}
	b.local = append(b.local, localPkt{ep: to, buf: b.bufs[i][:headroom+n]})
	b.lfwd.Packets++
	b.lfwd.Bytes += uint64(n)
	return DropNone, true
}

// isNodeAddr reports whether a is this node's address on one of its
// networks.
func (r *Router) isNodeAddr(a netip.Addr) bool {
	for _, n := range *r.nets.Load() {
		if n.holds(a) {
			return true
		}
	}
	return false
}

// encapOut encapsulates packet i, parsed as p, in place and queues it for
// rt's VTEP, with p's flow hash for the outer source port. A partial
// packet (its TCP checksum still to be done) stays so and is flagged
// when the VTEP takes that (peerPartial), and is completed otherwise.
func (r *Router) encapOut(b *outBatch, i int, p *packet.IP, rt *Route, mac vxlan.MAC, partial, peerPartial bool) {
	h := p.Hash()
	n := p.Len()
	if partial && !peerPartial {
		completePartial(p.Bytes())
	}
	et := uint16(vxlan.EtherTypeIPv4)
	if p.Is6() {
		et = vxlan.EtherTypeIPv6
	}
	frame := vxlan.Encap(b.bufs[i], headroom, n, rt.VNI, mac, r.mac, et)
	if partial && peerPartial {
		vxlan.Header(frame).SetPartial()
	}
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
	if t := eth.Type(); t == vxlan.EtherTypeIPv4 || t == vxlan.EtherTypeIPv6 {
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
	if !ok || !nw.v4.IsValid() {
		return
	}
	buf := b.ctlBuf()
	if buf == nil {
		return
	}
	vxlan.ARP(buf[headroom:headroom+vxlan.ARPLen]).EncodeRequest(r.mac, nw.v4.Addr(), k.ip)
	vxlan.EncodeTrailer(buf[headroom+vxlan.ARPLen:], vxlan.TrailerPartial)
	d := vxlan.Encap(buf, headroom, vxlan.ARPLen+vxlan.TrailerLen, k.vni, vxlan.Broadcast, r.mac, vxlan.EtherTypeARP)
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

// flushICMP hands the batch's ICMP errors to the device the batch was
// read from: the attachment, or b.src's.
func (r *Router) flushICMP(b *outBatch) {
	if len(b.icmp) == 0 {
		return
	}
	dev, mu := r.dev, &r.devMu
	if b.src != nil {
		dev, mu = b.src.cfg.Device, &b.src.devMu
	}
	mu.Lock()
	_, err := dev.Write(b.icmp, headroom)
	mu.Unlock()
	if err == nil {
		r.icmpSent.Add(uint64(len(b.icmp)))
	}
}
