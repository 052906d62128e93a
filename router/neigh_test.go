package router

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/stack/stacktest"
	"github.com/overlayd/overlayd/udp/udptest"
	"github.com/overlayd/overlayd/vxlan"
)

const churnN = 10000 // distinct neighbours (L3) or MACs (L2) in the churn benchmark

var (
	vtepC      = netip.MustParseAddrPort("192.0.2.3:4789")
	churnRoute = netip.MustParsePrefix("10.1.64.0/18") // churnN addresses behind B
)

// churnAddr is the i-th neighbour of the churn benchmark, behind B.
func churnAddr(i int) netip.Addr {
	a := churnRoute.Addr().As4()
	binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(a[:])+uint32(i))
	return netip.AddrFrom4(a)
}

// churnMAC is the MAC of neighbour i in generation gen (a neighbour that
// came back with a new MAC is the next generation).
func churnMAC(i, gen int) vxlan.MAC {
	return vxlan.MAC{2, byte(gen), 0, byte(i >> 16), byte(i >> 8), byte(i)}
}

// churnRouter is a router that is not started, attached at layer with
// churnRoute behind B and 10.1.3.0/24 behind C.
func churnRouter(tb testing.TB, layer stack.Layer) *Router {
	tb.Helper()
	r, err := New(stacktest.New(stacktest.Options{Layer: layer}), udptest.NewNetwork().Conn(vtepA), Options{
		Networks: []Network{{VNI: testVNI, Addr: addrA}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.SetRoutes([]Route{
		{Prefix: churnRoute, VTEP: vtepB, VNI: testVNI},
		{Prefix: netip.MustParsePrefix("10.1.3.0/24"), VTEP: vtepC, VNI: testVNI},
	}, nil); err != nil {
		tb.Fatal(err)
	}
	return r
}

// churnDatagrams returns, for each of the churnN neighbours, the datagram
// from src that teaches it: at L3 an IPv4 packet from churnAddr(i) with
// churnMAC(i, gen) as the Ethernet source, at L2 a frame from
// churnMAC(i, gen).
func churnDatagrams(r *Router, layer stack.Layer, gen int) [][]byte {
	out := make([][]byte, churnN)
	for i := range out {
		var d []byte
		if layer == stack.L2 {
			d = make([]byte, vxlan.HeaderLen+60)
			vxlan.Header(d).Encode(testVNI)
			vxlan.Ethernet(d[vxlan.HeaderLen:]).Encode(vxlan.MAC{2, 1, 1, 1, 1, 1}, churnMAC(i, gen), vxlan.EtherTypeIPv4)
		} else {
			pkt := ipv4UDP(churnAddr(i), addrA.Addr(), 2, 1, make([]byte, 8), false)
			buf := make([]byte, vxlan.EncapLen+len(pkt))
			copy(buf[vxlan.EncapLen:], pkt)
			d = vxlan.Encap(buf, vxlan.EncapLen, len(pkt), testVNI, r.MAC(), churnMAC(i, gen), vxlan.EtherTypeIPv4)
		}
		out[i] = d
	}
	return out
}

// churnFeed runs learns [from, to) of the datagram list ds (index modulo
// len(ds)) from src through inbound, in batches of up to 64.
func churnFeed(r *Router, b *inBatch, ds [][]byte, src netip.AddrPort, from, to int) {
	for from < to {
		n := min(to-from, len(b.bufs))
		for j := range n {
			d := ds[(from+j)%len(ds)]
			copy(b.rbufs[j], d)
			b.sizes[j], b.srcs[j] = len(d), src
		}
		b.deliver = b.deliver[:0]
		b.reply.reset()
		r.inbound(b, n)
		from += n
	}
}

// BenchmarkNeighborChurn learns churnN distinct neighbours on the inbound
// path, one op per learn: IP→MAC at L3 (tun), MAC→VTEP at L2 (tap).
//   - new: into an empty table, which is started afresh every churnN
//     learns (so it holds 0 to churnN entries, half on average);
//   - replace: each of churnN known entries changes (a new MAC for an IP,
//     a MAC that moved to another VTEP), round after round;
//   - refresh: each of churnN known entries is seen again unchanged, the
//     steady state, which must allocate nothing.
func BenchmarkNeighborChurn(b *testing.B) {
	for _, layer := range []stack.Layer{stack.L3, stack.L2} {
		name := "tun"
		if layer == stack.L2 {
			name = "tap"
		}
		// At L3 the MAC changes behind B; at L2 the MAC moves from B to C.
		srcs := [2]netip.AddrPort{vtepB, vtepB}
		if layer == stack.L2 {
			srcs[1] = vtepC
		}
		gens := [2]int{0, 0}
		if layer == stack.L3 {
			gens[1] = 1
		}
		b.Run(name+"/new", func(b *testing.B) {
			r := churnRouter(b, layer)
			ds := churnDatagrams(r, layer, 0)
			in := newInBatch(64)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(b.N-done, churnN)
				churnFeed(r, in, ds, vtepB, 0, n)
				done += n
				if done < b.N {
					b.StopTimer()
					r = churnRouter(b, layer)
					b.StartTimer()
				}
			}
			b.StopTimer()
			if got := r.Stats(); got.Neighbors+got.FDB != min(b.N, churnN) {
				b.Fatalf("learned %d neighbours and %d MACs, want %d", got.Neighbors, got.FDB, min(b.N, churnN))
			}
		})
		b.Run(name+"/replace", func(b *testing.B) {
			r := churnRouter(b, layer)
			ds := [2][][]byte{churnDatagrams(r, layer, gens[0]), churnDatagrams(r, layer, gens[1])}
			in := newInBatch(64)
			churnFeed(r, in, ds[0], srcs[0], 0, churnN)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				// Round k teaches generation k+1 (mod 2): every learn
				// changes an entry.
				round := 1 + done/churnN
				n := min(b.N-done, churnN)
				churnFeed(r, in, ds[round%2], srcs[round%2], 0, n)
				done += n
			}
			b.StopTimer()
			if got := r.Stats(); got.Neighbors+got.FDB != churnN || len(got.Drops) != 0 {
				b.Fatalf("stats %+v, want %d entries and no drops", got, churnN)
			}
		})
		b.Run(name+"/refresh", func(b *testing.B) {
			r := churnRouter(b, layer)
			ds := churnDatagrams(r, layer, 0)
			in := newInBatch(64)
			churnFeed(r, in, ds, vtepB, 0, churnN)
			b.ReportAllocs()
			b.ResetTimer()
			churnFeed(r, in, ds, vtepB, 0, b.N)
			b.StopTimer()
			if got := r.Stats(); got.Neighbors+got.FDB != churnN || len(got.Drops) != 0 {
				b.Fatalf("stats %+v, want %d entries and no drops", got, churnN)
			}
		})
	}
}
