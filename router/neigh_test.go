package router

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"slices"
	"sync"
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

// churnIndex is the i of churnAddr(i).
func churnIndex(a netip.Addr) int {
	b, base := a.As4(), churnRoute.Addr().As4()
	return int(binary.BigEndian.Uint32(b[:]) - binary.BigEndian.Uint32(base[:]))
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
		Networks: []Network{{VNI: testVNI, Addrs: []netip.Prefix{addrA}}},
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
		b.reset()
		r.inbound(b, n)
		from += n
	}
}

// churnBytes returns the bytes allocated per learn by learns [from, to)
// of ds from src.
func churnBytes(r *Router, b *inBatch, ds [][]byte, src netip.AddrPort, from, to int) float64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	churnFeed(r, b, ds, src, from, to)
	runtime.ReadMemStats(&after)
	return float64(after.TotalAlloc-before.TotalAlloc) / float64(to-from)
}

// Changing one learned entry costs about as much in a table of 10,000 as
// in one of 1,000: a copy of its shard's few entries (it was a copy of the
// whole table, ten times as much: 0.8 MB against 0.1 MB).
func TestLearnCostIndependentOfTableSize(t *testing.T) {
	for _, layer := range []stack.Layer{stack.L3, stack.L2} {
		r := churnRouter(t, layer)
		// Generation 1 is a new MAC behind B (L3) or the MAC moved to C (L2).
		ds0, ds1 := churnDatagrams(r, layer, 0), churnDatagrams(r, layer, 1)
		src1 := vtepB
		if layer == stack.L2 {
			ds1, src1 = ds0, vtepC
		}
		in := newInBatch(64)
		const small = churnN / 10
		churnFeed(r, in, ds0, vtepB, 0, small)
		perSmall := churnBytes(r, in, ds1, src1, 0, small)
		churnFeed(r, in, ds0, vtepB, small, churnN)
		perLarge := churnBytes(r, in, ds0, vtepB, 0, small) // back to generation 0
		if got := r.Stats(); got.Neighbors+got.FDB != churnN || len(got.Drops) != 0 {
			t.Fatalf("layer %v: stats %+v, want %d entries and no drops", layer, got, churnN)
		}
		t.Logf("layer %v: %.0f bytes per changed entry in a table of %d, %.0f in one of %d", layer, perSmall, small, perLarge, churnN)
		if perLarge > 2*perSmall+256 {
			t.Errorf("layer %v: a change costs %.0f bytes in a table of %d, %.0f in one of %d: it grows with the table", layer, perLarge, churnN, perSmall, small)
		}
	}
}

// The learned tables hold at most MaxNeighbors entries: a new entry beyond
// is dropped as queue_full, a known one still changes, and every entry
// kept reads back.
func TestNeighborTableLimit(t *testing.T) {
	const max = 100
	for _, layer := range []stack.Layer{stack.L3, stack.L2} {
		r, err := New(stacktest.New(stacktest.Options{Layer: layer}), udptest.NewNetwork().Conn(vtepA), Options{
			Networks:     []Network{{VNI: testVNI, Addrs: []netip.Prefix{addrA}}},
			MaxNeighbors: max,
		})
		must(t, err)
		must(t, r.SetRoutes([]Route{{Prefix: churnRoute, VTEP: vtepB, VNI: testVNI}}, nil))
		in := newInBatch(64)
		churnFeed(r, in, churnDatagrams(r, layer, 0), vtepB, 0, max+50)
		st := r.Stats()
		if st.Neighbors+st.FDB != max || st.Drops[DropQueueFull.String()] != 50 {
			t.Errorf("layer %v: %d neighbours, %d MACs, drops %v; want %d entries and 50 queue_full", layer, st.Neighbors, st.FDB, st.Drops, max)
		}
		if layer == stack.L2 {
			for i := range max {
				if v, ok := r.fdb.get(macKey{vni: testVNI, mac: churnMAC(i, 0)}); !ok || v != vtepB {
					t.Fatalf("MAC %d: %v %v, want %v", i, v, ok, vtepB)
				}
			}
			continue
		}
		churnFeed(r, in, churnDatagrams(r, layer, 1), vtepB, 0, 1) // a known one changes
		nb := r.Neighbors()
		if len(nb) != max {
			t.Fatalf("Neighbors() has %d entries, want %d", len(nb), max)
		}
		for i := range max {
			want := churnMAC(i, 0)
			if i == 0 {
				want = churnMAC(i, 1)
			}
			if got := nb[churnAddr(i)]; got != want {
				t.Errorf("neighbour %v = %v, want %v", churnAddr(i), got, want)
			}
		}
	}
}

// Readers never lock and see each entry whole while a writer churns it
// (run with -race).
func TestShardedMapConcurrent(t *testing.T) {
	m := newShardedMap[neighKey, vxlan.MAC](churnN)
	const keys = 1000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := range keys {
					v, ok := m.get(neighKey{vni: testVNI, ip: churnAddr(i)})
					if ok && v != churnMAC(i, 0) && v != churnMAC(i, 1) {
						t.Errorf("key %d read %v", i, v)
						return
					}
				}
			}
		}()
	}
	for gen := range 20 {
		for i := range keys {
			if !m.set(neighKey{vni: testVNI, ip: churnAddr(i)}, churnMAC(i, gen%2)) {
				t.Fatalf("set %d refused", i)
			}
		}
	}
	close(stop)
	wg.Wait()
	n := 0
	for k, v := range m.all() {
		if v != churnMAC(churnIndex(k.ip), 1) {
			t.Errorf("%v = %v", k.ip, v)
		}
		n++
	}
	if n != keys || m.len() != keys {
		t.Errorf("all() yields %d entries, len() %d, want %d", n, m.len(), keys)
	}
}

// Lookups (hit or miss) and writes that change nothing allocate nothing,
// in both tables.
func TestShardedMapAllocatesNothing(t *testing.T) {
	nb := newShardedMap[neighKey, vxlan.MAC](65536)
	fdb := newShardedMap[macKey, netip.AddrPort](65536)
	for i := range churnN {
		nb.set(neighKey{vni: testVNI, ip: churnAddr(i)}, churnMAC(i, 0))
		fdb.set(macKey{vni: testVNI, mac: churnMAC(i, 0)}, vtepB)
	}
	i := 0
	if allocs := testing.AllocsPerRun(1000, func() {
		i = (i + 1) % churnN
		k := neighKey{vni: testVNI, ip: churnAddr(i)}
		if v, ok := nb.get(k); !ok || v != churnMAC(i, 0) || !nb.set(k, v) {
			t.Fatalf("neighbour %d = %v %v", i, v, ok)
		}
		if _, ok := nb.get(neighKey{vni: testVNI + 1, ip: churnAddr(i)}); ok {
			t.Fatal("found on another VNI")
		}
		m := macKey{vni: testVNI, mac: churnMAC(i, 0)}
		if v, ok := fdb.get(m); !ok || v != vtepB || !fdb.set(m, v) {
			t.Fatalf("MAC %d = %v %v", i, v, ok)
		}
	}); allocs != 0 {
		t.Errorf("%v allocs per lookup and unchanged write, want 0", allocs)
	}
}

// Neighbours with consecutive addresses and MACs, as real ones have,
// spread over the shards: none gets more than a few of 10,000.
func TestShardedMapSpreads(t *testing.T) {
	nb := newShardedMap[neighKey, vxlan.MAC](65536)
	fdb := newShardedMap[macKey, netip.AddrPort](65536)
	for i := range churnN {
		nb.set(neighKey{vni: testVNI, ip: churnAddr(i)}, churnMAC(i, 0))
		fdb.set(macKey{vni: testVNI, mac: churnMAC(i, 0)}, vtepB)
	}
	for name, lens := range map[string][]int{"neighbour": shardLens(nb), "fdb": shardLens(fdb)} {
		// 10,000 over 4,096 shards: 2.4 on average; more than 24 in
		// one is a broken hash, not bad luck.
		if got := slices.Max(lens); got > 24 {
			t.Errorf("%s table: a shard holds %d of %d entries over %d shards", name, got, churnN, len(lens))
		}
	}
}

func shardLens[K shardKey, V comparable](m *shardedMap[K, V]) []int {
	lens := make([]int, len(m.shards))
	for i := range m.shards {
		if p := m.shards[i].Load(); p != nil {
			lens[i] = len(*p)
		}
	}
	return lens
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
			var n int // learns into the last table
			for done := 0; done < b.N; done += n {
				if done > 0 {
					b.StopTimer()
					r = churnRouter(b, layer)
					b.StartTimer()
				}
				n = min(b.N-done, churnN)
				churnFeed(r, in, ds, vtepB, 0, n)
			}
			b.StopTimer()
			if got := r.Stats(); got.Neighbors+got.FDB != n || len(got.Drops) != 0 {
				b.Fatalf("stats %+v, want %d entries and no drops", got, n)
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
