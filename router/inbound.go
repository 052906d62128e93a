package router

import (
	"context"
	"net/netip"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/packet"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/vxlan"
)

// inBatch is the reusable state of one batch from the underlay.
type inBatch struct {
	bufs       [][]byte // packet buffers; datagrams land at headroom
	rbufs      [][]byte // bufs[i][headroom:], what the underlay reads into
	sizes      []int
	srcs       []netip.AddrPort
	deliver    [][]byte            // packets for the attachment, at offset deliverOff
	partial    []bool              // per deliver, while anyPartial: its TCP checksum is still to be done (pw takes it)
	anyPartial bool                // a packet of this batch's deliver is partial
	pw         stack.PartialWriter // the attachment's, or nil: partial packets are completed
	pw6        bool                // pw takes partial IPv6 segments too (stack.PartialWriter6)
	local      []localPkt          // packets for hosted endpoints, at offset headroom+vxlan.EncapLen
	scratch    [][]byte            // flushLocal's room
	reply      *outBatch           // ARP answers and released pending packets

	epLearned epLearned // what inboundEndpoint learned already in this batch
	learned6  epLearned // what inbound6 learned already in this batch
}

// epLearned is the neighbour inboundEndpoint learned last in a batch, from
// which datagram source: a batch of one flow learns once.
type epLearned struct {
	k    neighKey
	mac  vxlan.MAC
	from netip.AddrPort
}

// inboundEndpoint handles datagram i, an IP packet parsed as p (its
// header) for an address on nw that is not the node's: for a hosted
// endpoint of nw it is queued for the endpoint's device, after the source
// checks and learning of the attachment's path, and its length returned;
// else it is dropped, and why returned.
func (r *Router) inboundEndpoint(b *inBatch, t *table, eps *epTable, nw *network, frame vxlan.Ethernet, p *packet.IP, src netip.AddrPort, i int) (int, DropReason) {
	to := eps.on(nw.VNI, dstAddr(p))
	if to == nil {
		return 0, DropNotForUs
	}
	if s := srcAddr(p); nw.contains(s) {
		l := epLearned{k: neighKey{vni: nw.VNI, ip: s}, mac: frame.Src(), from: src}
		if l != b.epLearned {
			if !t.owns(s, src) {
				return 0, DropNotOwner
			}
			b.epLearned = l
			r.learn(b, l.k, l.mac)
		}
	}
	if r.lb != nil && r.lb.InboundIP(p) == lb.Drop {
		return 0, DropLBRefused
	}
	n := p.Len()
	b.local = append(b.local, localPkt{ep: to, buf: b.bufs[i][:headroom+vxlan.EncapLen+n]})
	return n, DropNone
}

func newInBatch(n int) *inBatch {
	b := &inBatch{
		bufs:    make([][]byte, n),
		rbufs:   make([][]byte, n),
		sizes:   make([]int, n),
		srcs:    make([]netip.AddrPort, n),
		deliver: make([][]byte, 0, n),
		partial: make([]bool, n),
		local:   make([]localPkt, 0, n),
		scratch: make([][]byte, 0, n),
		reply:   newOutBatch(0),
	}
	b.reply.ctl = make([][]byte, n)
	for i := range b.bufs {
		b.bufs[i] = make([]byte, bufSize)
		b.rbufs[i] = b.bufs[i][headroom:]
		b.reply.ctl[i] = make([]byte, ctlSize)
	}
	return b
}

// deliverOff is where the inner packet starts in an inbound buffer: after
// the headroom and the VXLAN header, and for L3 also the inner Ethernet.
func (r *Router) deliverOff() int {
	if r.layer == stack.L2 {
		return headroom + vxlan.HeaderLen
	}
	return headroom + vxlan.EncapLen
}

// notePartial records whether the packet just added to deliver is
// partial; the flags are kept only once a batch has a partial packet.
func (b *inBatch) notePartial(partial bool) {
	j := len(b.deliver) - 1
	switch {
	case partial && !b.anyPartial:
		clear(b.partial[:j])
		b.anyPartial = true
		b.partial[j] = true
	case b.anyPartial:
		b.partial[j] = partial
	}
}

// reset empties what a pass filled, keeping the room.
func (b *inBatch) reset() {
	b.deliver = b.deliver[:0]
	b.anyPartial = false
	b.local = b.local[:0]
	b.reply.reset()
}

func (r *Router) inboundLoop(ctx context.Context) {
	n := min(max(r.ul.BatchSize(), 1), maxBatch)
	b := newInBatch(n)
	b.pw, _ = r.dev.(stack.PartialWriter)
	if w, ok := r.dev.(stack.PartialWriter6); ok {
		b.pw6 = w.WritesPartial6()
	}
	var errLog rateLog
	for {
		cnt, err := r.ul.ReadBatch(b.rbufs, b.sizes, b.srcs)
		if cnt > 0 {
			b.reset()
			r.inbound(b, cnt)
			r.flushDeliver(b)
			r.flushLocal(b.local, b.scratch, headroom+vxlan.EncapLen)
			r.flushUnderlay(b.reply)
		}
		if err != nil {
			if isClosed(err) || ctx.Err() != nil {
				return
			}
			if errLog.ok() {
				r.log.Warn("read from underlay", zap.Error(err))
			}
		}
	}
}

// inbound decides the fate of n datagrams from the underlay.
func (r *Router) inbound(b *inBatch, n int) {
	t := r.tab.Load()
	nets := *r.nets.Load()
	eps := r.eps.Load()
	b.epLearned, b.learned6 = epLearned{}, epLearned{}
	var pkts, bytes uint64
	var acc netAcc
	defer acc.flush(false)
	var lastPeer netip.Addr // checked already in this batch
	var learned neighKey    // learned already in this batch
	var learnedSrc [16]byte // learned.ip as bytes, IPv4-mapped (compared per packet)
	var learnedMAC vxlan.MAC
	var learnedFrom netip.AddrPort // the datagram source it was learned from
	// The network of the previous datagram: a batch is mostly one.
	var nw network
	// nw's IPv4 address as bytes, IPv4-mapped (compared per packet); all
	// zeros, which no IPv4 packet's mapped address is, when it has none.
	var nwAddr [16]byte
	haveNW := false
	for i := range n {
		d := b.rbufs[i][:b.sizes[i]]
		src := b.srcs[i]
		if src.Addr() != lastPeer {
			if !t.isPeer(src) {
				r.drops.Add(DropNotPeer)
				continue
			}
			lastPeer = src.Addr()
		}
		vni, frame, err := vxlan.Decap(d)
		if err != nil {
			r.drops.Add(decapDrop(err))
			continue
		}
		if !haveNW || vni != nw.VNI {
			var ok bool
			if nw, ok = nets[vni]; !ok {
				haveNW = false
				r.drops.Add(DropUnknownVNI)
				continue
			}
			haveNW, nwAddr = true, [16]byte{}
			if nw.v4.IsValid() {
				nwAddr = nw.v4.Addr().As16()
			}
		}
		partial := vxlan.Header(d).Partial()
		if r.layer == stack.L2 {
			if partial {
				// A TAP host gets complete frames.
				if pl := frame.Payload(); frame.Type() == vxlan.EtherTypeIPv4 && stack.IsPartialCandidate(pl) ||
					frame.Type() == vxlan.EtherTypeIPv6 && stack.IsPartialCandidate6(pl) {
					completePartial(pl)
				}
			}
			if vtep, ok := t.vtepOf(src); ok && !frame.Src().IsMulticast() {
				if !r.fdb.set(macKey{vni: vni, mac: frame.Src()}, vtep) {
					r.drops.Add(DropQueueFull)
				}
			}
			b.deliver = append(b.deliver, b.bufs[i][:headroom+len(d)])
			b.notePartial(false)
			pkts++
			bytes += uint64(len(frame))
			acc.add(r, vni, len(frame), false)
			continue
		}
		switch frame.Type() {
		case vxlan.EtherTypeARP:
			r.inboundARP(b, t, eps, &nw, frame, src)
		case vxlan.EtherTypeIPv6:
			if vxlan.IsNDP(frame.Payload()) {
				r.inboundNDP(b, t, eps, &nw, frame, src)
				continue
			}
			if n, why := r.inbound6(b, t, eps, &nw, frame, src, i, partial); why != DropNone {
				r.drops.Add(why)
			} else {
				pkts++
				bytes += uint64(n)
				acc.add(r, vni, n, false)
			}
		case vxlan.EtherTypeIPv4:
			if dm := frame.Dst(); dm != r.mac && !dm.IsBroadcast() {
				r.drops.Add(DropNotForUs)
				continue
			}
			// The header alone: lb, when it tracks flows, completes the
			// view with the ports; delivery needs no more.
			var view packet.IP
			p := &view
			if !p.ParseHeader(frame.Payload()) || p.Is6() { // an IPv6 packet in an IPv4 frame is malformed
				r.drops.Add(DropMalformed)
				continue
			}
			pkt := p.Bytes()
			if partial { // between overlayd peers only: out of the common path
				if !stack.IsPartialCandidate(pkt) {
					r.drops.Add(DropMalformed) // flagged, yet no TCP checksum to finish
					continue
				}
				if p.Dst != nwAddr || b.pw == nil {
					// Hosted endpoints, and an attachment that cannot
					// take them, get complete packets (lb's NAT below
					// updates a complete checksum as it is).
					completePartial(pkt)
					partial = false
				}
			}
			if p.Dst != nwAddr {
				// Not the node's: a hosted endpoint's, or dropped
				// (out of line, so the node's path stays as it was).
				if n, why := r.inboundEndpoint(b, t, eps, &nw, frame, p, src, i); why != DropNone {
					r.drops.Add(why)
				} else {
					pkts++
					bytes += uint64(n)
					acc.add(r, vni, n, false)
				}
				continue
			}
			// Learn once per batch per (address, MAC, source): the cheap
			// comparisons first, the prefix check only on a change.
			if (p.Src != learnedSrc || vni != learned.vni || frame.Src() != learnedMAC || src != learnedFrom) &&
				nw.v4.Contains(srcAddr(p)) {
				s := srcAddr(p)
				// Only the VTEP that owns an address speaks for it:
				// anything else is a stray or forged frame, which
				// would re-point the neighbour (and inject traffic).
				if !t.owns(s, src) {
					r.drops.Add(DropNotOwner)
					continue
				}
				learned, learnedSrc, learnedMAC, learnedFrom = neighKey{vni: vni, ip: s}, p.Src, frame.Src(), src
				r.learn(b, learned, learnedMAC)
			}
			if r.lb != nil {
				v := r.lb.InboundIP(p) // reverse NAT of a backend's reply, in place
				if partial {
					resumPartial(pkt)
				}
				if v == lb.Drop {
					r.drops.Add(DropLBRefused)
					continue
				}
			}
			b.deliver = append(b.deliver, b.bufs[i][:headroom+vxlan.EncapLen+len(pkt)])
			b.notePartial(partial)
			pkts++
			bytes += uint64(len(pkt))
			acc.add(r, vni, len(pkt), false)
		default:
			r.drops.Add(DropUnsupported)
		}
	}
	r.in.packets.Add(pkts)
	r.in.bytes.Add(bytes)
}

// inbound6 handles datagram i, an IPv6 frame on nw (not NDP): for the
// node's IPv6 address it is queued for the attachment after the source
// checks and learning, as an IPv4 packet is; for a hosted endpoint's it
// goes to inboundEndpoint. It returns the packet's length, or why it
// dropped it.
func (r *Router) inbound6(b *inBatch, t *table, eps *epTable, nw *network, frame vxlan.Ethernet, src netip.AddrPort, i int, partial bool) (int, DropReason) {
	if frame.Dst() != r.mac {
		return 0, DropNotForUs // a multicast group (MLD, router solicitations) or another's MAC
	}
	var view packet.IP
	p := &view
	if pl := frame.Payload(); !p.ParseHeader(pl) || !p.Is6() {
		if len(pl) > 0 && pl[0]>>4 == 6 {
			return 0, parseDrop(pl)
		}
		return 0, DropMalformed // an IPv4 packet in an IPv6 frame
	}
	if partial { // between overlayd peers only, as IPv4's
		if !stack.IsPartialCandidate6(p.Bytes()) {
			return 0, DropMalformed // flagged, yet no TCP checksum to finish
		}
		if p.Dst != nw.v6a || !nw.v6.IsValid() || !b.pw6 {
			// Hosted endpoints, and an attachment that cannot take
			// them, get complete packets.
			completePartial(p.Bytes())
			partial = false
		}
	}
	if p.Dst != nw.v6a || !nw.v6.IsValid() {
		return r.inboundEndpoint(b, t, eps, nw, frame, p, src, i)
	}
	// Learn once per batch per (address, MAC, source), as IPv4 does: the
	// comparison first, the prefix and owner checks only on a change.
	if l := (epLearned{k: neighKey{vni: nw.VNI, ip: netip.AddrFrom16(p.Src)}, mac: frame.Src(), from: src}); l != b.learned6 {
		if s := l.k.ip; nw.v6.Contains(s) {
			// Only the VTEP that owns an address speaks for it.
			if !t.owns(s, src) {
				return 0, DropNotOwner
			}
			r.learn(b, l.k, l.mac)
		}
		b.learned6 = l
	}
	if r.lb != nil {
		v := r.lb.InboundIP(p) // reverse NAT of a backend's reply, in place
		if partial {
			resumPartial(p.Bytes())
		}
		if v == lb.Drop {
			return 0, DropLBRefused
		}
	}
	n := p.Len()
	b.deliver = append(b.deliver, b.bufs[i][:headroom+vxlan.EncapLen+n])
	b.notePartial(partial)
	return n, DropNone
}

// inboundARP learns from an ARP packet and answers requests for our
// address and the hosted endpoints' on the network.
func (r *Router) inboundARP(b *inBatch, t *table, eps *epTable, nw *network, frame vxlan.Ethernet, src netip.AddrPort) {
	a := vxlan.ARP(frame.Payload())
	if !a.IsValid() {
		r.drops.Add(DropMalformed)
		return
	}
	sender := a.SenderIP()
	if !nw.v4.Contains(sender) || sender == nw.v4.Addr() || eps.byAddr[sender] != nil {
		r.drops.Add(DropNotForUs)
		return
	}
	if !t.owns(sender, src) {
		r.drops.Add(DropNotOwner)
		return
	}
	r.learn(b, neighKey{vni: nw.VNI, ip: sender}, a.SenderMAC())
	// The VTEP that hosts the sender, which need not be the datagram's
	// source port: it is answered, and it is what its trailer speaks for.
	var vtep netip.AddrPort
	rt, ok := t.lookup(sender)
	if ok {
		vtep = rt.VTEP
	} else {
		vtep, ok = t.vtepOf(src)
	}
	if ok {
		caps, _ := a.Trailer()
		r.caps.set(vtep, caps&vxlan.TrailerPartial != 0)
	}
	target := a.TargetIP()
	if a.Op() != vxlan.ARPRequest || (target != nw.v4.Addr() && eps.on(nw.VNI, target) == nil) {
		return
	}
	if !ok {
		r.drops.Add(DropNoRoute)
		return
	}
	buf := b.reply.ctlBuf()
	if buf == nil {
		r.drops.Add(DropQueueFull)
		return
	}
	vxlan.ARP(buf[headroom:headroom+vxlan.ARPLen]).EncodeReply(r.mac, target, a.SenderMAC(), sender)
	vxlan.EncodeTrailer(buf[headroom+vxlan.ARPLen:], vxlan.TrailerPartial)
	d := vxlan.Encap(buf, headroom, vxlan.ARPLen+vxlan.TrailerLen, nw.VNI, a.SenderMAC(), r.mac, vxlan.EtherTypeARP)
	b.reply.add(d, vtep, 0)
	r.arpAnswers.Add(1)
}

// learn records ip→mac and sends what waited for it.
func (r *Router) learn(b *inBatch, k neighKey, mac vxlan.MAC) {
	if mac.IsMulticast() || mac == (vxlan.MAC{}) {
		return
	}
	if old, ok := r.neigh.get(k); ok && old == mac {
		return
	}
	if !r.neigh.set(k, mac) {
		r.drops.Add(DropQueueFull)
		return
	}
	p := r.pending.take(k)
	if p == nil {
		return
	}
	for _, c := range p.pkts {
		pkt := c[headroom:]
		h := packet.Hash(pkt)
		d := vxlan.Encap(c, headroom, len(pkt), k.vni, mac, r.mac, etherType(k.ip))
		b.reply.add(d, p.vtep, h)
		r.out.packets.Add(1)
		r.out.bytes.Add(uint64(len(pkt)))
		c := r.netCounters(k.vni)
		c.out.packets.Add(1)
		c.out.bytes.Add(uint64(len(pkt)))
	}
}

// flushDeliver hands the batch's packets to the attachment.
func (r *Router) flushDeliver(b *inBatch) {
	if len(b.deliver) == 0 {
		return
	}
	var (
		n   int
		err error
	)
	r.devMu.Lock()
	if b.anyPartial { // only with pw: without it, inbound completed them
		n, err = b.pw.WritePartial(b.deliver, b.partial[:len(b.deliver)], r.deliverOff())
	} else {
		n, err = r.dev.Write(b.deliver, r.deliverOff())
	}
	r.devMu.Unlock()
	if err != nil {
		// Devices report packets or bytes written; count the packets
		// surely lost, at least one.
		lost := 1
		if n < len(b.deliver) {
			lost = len(b.deliver) - n
		}
		for range lost {
			r.drops.Add(DropWriteError)
		}
	}
}
