//go:build linux

package stack

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"strconv"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// superPacket6 is superPacket over IPv6: what a TUN with TSO hands out for
// a TCP (proto 6) or UDP GSO (proto 17) send of payload from fd00:99::1
// to fd00:99::2, its checksum field the pseudo-header sum.
func superPacket6(payload []byte, mss int, flags uint8, proto uint8) []byte {
	l4 := 32
	if proto == 17 {
		l4 = 8
	}
	pkt := make([]byte, ipv6HeaderLen+l4+len(payload))
	pkt[0] = 0x60
	binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-ipv6HeaderLen))
	pkt[6], pkt[7] = proto, 64
	pkt[8], pkt[9], pkt[23] = 0xfd, 0x00, 1
	pkt[24], pkt[25], pkt[39] = 0xfd, 0x00, 2
	t := pkt[ipv6HeaderLen:]
	binary.BigEndian.PutUint16(t[0:], 40000)
	binary.BigEndian.PutUint16(t[2:], 5201)
	h := vnetHdr{flags: vnetNeedsCsum, hdrLen: uint16(ipv6HeaderLen + l4), gsoSize: uint16(mss), csumStart: ipv6HeaderLen}
	if proto == 6 {
		binary.BigEndian.PutUint32(t[4:], 0xfffff000) // wraps within the burst
		binary.BigEndian.PutUint32(t[8:], 777)
		t[12] = byte(l4/4) << 4
		t[13] = flags
		binary.BigEndian.PutUint16(t[14:], 512)
		copy(t[20:], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2})
		h.gsoType, h.csumOffset = vnetGSOTCPv6, 16
	} else {
		binary.BigEndian.PutUint16(t[4:], uint16(len(t)))
		h.gsoType, h.csumOffset = vnetGSOUDPL4, 6
	}
	copy(t[l4:], payload)
	binary.BigEndian.PutUint16(t[h.csumOffset:], pseudoSum6(pkt, proto, len(t)))
	in := make([]byte, vnetHdrLen+len(pkt))
	h.encode(in)
	copy(in[vnetHdrLen:], pkt)
	return in
}

// l4Valid6 reports whether pkt, an IPv6 packet, has the right payload
// length and transport checksum.
func l4Valid6(pkt []byte) bool {
	return len(pkt) >= ipv6HeaderLen && int(binary.BigEndian.Uint16(pkt[4:]))+ipv6HeaderLen == len(pkt) &&
		checksum.Checksum(pkt[ipv6HeaderLen:], pseudoSum6(pkt, pkt[6], len(pkt)-ipv6HeaderLen)) == 0xffff
}

func randomPayload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	return b
}

func TestSplitVirtioTCPv6(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		mss   int
		flags uint8
	}{
		{"psh", 10000, 1428, tcpACK | tcpPSH},
		{"fin cwr ecn", 3 * 1000, 1000, tcpACK | tcpFIN | tcpCWR},
		{"one segment", 500, 1428, tcpACK},
		{"full 64k", 65535 - 72, 1428, tcpACK | tcpPSH},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := randomPayload(tc.size)
			in := superPacket6(payload, tc.mss, tc.flags, 6)
			if tc.flags&tcpCWR != 0 {
				in[1] |= vnetGSOECN
			}
			bufs, sizes, partial := testBufs(64)
			n := splitVirtio(in, bufs, sizes, partial, testOff)
			if want := (tc.size + tc.mss - 1) / tc.mss; n != want {
				t.Fatalf("splitVirtio: %d segments, want %d", n, want)
			}
			var got []byte
			for i := range n {
				pkt := bufs[i][testOff : testOff+sizes[i]]
				tcp := pkt[ipv6HeaderLen:]
				if !partial[i] {
					t.Errorf("segment %d: partial = false, want the TCP checksum left undone", i)
				}
				if got, want := binary.BigEndian.Uint16(tcp[16:]), PseudoSum(pkt, len(tcp)); got != want {
					t.Errorf("segment %d: checksum field %#04x, want the pseudo-header sum %#04x", i, got, want)
				}
				if !IsPartialCandidate6(pkt) || !IsPartialTCP(pkt) || IsPartialCandidate(pkt) {
					t.Errorf("segment %d: not an IPv6 partial candidate", i)
				}
				c := append([]byte(nil), pkt...)
				CompleteChecksum(c)
				if !l4Valid6(c) {
					t.Errorf("segment %d: payload length %d of %d bytes, or TCP checksum wrong after CompleteChecksum", i, binary.BigEndian.Uint16(pkt[4:]), len(pkt))
				}
				if seq, want := binary.BigEndian.Uint32(tcp[4:]), uint32(0xfffff000)+uint32(i*tc.mss); seq != want {
					t.Errorf("segment %d: seq %#x, want %#x", i, seq, want)
				}
				want := tc.flags
				if i < n-1 {
					want &^= tcpFIN | tcpPSH
				}
				if i > 0 {
					want &^= tcpCWR
				}
				if tcp[13] != want {
					t.Errorf("segment %d: flags %#x, want %#x", i, tcp[13], want)
				}
				if !bytes.Equal(pkt[:4], in[vnetHdrLen:vnetHdrLen+4]) || !bytes.Equal(pkt[6:40], in[vnetHdrLen+6:vnetHdrLen+40]) {
					t.Errorf("segment %d: IPv6 header %x, want the super-packet's but its length", i, pkt[:40])
				}
				got = append(got, tcp[32:]...)
			}
			if !bytes.Equal(got, payload) {
				t.Error("the segments' payloads do not add up to the super-packet's")
			}
		})
	}
}

func TestSplitVirtioUDPv6(t *testing.T) {
	payload := randomPayload(3000)
	bufs, sizes, partial := testBufs(4)
	n := splitVirtio(superPacket6(payload, 1200, 0, 17), bufs, sizes, partial, testOff)
	if n != 3 {
		t.Fatalf("splitVirtio(UDPv6 GSO) = %d datagrams, want 3", n)
	}
	var got []byte
	for i := range n {
		d := bufs[i][testOff : testOff+sizes[i]]
		u := d[ipv6HeaderLen:]
		if partial[i] || !l4Valid6(d) || int(binary.BigEndian.Uint16(u[4:])) != len(u) {
			t.Errorf("UDPv6 datagram %d: partial %v, UDP length %d of %d, checksum valid %v", i, partial[i], binary.BigEndian.Uint16(u[4:]), len(u), l4Valid6(d))
		}
		got = append(got, u[8:]...)
	}
	if !bytes.Equal(got, payload) {
		t.Error("the datagrams' payloads do not add up to the super-packet's")
	}
}

func TestSplitVirtioRefusesV6(t *testing.T) {
	bufs, sizes, partial := testBufs(4)
	for _, tc := range []struct {
		name   string
		change func(in []byte)
	}{
		{"extension header", func(in []byte) { in[vnetHdrLen+6] = 0 }}, // hop-by-hop
		{"IPv4 TSO type", func(in []byte) { in[1] = vnetGSOTCPv4 }},
		{"transport not where the header says", func(in []byte) { binary.NativeEndian.PutUint16(in[6:], 48) }},
		{"short data offset", func(in []byte) { in[vnetHdrLen+ipv6HeaderLen+12] = 4 << 4 }},
		{"truncated header", func(in []byte) { in[vnetHdrLen] = 0x60 }},
	} {
		in := superPacket6(make([]byte, 3000), 1000, tcpACK, 6)
		tc.change(in)
		if tc.name == "truncated header" {
			in = in[:vnetHdrLen+30]
		}
		if n := splitVirtio(in, bufs, sizes, partial, testOff); n != 0 {
			t.Errorf("%s: splitVirtio = %d, want 0 (dropped)", tc.name, n)
		}
	}
	// More segments than buffers.
	if n := splitVirtio(superPacket6(make([]byte, 5000), 1000, tcpACK, 6), bufs, sizes, partial, testOff); n != 0 {
		t.Errorf("splitVirtio(5 IPv6 segments into 4 buffers) = %d, want 0", n)
	}
}

func TestSplitVirtioV6AllocatesNothing(t *testing.T) {
	in := superPacket6(make([]byte, 8*1428), 1428, tcpACK, 6)
	bufs, sizes, partial := testBufs(16)
	allocs := testing.AllocsPerRun(50, func() {
		if splitVirtio(in, bufs, sizes, partial, testOff) != 8 {
			t.Fatal("not split")
		}
	})
	if allocs != 0 {
		t.Errorf("split of an IPv6 super-packet: %v allocs per run, want 0", allocs)
	}
}

// BenchmarkSplitVirtio cuts a TSO super-packet of each family and size
// into MSS-sized segments (1448 bytes of payload for IPv4, 1428 for IPv6:
// an MTU of 1500 less the headers with timestamps). Both families'
// segments stay partial.
func BenchmarkSplitVirtio(b *testing.B) {
	for _, fam := range []struct {
		name string
		mss  int
		make func(payload []byte, mss int) []byte
	}{
		{"v4", 1448, func(p []byte, mss int) []byte { return superPacket(p, mss, tcpACK) }},
		{"v6", 1428, func(p []byte, mss int) []byte { return superPacket6(p, mss, tcpACK, 6) }},
	} {
		for _, segs := range []int{1, 8, 44} {
			size := segs * fam.mss
			b.Run(fam.name+"/segs="+strconv.Itoa(segs), func(b *testing.B) {
				in := fam.make(randomPayload(size), fam.mss)
				bufs, sizes, partial := testBufs(64)
				b.ReportAllocs()
				b.SetBytes(int64(size))
				for b.Loop() {
					if splitVirtio(in, bufs, sizes, partial, testOff) != segs {
						b.Fatal("not split")
					}
				}
			})
		}
	}
}

// TestSplitVirtioLoneV6: a lone IPv6 TCP segment whose checksum the
// kernel left undone (NEEDS_CSUM, no GSO) stays partial, as IPv4's; a
// UDP datagram comes out complete.
func TestSplitVirtioLoneV6(t *testing.T) {
	for _, tc := range []struct {
		name    string
		proto   uint8
		partial bool
	}{{"tcp", 6, true}, {"udp", 17, false}} {
		proto := tc.proto
		in := superPacket6(randomPayload(700), 1428, tcpACK|tcpPSH, proto)
		binary.NativeEndian.PutUint16(in[4:], 0) // gsoSize
		in[1] = vnetGSONone
		bufs, sizes, partial := testBufs(1)
		if n := splitVirtio(in, bufs, sizes, partial, testOff); n != 1 || partial[0] != tc.partial {
			t.Fatalf("%s: splitVirtio = %d, partial %v; want 1, %v", tc.name, n, partial[0], tc.partial)
		}
		out, pkt := bufs[0][testOff:testOff+sizes[0]], in[vnetHdrLen:]
		if tc.partial {
			if !bytes.Equal(out, pkt) {
				t.Errorf("%s: the partial segment changed", tc.name)
			}
			out = append([]byte(nil), out...)
			CompleteChecksum(out)
		}
		if !l4Valid6(out) || len(out) != len(pkt) || !bytes.Equal(out[:ipv6HeaderLen+4], pkt[:ipv6HeaderLen+4]) || !bytes.Equal(out[len(out)-700:], pkt[len(pkt)-700:]) {
			t.Errorf("proto %d: checksum not completed, or the packet changed", proto)
		}
	}
}

// splitRun6 cuts an IPv6 super-packet of payload into mss-sized partial
// segments and returns them as WritePartial gets them.
func splitRun6(t testing.TB, payload []byte, mss int, flags uint8) ([][]byte, []bool) {
	bufs, sizes, partial := testBufs(64)
	n := splitVirtio(superPacket6(payload, mss, flags, 6), bufs, sizes, partial, testOff)
	if n == 0 {
		t.Fatal("splitVirtio: not split")
	}
	run := make([][]byte, n)
	for i := range n {
		run[i] = bufs[i][:testOff+sizes[i]]
	}
	return run, partial[:n]
}

// TestCoalesceAndWriteRun6: a run of partial IPv6 segments of one flow
// goes as one TSO write: a TCPv6 virtio-net header, the payload length
// of the whole, the pseudo-header sum of the whole, every payload.
func TestCoalesceAndWriteRun6(t *testing.T) {
	payload := randomPayload(5*1428 + 100)
	run, partial := splitRun6(t, payload, 1428, tcpACK|tcpPSH)
	if end := coalesceEnd(run, partial, testOff, 0); end != len(run) {
		t.Fatalf("coalesceEnd = %d, want all %d segments", end, len(run))
	}
	p, r := pipeIO(t)
	if err := p.writeRun(run, testOff); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 65536+ipv6HeaderLen)
	k, err := r.Read(got)
	if err != nil {
		t.Fatal(err)
	}
	got = got[:k]
	var h vnetHdr
	h.decode(got)
	const hl = ipv6HeaderLen + 32
	want := vnetHdr{flags: vnetNeedsCsum, gsoType: vnetGSOTCPv6, hdrLen: hl, gsoSize: 1428, csumStart: ipv6HeaderLen, csumOffset: 16}
	if h != want {
		t.Errorf("virtio header %+v, want %+v", h, want)
	}
	pkt := got[vnetHdrLen:]
	if len(pkt) != hl+len(payload) || int(binary.BigEndian.Uint16(pkt[4:]))+ipv6HeaderLen != len(pkt) {
		t.Fatalf("coalesced packet %d bytes, payload length %d; want %d", len(pkt), binary.BigEndian.Uint16(pkt[4:]), hl+len(payload))
	}
	if !bytes.Equal(pkt[hl:], payload) {
		t.Error("coalesced payload differs from what was sent")
	}
	if pkt[ipv6HeaderLen+13] != tcpACK|tcpPSH {
		t.Errorf("coalesced flags %#x, want ACK|PSH (the last segment's PSH)", pkt[ipv6HeaderLen+13])
	}
	CompleteChecksum(pkt)
	if !l4Valid6(pkt) {
		t.Error("coalesced packet's checksum is wrong once completed")
	}
}

// TestWriteRunLone6: a lone partial IPv6 segment goes as
// CHECKSUM_PARTIAL, without GSO, as it is.
func TestWriteRunLone6(t *testing.T) {
	run, _ := splitRun6(t, randomPayload(700), 1428, tcpACK|tcpPSH)
	seg := append([]byte(nil), run[0][testOff:]...)
	p, r := pipeIO(t)
	if err := p.writeRun(run, testOff); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 65536)
	k, err := r.Read(got)
	if err != nil {
		t.Fatal(err)
	}
	var h vnetHdr
	h.decode(got)
	if want := (vnetHdr{flags: vnetNeedsCsum, hdrLen: ipv6HeaderLen + 32, csumStart: ipv6HeaderLen, csumOffset: 16}); h != want {
		t.Errorf("virtio header %+v, want %+v", h, want)
	}
	if !bytes.Equal(got[vnetHdrLen:k], seg) {
		t.Error("the lone segment changed")
	}
}

func TestCoalesceEndStops6(t *testing.T) {
	const tcp = ipv6HeaderLen
	for _, tc := range []struct {
		name   string
		change func(run [][]byte, partial []bool)
		want   int
	}{
		{"one flow", func([][]byte, []bool) {}, 4},
		{"a complete packet", func(_ [][]byte, p []bool) { p[2] = false }, 2},
		{"another traffic class", func(r [][]byte, _ []bool) { r[1][testOff] |= 0x01 }, 1},
		{"another flow label", func(r [][]byte, _ []bool) { r[2][testOff+3]++ }, 2},
		{"another hop limit", func(r [][]byte, _ []bool) { r[1][testOff+7]-- }, 1},
		{"another source", func(r [][]byte, _ []bool) { r[3][testOff+23]++ }, 3},
		{"another destination", func(r [][]byte, _ []bool) { r[1][testOff+39]++ }, 1},
		{"an IPv4 packet", func(r [][]byte, _ []bool) { r[1][testOff] = 0x45 }, 1},
		{"another port", func(r [][]byte, _ []bool) { r[3][testOff+tcp+1]++ }, 3},
		{"another ack", func(r [][]byte, _ []bool) { r[1][testOff+tcp+8]++ }, 1},
		{"a gap", func(r [][]byte, _ []bool) { r[2][testOff+tcp+7]++ }, 2},
		{"PSH in the middle", func(r [][]byte, _ []bool) { r[1][testOff+tcp+13] |= tcpPSH }, 2},
		{"another TCP option", func(r [][]byte, _ []bool) { r[2][testOff+tcp+31]++ }, 2},
		{"a shorter one in the middle", func(r [][]byte, _ []bool) { r[1] = r[1][:len(r[1])-1] }, 2},
	} {
		run, partial := splitRun6(t, make([]byte, 4*1000), 1000, tcpACK)
		tc.change(run, partial)
		if got := coalesceEnd(run, partial, testOff, 0); got != tc.want {
			t.Errorf("%s: coalesceEnd = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestPartialPath6AllocatesNothing(t *testing.T) {
	in := superPacket6(make([]byte, 8*1428), 1428, tcpACK, 6)
	bufs, sizes, partial := testBufs(16)
	p, r := pipeIO(t)
	drain := make([]byte, 1<<17)
	run := make([][]byte, 16)
	allocs := testing.AllocsPerRun(50, func() {
		n := splitVirtio(in, bufs, sizes, partial, testOff)
		for i := range n {
			run[i] = bufs[i][:testOff+sizes[i]]
		}
		if coalesceEnd(run[:n], partial, testOff, 0) != n {
			t.Fatal("not coalesced")
		}
		if err := p.writeRun(run[:n], testOff); err != nil {
			t.Fatal(err)
		}
		r.Read(drain)
	})
	if allocs != 0 {
		t.Errorf("IPv6 split, coalesce and write: %v allocs per run, want 0", allocs)
	}
}
