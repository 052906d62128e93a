package router

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/packet"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/stack/stacktest"
	"github.com/overlayd/overlayd/udp/udptest"
	"github.com/overlayd/overlayd/vxlan"
)

// ipv6UDP builds an IPv6/UDP packet with a valid checksum, behind the
// extension headers ext, each laid out whole with its own protocol number
// in its first byte, where ipv6UDP then writes the next header's.
func ipv6UDP(src, dst netip.Addr, sport, dport uint16, payload []byte, ext ...[]byte) []byte {
	var extLen int
	for _, e := range ext {
		extLen += len(e)
	}
	l4 := header.UDPMinimumSize + len(payload)
	pkt := make([]byte, header.IPv6MinimumSize+extLen+l4)
	next := uint8(header.UDPProtocolNumber)
	off := header.IPv6MinimumSize + extLen
	for i := len(ext) - 1; i >= 0; i-- {
		off -= len(ext[i])
		copy(pkt[off:], ext[i])
		pkt[off], next = next, ext[i][0]
	}
	header.IPv6(pkt).Encode(&header.IPv6Fields{
		PayloadLength: uint16(extLen + l4), TransportProtocol: tcpip.TransportProtocolNumber(next), HopLimit: 64,
		SrcAddr: tcpip.AddrFrom16(src.As16()), DstAddr: tcpip.AddrFrom16(dst.As16()),
	})
	u := header.UDP(pkt[header.IPv6MinimumSize+extLen:])
	u.Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(l4)})
	copy(u.Payload(), payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, tcpip.AddrFrom16(src.As16()), tcpip.AddrFrom16(dst.As16()), uint16(l4))
	u.SetChecksum(^checksum.Checksum(u, xsum))
	return pkt
}

// destOpts is an empty destination options header (8 bytes of padding).
func destOpts() []byte { return []byte{packet.ExtDestOpts, 0, 1, 4, 0, 0, 0, 0} }

// newPair6 is newPair on a dual-stack network: A has addrA and addrA6,
// B addrB and addrB6, each routing the other's prefixes of both families.
func newPair6(t *testing.T, opts Options) *pair {
	t.Helper()
	p := &pair{net: udptest.NewNetwork()}
	p.devA, p.devB = stacktest.NewPipe(), stacktest.NewPipe()
	p.ulA, p.ulB = p.net.Conn(vtepA), p.net.Conn(vtepB)
	var err error
	oa, ob := opts, opts
	oa.Networks = []Network{{VNI: testVNI, Addrs: []netip.Prefix{addrA, addrA6}}}
	ob.Networks = []Network{{VNI: testVNI, Addrs: []netip.Prefix{addrB, addrB6}}}
	if p.rtA, err = New(p.devA, p.ulA, oa); err != nil {
		t.Fatal(err)
	}
	if p.rtB, err = New(p.devB, p.ulB, ob); err != nil {
		t.Fatal(err)
	}
	must(t, p.rtA.SetRoutes([]Route{
		{Prefix: netip.MustParsePrefix("10.1.2.0/24"), VTEP: vtepB, VNI: testVNI, Owner: "test"},
		{Prefix: route6B, VTEP: vtepB, VNI: testVNI, Owner: "test"},
	}, nil))
	must(t, p.rtB.SetRoutes([]Route{
		{Prefix: netip.MustParsePrefix("10.1.1.0/24"), VTEP: vtepA, VNI: testVNI, Owner: "test"},
		{Prefix: netip.MustParsePrefix("fd00:1::1:0/112"), VTEP: vtepA, VNI: testVNI, Owner: "test"},
	}, nil))
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.rtA.Start(ctx)
	p.rtB.Start(ctx)
	t.Cleanup(func() {
		cancel()
		for _, c := range []interface{ Close() error }{p.devA, p.devB, p.ulA, p.ulB, p.rtA, p.rtB} {
			c.Close()
		}
	})
	return p
}

// An IPv6 packet crosses from A's attachment to B's byte-exact after a
// neighbour solicitation resolves B's MAC; the reply needs none (B
// learned A from the packet); IPv4 beside it works as before.
func TestForwardBothWays6(t *testing.T) {
	p := newPair6(t, Options{})
	out := ipv6UDP(addrA6.Addr(), addrB6.Addr(), 1000, 2000, []byte("hello overlay, in IPv6"))
	must(t, p.devA.Inject(out))
	if got := next(t, p.devB); !bytes.Equal(got, out) {
		t.Fatalf("B received %x, want %x", got, out)
	}
	back := ipv6UDP(addrB6.Addr(), addrA6.Addr(), 2000, 1000, []byte("hello back"))
	must(t, p.devB.Inject(back))
	if got := next(t, p.devA); !bytes.Equal(got, back) {
		t.Fatalf("A received %x, want %x", got, back)
	}
	out4 := ipv4UDP(addrA.Addr(), addrB.Addr(), 1000, 2000, []byte("and IPv4"), false)
	must(t, p.devA.Inject(out4))
	if got := next(t, p.devB); !bytes.Equal(got, out4) {
		t.Fatalf("B received %x, want %x", got, out4)
	}
	sa, sb := p.rtA.Stats(), p.rtB.Stats()
	if sa.ARPAsked != 2 || sb.ARPAnswers != 2 || sb.ARPAsked != 0 {
		t.Errorf("neighbour discovery: A asked %d, B answered %d, B asked %d; want 2 (one NS, one ARP), 2, 0", sa.ARPAsked, sb.ARPAnswers, sb.ARPAsked)
	}
	if sa.Outbound.Packets != 2 || sb.Inbound.Packets != 2 || sb.Outbound.Packets != 1 || sa.Inbound.Packets != 1 {
		t.Errorf("counters: A %+v, B %+v", sa, sb)
	}
	if mac := p.rtA.Neighbors()[addrB6.Addr()]; mac != p.rtB.MAC() {
		t.Errorf("A learned %v for %v, want %v", mac, addrB6.Addr(), p.rtB.MAC())
	}
	if mac := p.rtB.Neighbors()[addrA6.Addr()]; mac != p.rtA.MAC() {
		t.Errorf("B learned %v for %v, want %v", mac, addrA6.Addr(), p.rtA.MAC())
	}
	if len(sa.Drops)+len(sb.Drops) != 0 {
		t.Errorf("drops: A %v, B %v", sa.Drops, sb.Drops)
	}
}

// ICMPv6 errors for the attachment: no route (1/0), too big (2/0 with
// the path MTU, whatever the packet: IPv6 has no DF), each quoting the
// packet and within 1280 bytes; none about a packet to a multicast group.
func TestICMPv6Errors(t *testing.T) {
	p := newPair6(t, Options{PathMTU: 1400})
	for _, tt := range []struct {
		name     string
		pkt      []byte
		typ      header.ICMPv6Type
		code     header.ICMPv6Code
		mtu      uint32
		reason   DropReason
		wantICMP bool
	}{
		{"no route", ipv6UDP(addrA6.Addr(), netip.MustParseAddr("fd00:9::9"), 1, 2, []byte("x")), header.ICMPv6DstUnreachable, header.ICMPv6NetworkUnreachable, 0, DropNoRoute, true},
		{"too big", ipv6UDP(addrA6.Addr(), addrB6.Addr(), 1, 2, make([]byte, 1400)), header.ICMPv6PacketTooBig, 0, 1400, DropTooBig, true},
		{"to a group", ipv6UDP(addrA6.Addr(), netip.MustParseAddr("ff02::2"), 1, 2, []byte("x")), 0, 0, 0, DropNoRoute, false},
	} {
		before := p.rtA.drops.Load(tt.reason)
		must(t, p.devA.Inject(tt.pkt))
		waitDrops(t, p.rtA, tt.name+" drop", tt.reason, before+1)
		if !tt.wantICMP {
			// The next error is the marker's (no route), not about tt.pkt.
			marker := netip.MustParseAddr("fd00:9::8")
			must(t, p.devA.Inject(ipv6UDP(addrA6.Addr(), marker, 7, 7, []byte("marker"))))
			if got := next(t, p.devA); header.IPv6(got).SourceAddress() != tcpip.AddrFrom16(marker.As16()) {
				t.Errorf("%s: an ICMPv6 error %x came first", tt.name, got)
			}
			continue
		}
		got := next(t, p.devA)
		ip := header.IPv6(got)
		if !ip.IsValid(len(got)) || ip.TransportProtocol() != header.ICMPv6ProtocolNumber || len(got) > header.IPv6MinimumMTU {
			t.Fatalf("%s: bad ICMPv6 packet %x", tt.name, got)
		}
		if ip.DestinationAddress() != tcpip.AddrFrom16(addrA6.Addr().As16()) || ip.SourceAddress() != header.IPv6(tt.pkt).DestinationAddress() {
			t.Errorf("%s: ICMPv6 %v → %v", tt.name, ip.SourceAddress(), ip.DestinationAddress())
		}
		ic := header.ICMPv6(ip.Payload())
		want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: ic, Src: ip.SourceAddress(), Dst: ip.DestinationAddress()})
		if ic.Type() != tt.typ || ic.Code() != tt.code || ic.MTU() != tt.mtu || ic.Checksum() != want {
			t.Errorf("%s: ICMPv6 %d/%d mtu %d checksum %#x, want %d/%d mtu %d checksum %#x", tt.name, ic.Type(), ic.Code(), ic.MTU(), ic.Checksum(), tt.typ, tt.code, tt.mtu, want)
		}
		if q := ic.Payload(); len(q) < 48 || !bytes.Equal(q, tt.pkt[:len(q)]) {
			t.Errorf("%s: ICMPv6 quotes %x", tt.name, q)
		}
	}
}

// Inbound IPv6 datagrams that must not be delivered are dropped and
// counted by reason; an IPv6 packet behind extension headers, a fragment
// among them, is delivered as it came.
func TestInbound6(t *testing.T) {
	r := hotRouter6(t)
	frame := func(dst vxlan.MAC, pkt []byte) []byte {
		buf := make([]byte, 64+len(pkt))
		copy(buf[64:], pkt)
		return vxlan.Encap(buf, 64, len(pkt), testVNI, dst, macB, vxlan.EtherTypeIPv6)
	}
	good := ipv6UDP(addrB6.Addr(), addrA6.Addr(), 1, 2, []byte("fine"))
	frag := []byte{packet.ExtFragment, 0, 0, 0, 0, 0, 0, 7} // offset 0, M clear: an atomic fragment
	nine := make([][]byte, packet.MaxExtHeaders+1)
	for i := range nine {
		nine[i] = destOpts()
	}
	hopLater := destOpts()
	hopByHop := []byte{0, 0, 1, 4, 0, 0, 0, 0}
	mapped := ipv6UDP(addrB6.Addr(), addrA6.Addr(), 1, 2, nil)
	copy(mapped[8:24], netip.MustParseAddr("::ffff:10.1.2.1").AsSlice())
	for _, tt := range []struct {
		name string
		from netip.AddrPort
		d    []byte
		why  DropReason // DropNone: delivered
	}{
		{"to the node", vtepB, frame(r.MAC(), good), DropNone},
		{"behind a destination options and a fragment header", vtepB, frame(r.MAC(), ipv6UDP(addrB6.Addr(), addrA6.Addr(), 1, 2, []byte("ext"), destOpts(), frag)), DropNone},
		{"from outside the network", vtepB, frame(r.MAC(), ipv6UDP(netip.MustParseAddr("2001:db8::1"), addrA6.Addr(), 1, 2, nil)), DropNone},
		{"to another MAC", vtepB, frame(macB, good), DropNotForUs},
		{"to a group", vtepB, frame(vxlan.MulticastMAC(netip.MustParseAddr("ff02::16")), good), DropNotForUs},
		{"to no one here", vtepB, frame(r.MAC(), ipv6UDP(addrB6.Addr(), netip.MustParseAddr("fd00:1::1:99"), 1, 2, nil)), DropNotForUs},
		{"from another VTEP than the owner's", netip.MustParseAddrPort("192.0.2.2:5555"), frame(r.MAC(), ipv6UDP(netip.MustParseAddr("fd00:1::3:1"), addrA6.Addr(), 1, 2, nil)), DropNotOwner},
		{"nine extension headers", vtepB, frame(r.MAC(), ipv6UDP(addrB6.Addr(), addrA6.Addr(), 1, 2, nil, nine...)), DropExtHeaders},
		{"hop-by-hop after another", vtepB, frame(r.MAC(), ipv6UDP(addrB6.Addr(), addrA6.Addr(), 1, 2, nil, hopLater, hopByHop)), DropExtHeaders},
		{"a mapped address", vtepB, frame(r.MAC(), mapped), DropMalformed},
		{"IPv4 in an IPv6 frame", vtepB, frame(r.MAC(), ipv4UDP(addrB.Addr(), addrA.Addr(), 1, 2, nil, false)), DropMalformed},
		{"short", vtepB, frame(r.MAC(), good[:30]), DropMalformed},
	} {
		var before uint64
		if tt.why != DropNone {
			before = r.drops.Load(tt.why)
		}
		inBefore := r.in.packets.Load()
		b := recvFrom(r, tt.from, tt.d)
		switch {
		case tt.why == DropNone && (len(b.deliver) != 1 || r.in.packets.Load() != inBefore+1):
			t.Errorf("%s: not delivered (drops %v)", tt.name, r.drops.Snapshot())
		case tt.why == DropNone && !bytes.Equal(b.deliver[0][r.deliverOff():], tt.d[vxlan.EncapLen:]):
			t.Errorf("%s: delivered %x", tt.name, b.deliver[0][r.deliverOff():])
		case tt.why != DropNone && (len(b.deliver) != 0 || r.drops.Load(tt.why) != before+1):
			t.Errorf("%s: %v drops %d → %d, %d delivered", tt.name, tt.why, before, r.drops.Load(tt.why), len(b.deliver))
		}
	}
	if n := r.drops.Load(DropUnsupported); n != 0 {
		t.Errorf("%d IPv6 packets counted unsupported", n)
	}
}

// Endpoints with IPv6 addresses: packets between two of them are
// switched locally, to and from the attachment too; a packet from an
// endpoint with another source (IPv4 or IPv6) is spoofed; another
// network's IPv6 addresses are out of reach; one for B goes over VXLAN.
func TestEndpoint6(t *testing.T) {
	r := hotRouter6(t)
	must(t, r.SetNetworks([]Network{
		{VNI: testVNI, Addrs: []netip.Prefix{addrA, addrA6}},
		{VNI: otherVNI, Addrs: []netip.Prefix{netip.MustParsePrefix("fd00:2::1/64")}},
	}))
	must(t, r.SetRoutes([]Route{{Prefix: route6B, VTEP: vtepB, VNI: testVNI}}, nil))
	e1Addr, e2Addr := netip.MustParseAddr("fd00:1::1:10"), netip.MustParseAddr("fd00:1::1:11")
	gAddr := netip.MustParseAddr("fd00:2::10")
	d1, d2, dg := stacktest.NewPipe(), stacktest.NewPipe(), stacktest.NewPipe()
	e1 := addEP6(t, r, "e1", testVNI, []netip.Addr{ep1Addr, e1Addr}, d1)
	addEP6(t, r, "e2", testVNI, []netip.Addr{e2Addr}, d2)
	g := addEP6(t, r, "g", otherVNI, []netip.Addr{gAddr}, dg)

	there := ipv6UDP(e1Addr, e2Addr, 1, 2, []byte("e1 → e2"))
	b := sendFrom(r, e1, there)
	if len(b.send) != 0 || len(b.local) != 1 {
		t.Fatalf("e1 → e2: %d to the underlay, %d local", len(b.send), len(b.local))
	}
	if got := next(t, d2); !bytes.Equal(got, there) {
		t.Errorf("e2 got %x, want %x", got, there)
	}
	up := ipv6UDP(e1Addr, addrA6.Addr(), 1, 2, []byte("e1 → host"))
	if b := sendFrom(r, e1, up); len(b.local) != 1 || b.local[0].ep != nil {
		t.Errorf("e1 → the node's IPv6 address: not switched to the attachment")
	}
	down := ipv6UDP(addrA6.Addr(), e1Addr, 2, 1, []byte("host → e1"))
	sendFrom(r, nil, down)
	if got := next(t, d1); !bytes.Equal(got, down) {
		t.Errorf("e1 got %x, want %x", got, down)
	}
	// To B: over VXLAN, as the IPv6 EtherType, to B's MAC.
	b = sendFrom(r, e1, ipv6UDP(e1Addr, addrB6.Addr(), 1, 2, []byte("e1 → B")))
	if len(b.send) != 1 || b.dsts[0] != vtepB {
		t.Fatalf("e1 → B: %d datagrams", len(b.send))
	}
	if _, f, _ := vxlan.Decap(b.send[0]); f.Type() != vxlan.EtherTypeIPv6 || f.Dst() != macB || f.Src() != r.MAC() {
		t.Errorf("e1 → B: frame %x", []byte(f[:vxlan.EthernetLen]))
	}
	// B's reply is delivered to e1's device.
	reply := ipv6UDP(addrB6.Addr(), e1Addr, 2, 1, []byte("B → e1"))
	buf := make([]byte, 64+len(reply))
	copy(buf[64:], reply)
	recvFrom(r, vtepB, vxlan.Encap(buf, 64, len(reply), testVNI, r.MAC(), macB, vxlan.EtherTypeIPv6))
	if got := next(t, d1); !bytes.Equal(got, reply) {
		t.Errorf("e1 got %x from B, want %x", got, reply)
	}
	for _, tt := range []struct {
		name string
		pkt  []byte
		why  DropReason
	}{
		{"e2's source", ipv6UDP(e2Addr, addrB6.Addr(), 1, 2, nil), DropSpoofedSource},
		{"a link-local source", ipv6UDP(netip.MustParseAddr("fe80::1"), netip.MustParseAddr("ff02::2"), 1, 2, nil), DropSpoofedSource},
		{"to g's network", ipv6UDP(e1Addr, gAddr, 1, 2, nil), DropOtherNetwork},
		{"to g's node address", ipv6UDP(e1Addr, netip.MustParseAddr("fd00:2::1"), 1, 2, nil), DropOtherNetwork},
	} {
		before := r.drops.Load(tt.why)
		if b := sendFrom(r, e1, tt.pkt); len(b.send)+len(b.local) != 0 || r.drops.Load(tt.why) != before+1 {
			t.Errorf("%s: forwarded, or not counted as %v", tt.name, tt.why)
		}
	}
	// g (IPv6 only) may not send IPv4 at all.
	before := r.drops.Load(DropSpoofedSource)
	if b := sendFrom(r, g, ipv4UDP(ep1Addr, addrA.Addr(), 1, 2, nil, false)); len(b.local) != 0 || r.drops.Load(DropSpoofedSource) != before+1 {
		t.Error("an IPv6-only endpoint sent IPv4")
	}
	// An NDP solicitation for e1's IPv6 address is answered.
	if b := recvFrom(r, vtepB, solicit(addrB6.Addr(), e1Addr, false)); len(b.reply.send) != 1 {
		t.Errorf("solicitation for e1: %d answers", len(b.reply.send))
	}
}

// addEP6 adds an endpoint with addrs or fails the test.
func addEP6(t testing.TB, r *Router, id string, vni uint32, addrs []netip.Addr, dev stack.Device) *endpoint {
	t.Helper()
	if err := r.AddEndpoint(EndpointConfig{ID: id, VNI: vni, Addrs: addrs, Device: dev}); err != nil {
		t.Fatal(err)
	}
	return r.eps.Load().byID[id]
}

// A packet to an IPv6 neighbour of unknown MAC waits for the
// advertisement, then goes out as IPv6 to the MAC learned.
func TestPending6(t *testing.T) {
	r := hotRouter6(t)
	r.neigh = newShardedMap[neighKey, vxlan.MAC](16)
	pkt := ipv6UDP(addrA6.Addr(), addrB6.Addr(), 1, 2, []byte("wait for it"))
	b := newOutBatch(1)
	fillOut(b, pkt, 1)
	r.outbound(b, 1)
	if len(b.send) != 1 || r.pending.len() != 1 {
		t.Fatalf("%d sent (want the solicitation), %d pending", len(b.send), r.pending.len())
	}
	if _, f, _ := vxlan.Decap(b.send[0]); !vxlan.NDP(f.Payload()).IsValid() || vxlan.NDP(f.Payload()).Target() != addrB6.Addr() {
		t.Fatalf("sent %x, want a solicitation for %v", b.send[0], addrB6.Addr())
	}
	in := recvFrom(r, vtepB, advert(macB, addrB6.Addr(), r.MAC()))
	if len(in.reply.send) != 1 || in.reply.dsts[0] != vtepB {
		t.Fatalf("after the advertisement: %d released", len(in.reply.send))
	}
	_, f, _ := vxlan.Decap(in.reply.send[0])
	if f.Type() != vxlan.EtherTypeIPv6 || f.Dst() != macB || !bytes.Equal(f.Payload(), pkt) {
		t.Errorf("released %x", in.reply.send[0])
	}
}

// In L2 mode an IPv6 solicitation's frame (33:33:ff:…) floods to every
// VTEP of the network, and IPv6 frames get their flow's hash.
func TestL2IPv6(t *testing.T) {
	dev := stacktest.New(stacktest.Options{Layer: stack.L2})
	r, err := New(dev, udptest.NewNetwork().Conn(vtepA), Options{Networks: []Network{{VNI: testVNI, Addrs: []netip.Prefix{addrA6}}}})
	must(t, err)
	defer dev.Close()
	defer r.Close()
	vtepC := netip.MustParseAddrPort("192.0.2.3:4789")
	must(t, r.SetRoutes([]Route{{Prefix: route6B, VTEP: vtepB, VNI: testVNI}, {Prefix: netip.MustParsePrefix("fd00:1::3:0/112"), VTEP: vtepC, VNI: testVNI}}, nil))
	b := newOutBatch(2)
	ns := make([]byte, vxlan.EthernetLen+vxlan.NDPLen)
	target := addrB6.Addr()
	vxlan.Ethernet(ns).Encode(vxlan.MulticastMAC(vxlan.SolicitedNode(target)), macB, vxlan.EtherTypeIPv6)
	vxlan.NDP(ns[vxlan.EthernetLen:]).EncodeSolicit(macB, addrA6.Addr(), target)
	fillOut(b, ns, 1)
	r.outbound(b, 1)
	if len(b.send) != 2 || b.dsts[0] == b.dsts[1] {
		t.Fatalf("solicitation flooded to %v, want B and C", b.dsts)
	}
	udp := make([]byte, vxlan.EthernetLen)
	vxlan.Ethernet(udp).Encode(macB, r.MAC(), vxlan.EtherTypeIPv6)
	u6 := ipv6UDP(addrA6.Addr(), addrB6.Addr(), 1, 2, []byte("l2"))
	udp = append(udp, u6...)
	b.reset()
	fillOut(b, udp, 1)
	r.outbound(b, 1)
	if len(b.flows) == 0 || b.flows[0] != packet.Hash(u6) || b.flows[0] == 0 {
		t.Errorf("IPv6 frame hashed %v, want %#x", b.flows, packet.Hash(u6))
	}
}

// The IPv6 per-packet paths allocate nothing in steady state, as IPv4's.
func TestHotPath6AllocatesNothing(t *testing.T) {
	r := hotRouter6(t)
	d1 := newSink()
	e1 := addEP6(t, r, "e1", testVNI, []netip.Addr{ep6Addr}, d1)
	e2Addr := netip.MustParseAddr("fd00:1::1:11")
	addEP6(t, r, "e2", testVNI, []netip.Addr{e2Addr}, newSink())
	const n = 64
	out := newOutBatch(n)
	fillOut(out, ipv6UDP(addrA6.Addr(), addrB6.Addr(), 1, 2, make([]byte, 1400)), n)
	in := newInBatch(n)
	fill6 := func(pkt []byte) {
		for i := range n {
			buf := in.bufs[i]
			copy(buf[headroom+vxlan.EncapLen:], pkt)
			d := vxlan.Encap(buf, headroom+vxlan.EncapLen, len(pkt), testVNI, r.MAC(), macB, vxlan.EtherTypeIPv6)
			in.sizes[i], in.srcs[i] = len(d), vtepB
		}
	}
	fill6(ipv6UDP(addrB6.Addr(), addrA6.Addr(), 2, 1, make([]byte, 1400)))
	local := newOutBatch(n)
	local.src = e1
	fillOut(local, ipv6UDP(ep6Addr, e2Addr, 1, 2, make([]byte, 1400)), n)
	big := newOutBatch(4)
	fillOut(big, ipv6UDP(addrA6.Addr(), addrB6.Addr(), 1, 2, make([]byte, 9000)), 4)
	ns := newInBatch(1)
	nsd := solicit(addrB6.Addr(), addrA6.Addr(), true)
	ns.sizes[0], ns.srcs[0] = copy(ns.rbufs[0], nsd), vtepB
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"outbound", func() { out.reset(); r.outbound(out, n) }},
		{"inbound", func() { in.reset(); r.inbound(in, n) }},
		{"local switching", func() { local.reset(); r.outbound(local, n); r.flushLocal(local.local, local.scratch, headroom) }},
		{"too big (ICMPv6)", func() { big.reset(); r.outbound(big, 4) }},
		{"solicitation answered", func() { ns.reset(); r.inbound(ns, 1) }},
	} {
		c.f() // warm up: first-use buffers
		if a := testing.AllocsPerRun(100, c.f); a != 0 {
			t.Errorf("%s: %v allocs per run, want 0", c.name, a)
		}
	}
	if len(out.send) != n || len(in.deliver) != n || len(local.local) != n || len(big.icmp) != 4 || len(ns.reply.send) != 1 {
		t.Errorf("the batches did not do their work: %d sent, %d delivered, %d switched, %d ICMPv6, %d answers (drops %v)",
			len(out.send), len(in.deliver), len(local.local), len(big.icmp), len(ns.reply.send), r.drops.Snapshot())
	}
}

// FuzzOutbound6: any packet from the attachment of a dual-stack node is
// forwarded, answered, queued for NDP or dropped and counted; a packet
// sent is encapsulated with the EtherType of its version.
func FuzzOutbound6(f *testing.F) {
	r := hotRouter6(f)
	b := newOutBatch(1)
	f.Add(ipv6UDP(addrA6.Addr(), addrB6.Addr(), 1, 2, []byte("seed")))
	f.Add(ipv6UDP(addrA6.Addr(), netip.MustParseAddr("fd00:1::2:9"), 1, 2, []byte("unresolved")))
	f.Add(ipv6UDP(addrA6.Addr(), netip.MustParseAddr("fd00:9::9"), 1, 2, []byte("no route")))
	f.Add(ipv6UDP(addrA6.Addr(), addrB6.Addr(), 1, 2, nil, destOpts(), []byte{packet.ExtFragment, 0, 0, 8, 0, 0, 0, 1}))
	f.Add(ipv4UDP(addrA.Addr(), addrB.Addr(), 1, 2, []byte("v4"), false))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) > len(b.bufs[0])-headroom {
			return
		}
		b.reset()
		fillOut(b, pkt, 1)
		before := sum(r.drops.Snapshot()) + r.out.packets.Load() + uint64(r.pending.len())
		r.outbound(b, 1)
		after := sum(r.drops.Snapshot()) + r.out.packets.Load() + uint64(r.pending.len())
		var v packet.IP
		parsed := v.Parse(pkt)
		if after == before && len(b.send) == 0 && !parsed {
			t.Fatalf("packet %x neither forwarded nor counted", pkt)
		}
		for _, d := range b.send {
			_, fr, err := vxlan.Decap(d)
			if err != nil {
				t.Fatalf("sent %x: %v", d, err)
			}
			if fr.Type() == vxlan.EtherTypeARP || fr.Type() == vxlan.EtherTypeIPv6 && vxlan.IsNDP(fr.Payload()) {
				continue // a request or a solicitation
			}
			want := uint16(vxlan.EtherTypeIPv4)
			if pkt[0]>>4 == 6 {
				want = vxlan.EtherTypeIPv6
			}
			if fr.Type() != want {
				t.Fatalf("packet %x sent as EtherType %#x", pkt, fr.Type())
			}
		}
		for _, ic := range b.icmp {
			if v := ic[headroom] >> 4; v != pkt[0]>>4 || len(ic)-headroom > header.IPv6MinimumMTU {
				t.Fatalf("answer %x about %x", ic[headroom:], pkt)
			}
		}
	})
}

// FuzzInbound6: any datagram to a dual-stack node is delivered, answered
// or dropped and counted (NDP that only teaches aside); what is delivered
// is a whole IP packet for one of the node's addresses.
func FuzzInbound6(f *testing.F) {
	r := hotRouter6(f)
	b := newInBatch(1)
	add := func(et uint16, dst vxlan.MAC, pkt []byte) {
		buf := make([]byte, 64+len(pkt))
		copy(buf[64:], pkt)
		f.Add(vxlan.Encap(buf, 64, len(pkt), testVNI, dst, macB, et))
	}
	add(vxlan.EtherTypeIPv6, r.MAC(), ipv6UDP(addrB6.Addr(), addrA6.Addr(), 2, 1, []byte("seed")))
	add(vxlan.EtherTypeIPv6, r.MAC(), ipv6UDP(addrB6.Addr(), addrA6.Addr(), 2, 1, nil, destOpts(), destOpts()))
	add(vxlan.EtherTypeIPv4, r.MAC(), ipv4UDP(addrB.Addr(), addrA.Addr(), 2, 1, []byte("v4"), false))
	f.Add(solicit(addrB6.Addr(), addrA6.Addr(), true))
	f.Add(advert(macB, addrB6.Addr(), r.MAC()))
	f.Fuzz(func(t *testing.T, d []byte) {
		if len(d) > len(b.rbufs[0]) {
			return
		}
		b.reset()
		copy(b.rbufs[0], d)
		b.sizes[0], b.srcs[0] = len(d), vtepB
		before := sum(r.drops.Snapshot()) + r.in.packets.Load() + r.arpAnswers.Load()
		r.inbound(b, 1)
		after := sum(r.drops.Snapshot()) + r.in.packets.Load() + r.arpAnswers.Load()
		var et uint16
		if len(d) >= vxlan.EncapLen {
			et = vxlan.Ethernet(d[vxlan.HeaderLen:]).Type()
		}
		teaches := et == vxlan.EtherTypeARP || et == vxlan.EtherTypeIPv6 && vxlan.IsNDP(d[vxlan.EncapLen:])
		if after == before && !teaches {
			t.Fatalf("datagram %x neither delivered nor counted", d)
		}
		for _, p := range b.deliver {
			var v packet.IP
			if pkt := p[r.deliverOff():]; !v.Parse(pkt) || (v.DstAddr() != addrA.Addr() && v.DstAddr() != addrA6.Addr()) {
				t.Fatalf("delivered %x", pkt)
			}
		}
	})
}

// BenchmarkOutbound6 and BenchmarkInbound6 are BenchmarkOutbound and
// BenchmarkInbound for IPv6 packets (UDP, no extension headers).
func BenchmarkOutbound6(b *testing.B) {
	for _, size := range []int{64, 1400, 8972} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			r := hotRouter6(b)
			const n = 64
			out := newOutBatch(n)
			fillOut(out, ipv6UDP(addrA6.Addr(), addrB6.Addr(), 1, 2, make([]byte, size-48)), n)
			b.ReportAllocs()
			b.SetBytes(int64(size * n))
			b.ResetTimer()
			for range b.N {
				out.reset()
				r.outbound(out, n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pkt")
		})
	}
}

func BenchmarkInbound6(b *testing.B) {
	for _, size := range []int{64, 1400, 8972} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			r := hotRouter6(b)
			const n = 64
			in := newInBatch(n)
			pkt := ipv6UDP(addrB6.Addr(), addrA6.Addr(), 2, 1, make([]byte, size-48))
			for i := range n {
				buf := in.bufs[i]
				copy(buf[headroom+vxlan.EncapLen:], pkt)
				d := vxlan.Encap(buf, headroom+vxlan.EncapLen, len(pkt), testVNI, r.MAC(), macB, vxlan.EtherTypeIPv6)
				in.sizes[i], in.srcs[i] = len(d), vtepB
			}
			r.inbound(in, n)
			b.ReportAllocs()
			b.SetBytes(int64(size * n))
			b.ResetTimer()
			for range b.N {
				in.reset()
				r.inbound(in, n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pkt")
		})
	}
}

// ipv6TCP builds an IPv6/TCP segment with a valid checksum.
func ipv6TCP(src, dst netip.AddrPort, flags header.TCPFlags, seq uint32) []byte {
	pkt := make([]byte, header.IPv6MinimumSize+header.TCPMinimumSize)
	s, d := tcpip.AddrFrom16(src.Addr().As16()), tcpip.AddrFrom16(dst.Addr().As16())
	header.IPv6(pkt).Encode(&header.IPv6Fields{PayloadLength: header.TCPMinimumSize, TransportProtocol: header.TCPProtocolNumber, HopLimit: 64, SrcAddr: s, DstAddr: d})
	tcp := header.TCP(pkt[header.IPv6MinimumSize:])
	tcp.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: seq, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	tcp.SetChecksum(^tcp.CalculateChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, s, d, header.TCPMinimumSize)))
	return pkt
}

// An IPv6 VIP through the router, as TestServiceVIP and
// TestICMPErrorAboutVIPFlowIsReverseNATed for IPv4: the SYN reaches the
// IPv6 backend over the tunnel, the reply comes back from the VIP, a
// flow without a backend gets a RST from the VIP, and a packet too big
// for the path is answered with ICMPv6 from the VIP quoting the VIP.
func TestServiceVIP6(t *testing.T) {
	bal, err := lb.New(lb.Options{})
	must(t, err)
	vip := netip.MustParseAddrPort("[fd00:1::c8:1]:80")
	backend := netip.AddrPortFrom(addrB6.Addr(), 8080)
	svc := lb.Service{Name: "web", VIP: vip.Addr(), Ports: []lb.PortProto{{Port: 80, Proto: lb.TCP}, {Port: 80, Proto: lb.UDP}},
		Backends: []lb.Backend{{Addr: backend, Weight: 1}}}
	must(t, bal.Set([]lb.Service{svc}))
	p := newPair6(t, Options{Balancer: bal, PathMTU: 1400})
	client := netip.AddrPortFrom(addrA6.Addr(), 40000)
	must(t, p.devA.Inject(ipv6TCP(client, vip, header.TCPFlagSyn, 1)))
	got := header.IPv6(next(t, p.devB))
	tcp := header.TCP(got.Payload())
	if got.DestinationAddress() != tcpip.AddrFrom16(backend.Addr().As16()) || tcp.DestinationPort() != 8080 || tcp.SourcePort() != 40000 ||
		!tcp.IsChecksumValid(got.SourceAddress(), got.DestinationAddress(), 0, 0) {
		t.Fatalf("backend saw %v:%d → %v:%d", got.SourceAddress(), tcp.SourcePort(), got.DestinationAddress(), tcp.DestinationPort())
	}
	must(t, p.devB.Inject(ipv6TCP(backend, client, header.TCPFlagSyn|header.TCPFlagAck, 100)))
	reply := header.IPv6(next(t, p.devA))
	if rtcp := header.TCP(reply.Payload()); reply.SourceAddress() != tcpip.AddrFrom16(vip.Addr().As16()) || rtcp.SourcePort() != 80 {
		t.Fatalf("client saw the reply from %v:%d, want %v", reply.SourceAddress(), rtcp.SourcePort(), vip)
	}
	// Too big, over UDP to the VIP: ICMPv6 from and quoting the VIP.
	must(t, p.devA.Inject(ipv6UDP(client.Addr(), vip.Addr(), 40001, 80, make([]byte, 1400))))
	icmp := header.IPv6(next(t, p.devA))
	ic := header.ICMPv6(icmp.Payload())
	quoted := header.IPv6(ic.Payload())
	if icmp.TransportProtocol() != header.ICMPv6ProtocolNumber || ic.Type() != header.ICMPv6PacketTooBig || ic.MTU() != 1400 ||
		icmp.SourceAddress() != tcpip.AddrFrom16(vip.Addr().As16()) || quoted.DestinationAddress() != tcpip.AddrFrom16(vip.Addr().As16()) ||
		ic.Checksum() != header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: ic, Src: icmp.SourceAddress(), Dst: icmp.DestinationAddress()}) {
		t.Errorf("too big: %v → %v type %d mtu %d quoting a packet to %v", icmp.SourceAddress(), icmp.DestinationAddress(), ic.Type(), ic.MTU(), quoted.DestinationAddress())
	}
	svc.Backends = nil
	must(t, bal.Set([]lb.Service{svc}))
	must(t, p.devA.Inject(ipv6TCP(client, vip, header.TCPFlagAck, 2)))
	rst := header.IPv6(next(t, p.devA))
	if rst.TransportProtocol() != header.TCPProtocolNumber || header.TCP(rst.Payload()).Flags()&header.TCPFlagRst == 0 ||
		rst.SourceAddress() != tcpip.AddrFrom16(vip.Addr().As16()) {
		t.Fatalf("after the backend left the client got %x, want a RST from the VIP", []byte(rst))
	}
}

// The route table holds both families side by side: IPv6 prefixes match
// only IPv6 destinations (a default route of one family is not the
// other's), longest first, over IPv4 and IPv6 VTEPs, and owns speaks for
// IPv6 addresses as for IPv4 ones.
func TestTableLookup6(t *testing.T) {
	v := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	tab, err := buildTable([]Route{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), VTEP: v("192.0.2.1:4789")},
		{Prefix: netip.MustParsePrefix("fd00::/16"), VTEP: v("192.0.2.2:4789")},
		{Prefix: netip.MustParsePrefix("fd00:1::/64"), VTEP: v("[2001:db8::3]:4789")},
		{Prefix: netip.MustParsePrefix("fd00:1::5/128"), VTEP: v("[2001:db8::4]:4789")},
		{Prefix: netip.MustParsePrefix("::/0"), VTEP: v("[2001:db8::5]:4789")},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ dst, want string }{
		{"fd00:1::5", "[2001:db8::4]:4789"},
		{"fd00:1::6", "[2001:db8::3]:4789"},
		{"fd00:2::1", "192.0.2.2:4789"},
		{"2001:db8:ffff::1", "[2001:db8::5]:4789"},
		{"10.9.9.9", "192.0.2.1:4789"},
	} {
		r, ok := tab.lookup(netip.MustParseAddr(tt.dst))
		if !ok || r.VTEP.String() != tt.want {
			t.Errorf("lookup(%s) = %v, %v; want %s", tt.dst, r, ok, tt.want)
		}
	}
	if !tab.owns(netip.MustParseAddr("fd00:1::5"), v("[2001:db8::4]:4789")) || tab.owns(netip.MustParseAddr("fd00:1::5"), v("[2001:db8::3]:4789")) ||
		!tab.owns(netip.MustParseAddr("fd00:1::6"), v("[2001:db8::3]:40000")) {
		t.Error("owns is wrong for IPv6 addresses")
	}
	if !tab.isPeer(v("[2001:db8::4]:1")) || tab.isPeer(v("[2001:db8::9]:4789")) {
		t.Error("isPeer is wrong for IPv6 VTEPs")
	}
	only4, _ := buildTable([]Route{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), VTEP: v("192.0.2.1:4789")}}, nil)
	if r, ok := only4.lookup(netip.MustParseAddr("fd00::1")); ok {
		t.Errorf("an IPv4 default route took an IPv6 destination: %v", r)
	}
}
