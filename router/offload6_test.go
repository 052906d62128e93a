package router

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/vxlan"
)

// partialTCP6 is partialTCP over IPv6: a TCP segment of 1000 bytes of
// payload, its checksum field the pseudo-header sum.
func partialTCP6(src, dst netip.AddrPort) []byte {
	pkt := ipv6TCP(src, dst, header.TCPFlagAck, 1)
	pkt = append(pkt, make([]byte, 1000)...)
	for i := range 1000 {
		pkt[60+i] = byte(i)
	}
	header.IPv6(pkt).SetPayloadLength(uint16(len(pkt) - 40))
	binary.BigEndian.PutUint16(pkt[56:], stack.PseudoSum(pkt, len(pkt)-40))
	return pkt
}

// complete6 reports whether the IPv6 TCP segment pkt's checksum is
// complete.
func complete6(pkt []byte) bool {
	return checksumAll(pkt[40:], stack.PseudoSum(pkt, len(pkt)-40)) == 0xffff
}

// fillIn6 is fillIn for IPv6 packets.
func fillIn6(r *Router, b *inBatch, pkt []byte, n int) {
	for i := range n {
		buf := b.bufs[i]
		copy(buf[headroom+vxlan.EncapLen:], pkt)
		d := vxlan.Encap(buf, headroom+vxlan.EncapLen, len(pkt), testVNI, r.MAC(), macB, vxlan.EtherTypeIPv6)
		b.sizes[i] = len(d)
		b.srcs[i] = vtepB
	}
}

// A partial IPv6 segment goes as an IPv4 one does: to a VTEP that said
// it takes them flagged and untouched, else complete and unflagged (a
// kernel vxlan device's RFC 7348 packet).
func TestOutboundPartial6(t *testing.T) {
	r := hotRouter6(t)
	pkt := partialTCP6(netip.AddrPortFrom(addrA6.Addr(), 40000), netip.AddrPortFrom(addrB6.Addr(), 5201))
	for _, capable := range []bool{false, true} {
		r.caps.set(vtepB, capable)
		b := newOutBatch(4)
		fillOut(b, pkt, 4)
		for i := range 4 {
			b.partial[i] = true
		}
		b.reset()
		r.outbound(b, 4)
		if len(b.send) != 4 {
			t.Fatalf("capable %v: sent %d datagrams, want 4 (drops %v)", capable, len(b.send), r.drops.Snapshot())
		}
		for i, d := range b.send {
			if got := vxlan.Header(d).Partial(); got != capable {
				t.Errorf("capable %v: datagram %d flagged partial %v", capable, i, got)
			}
			if valid := complete6(d[vxlan.EncapLen:]); valid == capable {
				t.Errorf("capable %v: datagram %d: inner checksum complete = %v", capable, i, valid)
			}
		}
	}
	b := newOutBatch(64)
	fillOut(b, pkt, 64)
	for i := range 64 {
		b.partial[i] = true
	}
	if allocs := testing.AllocsPerRun(100, func() { b.reset(); r.outbound(b, 64) }); allocs != 0 {
		t.Errorf("partial IPv6 outbound: %v allocs per batch, want 0", allocs)
	}
}

// fakePartialWriter6 is a fakePartialWriter that takes IPv6 segments.
type fakePartialWriter6 struct{ fakePartialWriter }

func (*fakePartialWriter6) WritesPartial6() bool { return true }

// A flagged IPv6 datagram's segment reaches a device that takes partial
// IPv6 segments as one, and any other device (a PartialWriter of IPv4's
// alone, as the Netstack, or none) complete; a flagged datagram that
// holds no IPv6 TCP segment right after the fixed header is dropped as
// malformed.
func TestInboundPartial6(t *testing.T) {
	r := hotRouter6(t)
	pkt := partialTCP6(netip.AddrPortFrom(addrB6.Addr(), 5201), netip.AddrPortFrom(addrA6.Addr(), 40000))
	for _, tc := range []struct {
		name    string
		pw      stack.PartialWriter
		partial bool
	}{
		{"no writer", nil, false},
		{"IPv4 writer", &fakePartialWriter{}, false},
		{"IPv6 writer", &fakePartialWriter6{}, true},
	} {
		b := newInBatch(4)
		b.pw = tc.pw
		_, b.pw6 = tc.pw.(stack.PartialWriter6)
		fillIn6(r, b, pkt, 4)
		for i := range 4 {
			vxlan.Header(b.rbufs[i]).SetPartial()
		}
		r.inbound(b, 4)
		if len(b.deliver) != 4 {
			t.Fatalf("%s: delivered %d, want 4 (drops %v)", tc.name, len(b.deliver), r.drops.Snapshot())
		}
		if b.anyPartial != tc.partial {
			t.Errorf("%s: batch partial %v, want %v", tc.name, b.anyPartial, tc.partial)
		}
		for i, d := range b.deliver {
			complete := complete6(d[headroom+vxlan.EncapLen:])
			if b.anyPartial && b.partial[i] != tc.partial || complete == tc.partial {
				t.Errorf("%s: packet %d partial %v, checksum complete %v", tc.name, i, b.anyPartial && b.partial[i], complete)
			}
		}
	}
	udp := ipv6UDP(addrB6.Addr(), addrA6.Addr(), 1, 2, make([]byte, 100))
	ext := ipv6UDP(addrB6.Addr(), addrA6.Addr(), 1, 2, make([]byte, 100), destOpts())
	ext[40] = 6 // TCP behind a destination options header
	for name, inner := range map[string][]byte{"UDP": udp, "TCP behind an extension header": ext} {
		b := newInBatch(1)
		b.pw, b.pw6 = &fakePartialWriter6{}, true
		fillIn6(r, b, inner, 1)
		vxlan.Header(b.rbufs[0]).SetPartial()
		before := r.drops.Load(DropMalformed)
		r.inbound(b, 1)
		if len(b.deliver) != 0 || r.drops.Load(DropMalformed) != before+1 {
			t.Errorf("a flagged IPv6 %s packet: delivered %d, malformed drops %d → %d; want dropped", name, len(b.deliver), before, r.drops.Load(DropMalformed))
		}
	}
	// The partial inbound path allocates nothing.
	b := newInBatch(64)
	b.pw, b.pw6 = &fakePartialWriter6{}, true
	if allocs := testing.AllocsPerRun(100, func() {
		fillIn6(r, b, pkt, 64)
		for i := range 64 {
			vxlan.Header(b.rbufs[i]).SetPartial()
		}
		b.reset()
		r.inbound(b, 64)
	}); allocs != 0 || len(b.deliver) != 64 {
		t.Errorf("partial IPv6 inbound: %v allocs per batch (%d delivered), want 0", allocs, len(b.deliver))
	}
}

// lb's NAT of a partial IPv6 segment leaves a checksum that completes
// right.
func TestPartialThroughNAT6(t *testing.T) {
	bal, err := lb.New(lb.Options{})
	must(t, err)
	vip := netip.MustParseAddrPort("[fd00:1::c8:1]:80")
	backend := netip.AddrPortFrom(addrB6.Addr(), 8080)
	must(t, bal.Set([]lb.Service{{Name: "web", VIP: vip.Addr(), Ports: []lb.PortProto{{Port: 80, Proto: lb.TCP}},
		Backends: []lb.Backend{{Addr: backend, Weight: 1}}}}))
	r := hotRouter6(t)
	r.lb = bal
	r.caps.set(vtepB, true)
	syn := partialTCP6(netip.AddrPortFrom(addrA6.Addr(), 40000), vip)
	syn[53] = byte(header.TCPFlagSyn)
	b := newOutBatch(1)
	fillOut(b, syn, 1)
	b.partial[0] = true
	b.reset()
	r.outbound(b, 1)
	if len(b.send) != 1 || !vxlan.Header(b.send[0]).Partial() {
		t.Fatalf("sent %d datagrams, want 1, flagged partial (drops %v)", len(b.send), r.drops.Snapshot())
	}
	inner := append([]byte(nil), b.send[0][vxlan.EncapLen:]...)
	if got := netip.AddrFrom16([16]byte(inner[24:40])); got != backend.Addr() {
		t.Fatalf("DNATed to %v, want %v", got, backend.Addr())
	}
	stack.CompleteChecksum(inner)
	if !complete6(inner) {
		t.Error("the DNATed partial IPv6 segment's checksum is wrong once completed")
	}
	// The backend's partial reply comes back from the VIP, its checksum
	// still right once completed.
	reply := partialTCP6(backend, netip.AddrPortFrom(addrA6.Addr(), 40000))
	reply[53] = byte(header.TCPFlagSyn | header.TCPFlagAck)
	in := newInBatch(1)
	in.pw, in.pw6 = &fakePartialWriter6{}, true
	fillIn6(r, in, reply, 1)
	vxlan.Header(in.rbufs[0]).SetPartial()
	r.inbound(in, 1)
	if len(in.deliver) != 1 || !in.anyPartial || !in.partial[0] {
		t.Fatalf("reply: delivered %d (partial %v), want 1 partial (drops %v)", len(in.deliver), in.anyPartial, r.drops.Snapshot())
	}
	got := append([]byte(nil), in.deliver[0][headroom+vxlan.EncapLen:]...)
	if src := netip.AddrFrom16([16]byte(got[8:24])); src != vip.Addr() || binary.BigEndian.Uint16(got[40:]) != vip.Port() {
		t.Fatalf("reply from %v port %d, want %v", src, binary.BigEndian.Uint16(got[40:]), vip)
	}
	stack.CompleteChecksum(got)
	if !complete6(got) {
		t.Error("the reverse-NATed partial IPv6 reply's checksum is wrong once completed")
	}
}

// FuzzInboundPartial6 feeds flagged datagrams to a router whose device
// takes partial IPv6 segments: each is delivered or counted, and what is
// delivered partial is an IPv6 TCP segment to the node.
func FuzzInboundPartial6(f *testing.F) {
	r := hotRouter6(f)
	b := newInBatch(1)
	b.pw, b.pw6 = &fakePartialWriter6{}, true
	for _, pkt := range [][]byte{
		partialTCP6(netip.AddrPortFrom(addrB6.Addr(), 5201), netip.AddrPortFrom(addrA6.Addr(), 40000)),
		ipv6UDP(addrB6.Addr(), addrA6.Addr(), 2, 1, []byte("seed")),
		partialTCP(netip.AddrPortFrom(addrB.Addr(), 5201), netip.AddrPortFrom(addrA.Addr(), 40000)),
	} {
		buf := make([]byte, 64+len(pkt))
		copy(buf[64:], pkt)
		et := uint16(vxlan.EtherTypeIPv6)
		if pkt[0]>>4 == 4 {
			et = vxlan.EtherTypeIPv4
		}
		d := vxlan.Encap(buf, 64, len(pkt), testVNI, r.MAC(), macB, et)
		vxlan.Header(d).SetPartial()
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		if len(d) < vxlan.HeaderLen || len(d) > len(b.rbufs[0]) {
			return
		}
		b.reset()
		copy(b.rbufs[0], d)
		vxlan.Header(b.rbufs[0]).SetPartial()
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
		for i, p := range b.deliver {
			pkt := p[r.deliverOff():]
			if b.anyPartial && b.partial[i] && !stack.IsPartialTCP(pkt) {
				t.Fatalf("delivered partial, yet no TCP segment to finish: %x", pkt)
			}
		}
	})
}
