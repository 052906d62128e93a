package lb

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/overlayd/overlayd/packet"
)

// Verdict tells the router what to do with a packet after Outbound or
// Inbound.
type Verdict uint8

const (
	// Pass: the packet is not the balancer's business; forward it unchanged.
	Pass Verdict = iota
	// NAT: the packet was rewritten in place; forward it.
	NAT
	// Reset: do not forward the packet; answer the client with
	// packet.BuildTCPReset (TCP) or packet.BuildICMPPortUnreachable (UDP)
	// built from it.
	// Returned when the flow's backend was removed, and for new flows to a
	// VIP port that has no service or no backend of positive weight.
	Reset
	// Drop: drop the packet (malformed, a fragment, refused because the
	// table is full of established flows, or a stray RST). Counted.
	Drop
)

func (v Verdict) String() string {
	switch v {
	case Pass:
		return "pass"
	case NAT:
		return "nat"
	case Reset:
		return "reset"
	case Drop:
		return "drop"
	}
	return "verdict?"
}

// IPv4 and transport field offsets.
const (
	ipChecksum = 10
	ipSrc      = 12
	ipDst      = 16
	tcpCsum    = 16
	udpCsum    = 6
	icmpCsum   = 2

	icmpProto Proto = 1
)

// delta accumulates the one's-complement difference of rewritten 16-bit
// words, for incremental checksum updates (RFC 1624, eqn. 3:
// HC' = ~(~HC + ~m + m')).
type delta uint16

func (d *delta) add(old, new uint16) {
	if old != new {
		*d = delta(checksum.Combine(uint16(*d), checksum.Combine(new, ^old)))
	}
}

func (d *delta) addAddr(old, new []byte) {
	d.add(uint16(old[0])<<8|uint16(old[1]), uint16(new[0])<<8|uint16(new[1]))
	d.add(uint16(old[2])<<8|uint16(old[3]), uint16(new[2])<<8|uint16(new[3]))
}

// apply updates the checksum field at b[off:].
func (d delta) apply(b []byte, off int) {
	if d == 0 {
		return
	}
	c := binary.BigEndian.Uint16(b[off:])
	binary.BigEndian.PutUint16(b[off:], ^checksum.Combine(^c, uint16(d)))
}

// applyUDP is apply for a UDP checksum, where 0 means "no checksum" and a
// computed 0 is sent as 0xffff (RFC 768).
func (d delta) applyUDP(b []byte, off int) {
	c := binary.BigEndian.Uint16(b[off:])
	if d == 0 || c == 0 {
		return
	}
	c = ^checksum.Combine(^c, uint16(d))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[off:], c)
}

// rewrite sets the source (src true) or destination address and port of an
// IPv4 TCP or UDP packet and updates the IPv4 and transport checksums
// incrementally. ip is the IPv4 header and l4 the transport header, long
// enough to hold its checksum field (checked by the caller).
func rewrite(ip, l4 []byte, proto uint8, src bool, addr [16]byte, port uint16) {
	aoff, poff := ipDst, 2
	if src {
		aoff, poff = ipSrc, 0
	}
	var d delta
	d.addAddr(ip[aoff:aoff+4], addr[12:])
	d.apply(ip, ipChecksum)
	copy(ip[aoff:aoff+4], addr[12:])
	d.add(binary.BigEndian.Uint16(l4[poff:]), port)
	binary.BigEndian.PutUint16(l4[poff:], port)
	if proto == uint8(UDP) {
		d.applyUDP(l4, udpCsum)
	} else {
		d.apply(l4, tcpCsum)
	}
}

// rewriteView is rewrite on a parsed packet, keeping its tuple in step
// with the bytes.
func rewriteView(p *packet.IP, src bool, addr [16]byte, port uint16) {
	if p.Is6() {
		rewrite6(p.Bytes(), p.Payload(), p.Proto, src, &addr, port)
	} else {
		rewrite(p.Header(), p.Payload(), p.Proto, src, addr, port)
	}
	if src {
		p.Src, p.SPort = addr, port
	} else {
		p.Dst, p.DPort = addr, port
	}
}

// Outbound handles an IP packet (IPv4 or IPv6) sent by a local client,
// before the route lookup: it parses pkt and calls OutboundIP. A packet that does not
// parse is Pass.
func (b *Balancer) Outbound(pkt []byte) Verdict {
	var p packet.IP
	if !p.Parse(pkt) {
		return Pass
	}
	return b.OutboundIP(&p)
}

// OutboundIP handles a parsed packet of either family sent by a local
// client, before the route lookup. Packets to a VIP are NATed to the
// flow's backend in place, bytes and p.Tuple (NAT), or answered (Reset:
// build the answer with packet.BuildAnswer(p, …, packet.AnswerReset, …)
// from p, which is left as it was) or dropped (Drop: malformed, a
// fragment, an IPv6 packet with a routing header that has segments
// left, …); anything else is Pass. It allocates nothing for established
// flows.
func (b *Balancer) OutboundIP(p *packet.IP) Verdict {
	snap := b.snap.Load()
	if !snap.vips.has(&p.Dst) {
		return Pass
	}
	if p.Fragment() {
		b.fragments.Add(1)
		return Drop
	}
	if !p.L4Valid() || p.Routed() {
		b.malformed.Add(1)
		return Drop
	}
	switch p.Proto {
	case packet.TCP, packet.UDP:
	case packet.ICMP, packet.ICMPv6:
		return b.outboundICMP(snap, p)
	default:
		return Pass
	}
	k := p.Tuple
	isTCP := p.Proto == packet.TCP
	s := b.shardFor(&k.Src, k.SPort, k.Proto)
	now := b.nanos()
	s.mu.Lock()
	e := s.origLocked(&k)
	if e != nil {
		if b.expired(e, now) {
			s.removeLocked(e)
			s.c.expired++
			e = nil
		} else if isTCP && p.TCPFlags&(flagSYN|flagACK|flagRST) == flagSYN && (e.state == StateClosing || e.state == StateClosed) {
			// A new connection reusing the tuple of a closed one.
			s.removeLocked(e)
			e = nil
		}
	}
	if e != nil {
		if e.be.removed.Load() {
			if p.TCPFlags&flagRST != 0 {
				s.removeLocked(e)
				s.mu.Unlock()
				return Drop
			}
			if isTCP {
				// Keep the flow, closed, so every later segment of the
				// dead connection is reset too.
				e.state = StateClosed
				s.touchLocked(e, now)
			} else {
				// The next datagram starts a new flow to a live backend.
				s.removeLocked(e)
			}
			s.c.resets++
			s.mu.Unlock()
			return Reset
		}
		if isTCP {
			e.state, e.fins = tcpNext(e.state, e.fins, dirOut, p.TCPFlags)
		}
		s.touchLocked(e, now)
		s.c.hits++
		addr, port := e.be.addr, e.backendPort()
		s.mu.Unlock()
		rewriteView(p, false, addr, port)
		return NAT
	}
	v := b.newFlowLocked(s, snap, p, now)
	s.mu.Unlock()
	return v
}

// hairpinTries bounds the picks for a client that is a backend of the
// service (newFlowLocked): with two backends, 8 tries miss the other one
// with a chance of 1/256.
const hairpinTries = 8

// newFlowLocked creates the flow for p, which has no entry, and NATs p.
func (b *Balancer) newFlowLocked(s *shard, snap *snapshot, p *packet.IP, now int64) Verdict {
	k := p.Tuple
	isTCP := k.Proto == packet.TCP
	if isTCP && p.TCPFlags&flagRST != 0 {
		s.c.invalid++
		return Drop
	}
	pt := snap.frontends[fkey{k.Dst, k.DPort, k.Proto}]
	if pt == nil {
		s.c.noService++
		return Reset
	}
	h := b.flowHash(&k)
	idx, ok := pt.table.Lookup(h)
	if !ok {
		s.c.noBackend++
		return Reset
	}
	be := pt.backends[idx]
	// A client that is a backend itself (an endpoint serving the VIP it
	// asks) cannot be its own backend: its reply would come back from
	// its own address, which its kernel drops as a martian. Pick again,
	// deterministically for the flow, among the others.
	for try := uint64(1); be.addr == k.Src && try <= hairpinTries; try++ {
		idx, _ = pt.table.Lookup(h ^ (try * 0x9e3779b97f4a7c15))
		be = pt.backends[idx]
	}
	for i := 1; be.addr == k.Src && i < len(pt.backends); i++ { // unlucky (or few slots elsewhere): the next other one
		be = pt.backends[(idx+i)%len(pt.backends)]
	}
	port := be.port
	if port == 0 {
		port = k.DPort
	}
	rk := key{Src: be.addr, Dst: k.Src, SPort: port, DPort: k.SPort, Proto: k.Proto}
	var k4, vk keys4
	var other, v *entry
	if k.Is4() {
		// This flow's keys and those of the flow it may evict, before
		// the maps are touched (keys4).
		k4 = keys4{pack4(&k), pack4(&rk)}
		if s.n >= b.perShard {
			if v = b.victimLocked(s, now); v != nil && v.orig.Is4() {
				vk = keys4{pack4(&v.orig), v.reply4()}
			}
		}
		other = s.byReply[k4.reply]
	} else {
		other = s.byReply6[rk]
	}
	if other != nil {
		if !b.expired(other, now) {
			// Another VIP already maps this client port to the same
			// backend address: the backend could not tell them apart.
			s.c.conflicts++
			return Drop
		}
		s.removeLocked(other)
		s.c.expired++
	}
	if s.n >= b.perShard && !b.makeRoomLocked(s, now, v, &vk) {
		s.c.refused++
		return Drop
	}
	st := StateUnreplied
	if isTCP && p.TCPFlags&(flagSYN|flagACK) == flagSYN {
		st = StateSynSent
	}
	e := s.insertLocked(&k, &rk, &k4, be, st, now)
	if isTCP {
		e.state, e.fins = tcpNext(e.state, e.fins, dirOut, p.TCPFlags)
	}
	s.c.newFlows++
	be.selections.Add(1)
	rewriteView(p, false, be.addr, port)
	return NAT
}

// Inbound handles an IP packet (IPv4 or IPv6) about to be delivered to a
// local client: it parses pkt and calls InboundIP. A packet that does not parse is
// Pass.
func (b *Balancer) Inbound(pkt []byte) Verdict {
	var p packet.IP
	if !p.Parse(pkt) {
		return Pass
	}
	return b.InboundIP(&p)
}

// InboundIP handles a parsed packet of either family about to be
// delivered to a local client (parsed in full, or its header alone: InboundIP completes
// the view when it needs the ports). Replies from a backend of a tracked flow get their source
// rewritten back to the VIP and port the client used, bytes and p.Tuple
// (NAT); so do ICMP and ICMPv6 errors that quote a packet of a tracked
// flow.
// Everything else is Pass. It allocates nothing.
func (b *Balancer) InboundIP(p *packet.IP) Verdict {
	snap := b.snap.Load()
	if snap.backendIPs.len() == 0 {
		return Pass
	}
	p.ParseTransport() // the router parsed only the header, for delivery
	if p.Proto == packet.ICMP || p.Proto == packet.ICMPv6 {
		return b.inboundICMP(snap, p)
	}
	if p.Proto != packet.TCP && p.Proto != packet.UDP {
		return Pass
	}
	if !snap.backendIPs.has(&p.Src) {
		return Pass
	}
	if p.Fragment() || !p.L4Valid() {
		return Pass
	}
	k := p.Tuple
	s := b.shardFor(&k.Dst, k.DPort, k.Proto)
	now := b.nanos()
	s.mu.Lock()
	e := s.replyLocked(&k)
	if e == nil {
		s.mu.Unlock()
		return Pass
	}
	if b.expired(e, now) {
		s.removeLocked(e)
		s.c.expired++
		s.mu.Unlock()
		return Pass
	}
	if p.Proto == packet.TCP {
		e.state, e.fins = tcpNext(e.state, e.fins, dirIn, p.TCPFlags)
	} else {
		e.state = udpNext(e.state, dirIn)
	}
	s.touchLocked(e, now)
	s.c.replyHits++
	addr, port := e.orig.Dst, e.orig.DPort
	s.mu.Unlock()
	rewriteView(p, true, addr, port)
	return NAT
}

// rewriteQuoted rewrites the source (src true) or destination address and
// port of the packet quoted in an ICMP error, with its IPv4 checksum and,
// when quoted in full, its transport checksum, and returns the change to
// the ICMP checksum.
func rewriteQuoted(inner []byte, ihl int, src bool, addr [16]byte, port uint16) delta {
	aoff, poff := ipDst, 2
	if src {
		aoff, poff = ipSrc, 0
	}
	l4 := inner[ihl:]
	var icmp, d delta
	// Inner address: changes the inner IPv4 checksum and the inner
	// transport checksum (pseudo-header).
	oldIPSum := binary.BigEndian.Uint16(inner[ipChecksum:])
	d.addAddr(inner[aoff:aoff+4], addr[12:])
	icmp.addAddr(inner[aoff:aoff+4], addr[12:])
	d.apply(inner, ipChecksum)
	copy(inner[aoff:aoff+4], addr[12:])
	icmp.add(oldIPSum, binary.BigEndian.Uint16(inner[ipChecksum:]))
	oldPort := binary.BigEndian.Uint16(l4[poff:])
	d.add(oldPort, port)
	icmp.add(oldPort, port)
	binary.BigEndian.PutUint16(l4[poff:], port)
	csumOff := tcpCsum
	if inner[9] == uint8(UDP) {
		csumOff = udpCsum
	}
	if len(l4) >= csumOff+2 {
		old := binary.BigEndian.Uint16(l4[csumOff:])
		if inner[9] == uint8(UDP) {
			d.applyUDP(l4, csumOff)
		} else {
			d.apply(l4, csumOff)
		}
		icmp.add(old, binary.BigEndian.Uint16(l4[csumOff:]))
	}
	return icmp
}

// outboundICMP handles an ICMP or ICMPv6 message from a client to a VIP:
// an error about a reply the client received from the VIP (port
// unreachable, frag needed, packet too big, …) is translated to the
// backend.
func (b *Balancer) outboundICMP(snap *snapshot, p *packet.IP) Verdict {
	inner, ihl, ik, ok := p.Quoted()
	if !ok {
		return Pass
	}
	// The quoted packet went VIP → client; its flow is client → VIP.
	k := key{Src: ik.Dst, Dst: ik.Src, SPort: ik.DPort, DPort: ik.SPort, Proto: ik.Proto}
	if k.Src != p.Src || k.Dst != p.Dst {
		return Pass
	}
	s := b.shardFor(&k.Src, k.SPort, k.Proto)
	now := b.nanos()
	s.mu.Lock()
	e := s.origLocked(&k)
	if e == nil || b.expired(e, now) || e.be.removed.Load() {
		s.mu.Unlock()
		return Pass
	}
	s.c.hits++
	addr, port := e.be.addr, e.backendPort()
	s.mu.Unlock()
	if p.Is6() {
		icmp := rewriteQuoted6(inner, ihl, ik.Proto, true, &addr, port)
		rewriteOuter6(p, icmp, false, &addr)
		return NAT
	}
	icmp := rewriteQuoted(inner, ihl, true, addr, port)
	icmp.apply(p.Payload(), icmpCsum)
	var d delta
	d.addAddr(p.Dst[12:], addr[12:])
	d.apply(p.Header(), ipChecksum)
	copy(p.Header()[ipDst:ipDst+4], addr[12:])
	p.Dst = addr
	return NAT
}

// inboundICMP handles an ICMP or ICMPv6 message to a client: an error
// about a packet the client sent to a backend (from the backend's host or
// a router on the way) is translated back to the VIP.
func (b *Balancer) inboundICMP(snap *snapshot, p *packet.IP) Verdict {
	if p.Fragment() || !p.L4Valid() {
		return Pass
	}
	inner, ihl, ik, ok := p.Quoted()
	if !ok {
		return Pass
	}
	if !snap.backendIPs.has(&ik.Dst) {
		return Pass
	}
	// The quoted packet went client → backend; its reply key is reversed.
	rk := key{Src: ik.Dst, Dst: ik.Src, SPort: ik.DPort, DPort: ik.SPort, Proto: ik.Proto}
	if rk.Dst != p.Dst {
		return Pass
	}
	s := b.shardFor(&rk.Dst, rk.DPort, rk.Proto)
	now := b.nanos()
	s.mu.Lock()
	e := s.replyLocked(&rk)
	if e == nil || b.expired(e, now) {
		s.mu.Unlock()
		return Pass
	}
	s.c.replyHits++
	addr, port := e.orig.Dst, e.orig.DPort
	s.mu.Unlock()
	if p.Is6() {
		icmp := rewriteQuoted6(inner, ihl, ik.Proto, false, &addr, port)
		if p.Src == rk.Src { // sent by the backend's host itself
			rewriteOuter6(p, icmp, true, &addr)
		} else {
			icmp.apply(p.Payload(), icmpCsum)
		}
		return NAT
	}
	icmp := rewriteQuoted(inner, ihl, false, addr, port)
	icmp.apply(p.Payload(), icmpCsum)
	if p.Src == rk.Src { // sent by the backend's host itself
		var d delta
		d.addAddr(p.Src[12:], addr[12:])
		d.apply(p.Header(), ipChecksum)
		copy(p.Header()[ipSrc:ipSrc+4], addr[12:])
		p.Src = addr
	}
	return NAT
}
