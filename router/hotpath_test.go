package router

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/overlayd/overlayd/stack/stacktest"
	"github.com/overlayd/overlayd/udp/udptest"
	"github.com/overlayd/overlayd/vxlan"

	"github.com/overlayd/overlayd/packet"
)

var macB = vxlan.MAC{2, 0xbb, 0, 0, 0, 2}

// hotRouter is a router that is not started, with B's route and MAC
// known, for driving outbound and inbound by hand.
func hotRouter(tb testing.TB) *Router {
	tb.Helper()
	r, err := New(stacktest.NewPipe(), udptest.NewNetwork().Conn(vtepA), Options{
		Networks: []Network{{VNI: testVNI, Addrs: []netip.Prefix{addrA}}},
		PathMTU:  9000,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.SetRoutes([]Route{{Prefix: netip.MustParsePrefix("10.1.2.0/24"), VTEP: vtepB, VNI: testVNI}}, nil); err != nil {
		tb.Fatal(err)
	}
	r.neigh.set(neighKey{vni: testVNI, ip: addrB.Addr()}, macB)
	return r
}

// fillOut puts n copies of pkt in an outbound batch.
func fillOut(b *outBatch, pkt []byte, n int) {
	for i := range n {
		copy(b.bufs[i][headroom:], pkt)
		b.sizes[i] = len(pkt)
	}
}

// fillIn puts n VXLAN datagrams from B carrying pkt in an inbound batch.
func fillIn(r *Router, b *inBatch, pkt []byte, n int) {
	for i := range n {
		buf := b.bufs[i]
		copy(buf[headroom+vxlan.EncapLen:], pkt)
		d := vxlan.Encap(buf, headroom+vxlan.EncapLen, len(pkt), testVNI, r.MAC(), macB, vxlan.EtherTypeIPv4)
		b.sizes[i] = len(d)
		b.srcs[i] = vtepB
	}
}

// The per-packet paths allocate nothing in steady state.
func TestHotPathAllocatesNothing(t *testing.T) {
	r := hotRouter(t)
	const n = 64
	out := newOutBatch(n)
	fillOut(out, ipv4UDP(addrA.Addr(), addrB.Addr(), 1, 2, make([]byte, 1400), false), n)
	if allocs := testing.AllocsPerRun(100, func() {
		out.reset()
		r.outbound(out, n)
	}); allocs != 0 || len(out.send) != n {
		t.Errorf("outbound: %v allocs per batch of %d (sent %d), want 0", allocs, n, len(out.send))
	}
	in := newInBatch(n)
	fillIn(r, in, ipv4UDP(addrB.Addr(), addrA.Addr(), 2, 1, make([]byte, 1400), false), n)
	r.inbound(in, n) // learns B once
	if allocs := testing.AllocsPerRun(100, func() {
		in.reset()
		r.inbound(in, n)
	}); allocs != 0 || len(in.deliver) != n {
		t.Errorf("inbound: %v allocs per batch of %d (delivered %d), want 0", allocs, n, len(in.deliver))
	}
	if d := r.drops.Snapshot(); len(d) != 0 {
		t.Errorf("drops %v", d)
	}
}

// FuzzInbound: any datagram from a peer is delivered, answered or dropped
// and counted; never a panic, and a delivered packet is a whole IPv4
// packet for this node.
func FuzzInbound(f *testing.F) {
	r := hotRouter(f)
	b := newInBatch(1)
	fillIn(r, b, ipv4UDP(addrB.Addr(), addrA.Addr(), 2, 1, []byte("seed"), false), 1)
	f.Add(append([]byte(nil), b.rbufs[0][:b.sizes[0]]...))
	arp := make([]byte, 64+vxlan.ARPLen)
	vxlan.ARP(arp[64:]).EncodeRequest(macB, addrB.Addr(), addrA.Addr())
	f.Add(vxlan.Encap(arp, 64, vxlan.ARPLen, testVNI, vxlan.Broadcast, macB, vxlan.EtherTypeARP))
	f.Add([]byte{8, 0, 0, 0, 0, 0, 42, 0})
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
		// ARP and NDP messages that only teach (a request or a
		// solicitation for another address) change no counter.
		arpOnly := len(d) >= vxlan.EncapLen && vxlan.Ethernet(d[vxlan.HeaderLen:]).Type() == vxlan.EtherTypeARP
		ndpOnly := len(d) >= vxlan.EncapLen && vxlan.Ethernet(d[vxlan.HeaderLen:]).Type() == vxlan.EtherTypeIPv6 && vxlan.IsNDP(d[vxlan.EncapLen:])
		if after == before && !arpOnly && !ndpOnly {
			t.Fatalf("datagram %x neither delivered nor counted", d)
		}
		for _, p := range b.deliver {
			pkt := p[r.deliverOff():]
			var v packet.IP
			if !v.Parse(pkt) || v.DstAddr() != addrA.Addr() {
				t.Fatalf("delivered %x", pkt)
			}
		}
	})
}

// FuzzOutbound: any packet from the attachment is forwarded, answered or
// dropped and counted; never a panic.
func FuzzOutbound(f *testing.F) {
	r := hotRouter(f)
	b := newOutBatch(1)
	f.Add(ipv4UDP(addrA.Addr(), addrB.Addr(), 1, 2, []byte("seed"), false))
	f.Add(ipv4UDP(addrA.Addr(), netip.MustParseAddr("10.9.9.9"), 1, 2, []byte("seed"), true))
	f.Add([]byte{0x60, 0, 0, 0})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) > len(b.bufs[0])-headroom {
			return
		}
		b.reset()
		copy(b.bufs[0][headroom:], pkt)
		b.sizes[0] = len(pkt)
		before := sum(r.drops.Snapshot()) + r.out.packets.Load() + uint64(r.pending.len())
		r.outbound(b, 1)
		after := sum(r.drops.Snapshot()) + r.out.packets.Load() + uint64(r.pending.len())
		if after == before && len(b.send) == 0 {
			// A packet queued behind an existing ARP request is the one
			// case that changes no counter.
			var v packet.IP
			if !v.Parse(pkt) {
				t.Fatalf("packet %x neither forwarded nor counted", pkt)
			}
		}
	})
}

func sum(m map[string]uint64) (n uint64) {
	for _, v := range m {
		n += v
	}
	return n
}

// BenchmarkOutbound is the router's per-packet outbound decision: route
// lookup, neighbour lookup, flow hash and encapsulation, for a batch of 64.
func BenchmarkOutbound(b *testing.B) {
	for _, size := range []int{64, 1400, 8972} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			r := hotRouter(b)
			const n = 64
			out := newOutBatch(n)
			fillOut(out, ipv4UDP(addrA.Addr(), addrB.Addr(), 1, 2, make([]byte, size-28), false), n)
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

// BenchmarkInbound is the per-packet inbound decision: peer check, decap,
// VNI and address checks, learning, for a batch of 64.
func BenchmarkInbound(b *testing.B) {
	for _, size := range []int{64, 1400, 8972} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			r := hotRouter(b)
			const n = 64
			in := newInBatch(n)
			fillIn(r, in, ipv4UDP(addrB.Addr(), addrA.Addr(), 2, 1, make([]byte, size-28), false), n)
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

// The underlay's kernel drops (a full socket buffer) show in the router's
// drops, beside its own, as kernel_rcvbuf.
func TestStatsReportKernelDrops(t *testing.T) {
	nw := udptest.NewNetwork()
	nw.QueueLen = 4
	ul := nw.Conn(vtepA)
	defer ul.Close()
	r, err := New(stacktest.NewPipe(), ul, Options{Networks: []Network{{VNI: testVNI, Addrs: []netip.Prefix{addrA}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Stats().Drops["kernel_rcvbuf"]; ok {
		t.Fatal("kernel_rcvbuf before any drop")
	}
	peer := nw.Conn(vtepB)
	defer peer.Close()
	for range 10 { // nobody reads: 4 queued, 6 dropped
		peer.WriteBatch([][]byte{make([]byte, 100)}, []netip.AddrPort{vtepA}, nil)
	}
	if got := r.Stats().Drops[DropKernelRcvbuf.String()]; got != 6 {
		t.Errorf("Stats().Drops[kernel_rcvbuf] = %d, want 6", got)
	}
}
