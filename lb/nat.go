package lb

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
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
	// BuildTCPReset (TCP) or BuildICMPPortUnreachable (UDP) built from it.
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

func (d *delta) addAddr(old, new [4]byte) {
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
func rewrite(ip, l4 []byte, proto uint8, src bool, addr [4]byte, port uint16) {
	aoff, poff := ipDst, 2
	if src {
		aoff, poff = ipSrc, 0
	}
	var d delta
	d.addAddr([4]byte(ip[aoff:aoff+4]), addr)
	d.apply(ip, ipChecksum)
	copy(ip[aoff:aoff+4], addr[:])
	d.add(binary.BigEndian.Uint16(l4[poff:]), port)
	binary.BigEndian.PutUint16(l4[poff:], port)
	if proto == uint8(UDP) {
		d.applyUDP(l4, udpCsum)
	} else {
		d.apply(l4, tcpCsum)
	}
}

// packet is a validated IPv4 TCP, UDP or ICMP packet.
type packet struct {
	ip    []byte // IPv4 header
	l4    []byte // transport header and payload, up to the IPv4 total length
	proto uint8
	key   key
	flags uint8 // TCP flags
}

// parse validates pkt as an unfragmented IPv4 packet and, for TCP and UDP,
// reads its 5-tuple. It returns false for anything malformed; frag reports
// a fragment.
func parse(pkt []byte) (p packet, ok, frag bool) {
	h := header.IPv4(pkt)
	if !h.IsValid(len(pkt)) {
		return p, false, false
	}
	if h.More() || h.FragmentOffset() != 0 {
		return p, false, true
	}
	hl := int(h.HeaderLength())
	p.ip = pkt[:hl]
	p.l4 = pkt[hl:h.TotalLength()]
	p.proto = h.Protocol()
	p.key = key{src: [4]byte(pkt[ipSrc:]), dst: [4]byte(pkt[ipDst:]), proto: p.proto}
	switch Proto(p.proto) {
	case TCP:
		t := header.TCP(p.l4)
		if len(t) < header.TCPMinimumSize || int(t.DataOffset()) < header.TCPMinimumSize || int(t.DataOffset()) > len(t) {
			return p, false, false
		}
		p.key.sport, p.key.dport = t.SourcePort(), t.DestinationPort()
		p.flags = uint8(t.Flags())
	case UDP:
		u := header.UDP(p.l4)
		if len(u) < header.UDPMinimumSize || int(u.Length()) < header.UDPMinimumSize || int(u.Length()) > len(u) {
			return p, false, false
		}
		p.key.sport, p.key.dport = u.SourcePort(), u.DestinationPort()
	case icmpProto:
		if len(p.l4) < header.ICMPv4MinimumSize {
			return p, false, false
		}
	}
	return p, true, false
}

// Outbound handles an IPv4 packet sent by a local client, before the route
// lookup. Packets to a VIP are NATed to the flow's backend in place (NAT),
// or answered (Reset) or dropped (Drop); anything else is Pass. It
// allocates nothing for established flows.
func (b *Balancer) Outbound(pkt []byte) Verdict {
	if len(pkt) < header.IPv4MinimumSize || pkt[0]>>4 != 4 {
		return Pass
	}
	snap := b.snap.Load()
	if _, ok := snap.vips[[4]byte(pkt[ipDst:])]; !ok {
		return Pass
	}
	p, ok, frag := parse(pkt)
	if !ok {
		if frag {
			b.fragments.Add(1)
		} else {
			b.malformed.Add(1)
		}
		return Drop
	}
	switch Proto(p.proto) {
	case TCP, UDP:
	case icmpProto:
		return b.outboundICMP(snap, &p)
	default:
		return Pass
	}
	k := p.key
	isTCP := p.proto == uint8(TCP)
	s := b.shardFor(k.src, k.sport, k.proto)
	now := b.nanos()
	s.mu.Lock()
	e := s.byOrig[k]
	if e != nil {
		if b.expired(e, now) {
			s.removeLocked(e)
			s.c.expired++
			e = nil
		} else if isTCP && p.flags&(flagSYN|flagACK|flagRST) == flagSYN && (e.state == StateClosing || e.state == StateClosed) {
			// A new connection reusing the tuple of a closed one.
			s.removeLocked(e)
			e = nil
		}
	}
	if e != nil {
		if e.be.removed.Load() {
			if p.flags&flagRST != 0 {
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
			e.state, e.fins = tcpNext(e.state, e.fins, dirOut, p.flags)
		}
		s.touchLocked(e, now)
		s.c.hits++
		addr, port := e.reply.src, e.reply.sport
		s.mu.Unlock()
		rewrite(p.ip, p.l4, p.proto, false, addr, port)
		return NAT
	}
	v := b.newFlowLocked(s, snap, &p, now)
	s.mu.Unlock()
	return v
}

// newFlowLocked creates the flow for p, which has no entry, and NATs p.
func (b *Balancer) newFlowLocked(s *shard, snap *snapshot, p *packet, now int64) Verdict {
	k := p.key
	isTCP := k.proto == uint8(TCP)
	if isTCP && p.flags&flagRST != 0 {
		s.c.invalid++
		return Drop
	}
	pt := snap.frontends[fkey{k.dst, k.dport, k.proto}]
	if pt == nil {
		s.c.noService++
		return Reset
	}
	idx, ok := pt.table.Lookup(b.flowHash(k))
	if !ok {
		s.c.noBackend++
		return Reset
	}
	be := pt.backends[idx]
	port := be.port
	if port == 0 {
		port = k.dport
	}
	rk := key{src: be.addr, dst: k.src, sport: port, dport: k.sport, proto: k.proto}
	if other := s.byReply[rk]; other != nil {
		if !b.expired(other, now) {
			// Another VIP already maps this client port to the same
			// backend address: the backend could not tell them apart.
			s.c.conflicts++
			return Drop
		}
		s.removeLocked(other)
		s.c.expired++
	}
	if s.n >= b.perShard && !b.makeRoomLocked(s, now) {
		s.c.refused++
		return Drop
	}
	st := StateUnreplied
	if isTCP && p.flags&(flagSYN|flagACK) == flagSYN {
		st = StateSynSent
	}
	e := s.insertLocked(k, rk, be, st, now)
	if isTCP {
		e.state, e.fins = tcpNext(e.state, e.fins, dirOut, p.flags)
	}
	s.c.newFlows++
	be.selections.Add(1)
	rewrite(p.ip, p.l4, p.proto, false, be.addr, port)
	return NAT
}

// Inbound handles an IPv4 packet about to be delivered to a local client.
// Replies from a backend of a tracked flow get their source rewritten back
// to the VIP and port the client used (NAT); so do ICMP errors that quote
// a packet of a tracked flow. Everything else is Pass. It allocates
// nothing.
func (b *Balancer) Inbound(pkt []byte) Verdict {
	if len(pkt) < header.IPv4MinimumSize || pkt[0]>>4 != 4 {
		return Pass
	}
	snap := b.snap.Load()
	if len(snap.backendIPs) == 0 {
		return Pass
	}
	proto := pkt[9]
	if proto == uint8(icmpProto) {
		return b.inboundICMP(snap, pkt)
	}
	if proto != uint8(TCP) && proto != uint8(UDP) {
		return Pass
	}
	if _, ok := snap.backendIPs[[4]byte(pkt[ipSrc:])]; !ok {
		return Pass
	}
	p, ok, _ := parse(pkt)
	if !ok {
		return Pass
	}
	k := p.key
	s := b.shardFor(k.dst, k.dport, k.proto)
	now := b.nanos()
	s.mu.Lock()
	e := s.byReply[k]
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
	if p.proto == uint8(TCP) {
		e.state, e.fins = tcpNext(e.state, e.fins, dirIn, p.flags)
	} else {
		e.state = udpNext(e.state, dirIn)
	}
	s.touchLocked(e, now)
	s.c.replyHits++
	addr, port := e.orig.dst, e.orig.dport
	s.mu.Unlock()
	rewrite(p.ip, p.l4, p.proto, true, addr, port)
	return NAT
}

// icmpError returns the quoted packet of an ICMP error message: its IPv4
// header and at least the 8 bytes of transport header that hold the ports,
// and the inner 5-tuple. ok is false for other ICMP messages and for
// errors that do not quote a TCP or UDP packet.
func icmpError(icmp []byte) (inner []byte, ihl int, k key, ok bool) {
	switch header.ICMPv4Type(icmp[0]) {
	case header.ICMPv4DstUnreachable, header.ICMPv4TimeExceeded, header.ICMPv4ParamProblem:
	default:
		return nil, 0, k, false
	}
	inner = icmp[header.ICMPv4MinimumSize:]
	if len(inner) < header.IPv4MinimumSize || inner[0]>>4 != 4 {
		return nil, 0, k, false
	}
	ihl = int(inner[0]&0xf) * 4
	proto := inner[9]
	if ihl < header.IPv4MinimumSize || len(inner) < ihl+8 || (proto != uint8(TCP) && proto != uint8(UDP)) {
		return nil, 0, k, false
	}
	if binary.BigEndian.Uint16(inner[6:])&0x1fff != 0 { // a non-first fragment has no ports
		return nil, 0, k, false
	}
	k = key{
		src: [4]byte(inner[ipSrc:]), dst: [4]byte(inner[ipDst:]),
		sport: binary.BigEndian.Uint16(inner[ihl:]), dport: binary.BigEndian.Uint16(inner[ihl+2:]),
		proto: proto,
	}
	return inner, ihl, k, true
}

// rewriteQuoted rewrites the source (src true) or destination address and
// port of the packet quoted in an ICMP error, with its IPv4 checksum and,
// when quoted in full, its transport checksum, and returns the change to
// the ICMP checksum.
func rewriteQuoted(inner []byte, ihl int, src bool, addr [4]byte, port uint16) delta {
	aoff, poff := ipDst, 2
	if src {
		aoff, poff = ipSrc, 0
	}
	l4 := inner[ihl:]
	var icmp, d delta
	// Inner address: changes the inner IPv4 checksum and the inner
	// transport checksum (pseudo-header).
	oldIPSum := binary.BigEndian.Uint16(inner[ipChecksum:])
	d.addAddr([4]byte(inner[aoff:aoff+4]), addr)
	icmp.addAddr([4]byte(inner[aoff:aoff+4]), addr)
	d.apply(inner, ipChecksum)
	copy(inner[aoff:aoff+4], addr[:])
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

// outboundICMP handles an ICMP message from a client to a VIP: an error
// about a reply the client received from the VIP (port unreachable, frag
// needed, …) is translated to the backend.
func (b *Balancer) outboundICMP(snap *snapshot, p *packet) Verdict {
	inner, ihl, ik, ok := icmpError(p.l4)
	if !ok {
		return Pass
	}
	// The quoted packet went VIP → client; its flow is client → VIP.
	k := key{src: ik.dst, dst: ik.src, sport: ik.dport, dport: ik.sport, proto: ik.proto}
	if k.src != p.key.src || k.dst != p.key.dst {
		return Pass
	}
	s := b.shardFor(k.src, k.sport, k.proto)
	now := b.nanos()
	s.mu.Lock()
	e := s.byOrig[k]
	if e == nil || b.expired(e, now) || e.be.removed.Load() {
		s.mu.Unlock()
		return Pass
	}
	s.c.hits++
	addr, port := e.reply.src, e.reply.sport
	s.mu.Unlock()
	icmp := rewriteQuoted(inner, ihl, true, addr, port)
	icmp.apply(p.l4, icmpCsum)
	var d delta
	d.addAddr(p.key.dst, addr)
	d.apply(p.ip, ipChecksum)
	copy(p.ip[ipDst:ipDst+4], addr[:])
	return NAT
}

// inboundICMP handles an ICMP message to a client: an error about a packet
// the client sent to a backend (from the backend's host or a router on the
// way) is translated back to the VIP.
func (b *Balancer) inboundICMP(snap *snapshot, pkt []byte) Verdict {
	if len(pkt) < header.IPv4MinimumSize+header.ICMPv4MinimumSize+header.IPv4MinimumSize+8 {
		return Pass
	}
	p, ok, _ := parse(pkt)
	if !ok {
		return Pass
	}
	inner, ihl, ik, ok := icmpError(p.l4)
	if !ok {
		return Pass
	}
	if _, ok := snap.backendIPs[ik.dst]; !ok {
		return Pass
	}
	// The quoted packet went client → backend; its reply key is reversed.
	rk := key{src: ik.dst, dst: ik.src, sport: ik.dport, dport: ik.sport, proto: ik.proto}
	if rk.dst != p.key.dst {
		return Pass
	}
	s := b.shardFor(rk.dst, rk.dport, rk.proto)
	now := b.nanos()
	s.mu.Lock()
	e := s.byReply[rk]
	if e == nil || b.expired(e, now) {
		s.mu.Unlock()
		return Pass
	}
	s.c.replyHits++
	addr, port := e.orig.dst, e.orig.dport
	s.mu.Unlock()
	icmp := rewriteQuoted(inner, ihl, false, addr, port)
	icmp.apply(p.l4, icmpCsum)
	if p.key.src == rk.src { // sent by the backend's host itself
		var d delta
		d.addAddr(p.key.src, addr)
		d.apply(p.ip, ipChecksum)
		copy(p.ip[ipSrc:ipSrc+4], addr[:])
	}
	return NAT
}
