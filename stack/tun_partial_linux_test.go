//go:build linux

package stack

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"testing"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

const testOff = Headroom

// superPacket builds what a TUN with TSO hands out for a TCP send of
// payload: the virtio-net header (TSO, NEEDS_CSUM, mss) and one IPv4/TCP
// packet with 12 bytes of options, its checksum field the pseudo-header
// sum, as the kernel leaves it.
func superPacket(payload []byte, mss int, flags uint8) []byte {
	const ihl, thl = 20, 32
	pkt := make([]byte, ihl+thl+len(payload))
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(pkt[4:], 0x1234)
	pkt[6] = 0x40 // DF
	pkt[8], pkt[9] = 64, 6
	copy(pkt[12:], []byte{10, 200, 1, 1, 10, 200, 2, 1})
	ipv4HeaderChecksum(pkt[:ihl])
	t := pkt[ihl:]
	binary.BigEndian.PutUint16(t[0:], 40000)
	binary.BigEndian.PutUint16(t[2:], 5201)
	binary.BigEndian.PutUint32(t[4:], 0xfffff000) // wraps within the burst
	binary.BigEndian.PutUint32(t[8:], 777)
	t[12] = thl / 4 << 4
	t[13] = flags
	binary.BigEndian.PutUint16(t[14:], 512)
	copy(t[20:], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}) // NOP NOP timestamps
	copy(t[thl:], payload)
	binary.BigEndian.PutUint16(t[16:], PseudoSum(pkt, len(t)))
	h := vnetHdr{flags: vnetNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: ihl + thl, gsoSize: uint16(mss), csumStart: ihl, csumOffset: 16}
	in := make([]byte, vnetHdrLen+len(pkt))
	h.encode(in)
	copy(in[vnetHdrLen:], pkt)
	return in
}

func testBufs(n int) ([][]byte, []int, []bool) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, testOff+65535)
	}
	return bufs, make([]int, n), make([]bool, n)
}

// tcpValid reports whether pkt's IPv4 header and TCP checksums are right.
func tcpValid(pkt []byte) bool {
	ihl := int(pkt[0]&0xf) * 4
	if fold(sum16(pkt[:ihl])) != 0xffff {
		return false
	}
	seg := pkt[ihl:]
	return checksum.Checksum(seg, pseudoSum(pkt, 6, len(seg))) == 0xffff
}

func TestSplitVirtioTSOStaysPartial(t *testing.T) {
	payload := make([]byte, 10000)
	for i := range payload {
		payload[i] = byte(rand.IntN(256))
	}
	in := superPacket(payload, 1448, tcpACK|tcpPSH)
	bufs, sizes, partial := testBufs(16)
	n := splitVirtio(in, bufs, sizes, partial, testOff)
	if want := (10000 + 1447) / 1448; n != want {
		t.Fatalf("splitVirtio: %d segments, want %d", n, want)
	}
	var got []byte
	for i := range n {
		pkt := bufs[i][testOff : testOff+sizes[i]]
		if !partial[i] {
			t.Errorf("segment %d: partial = false, want true", i)
		}
		if seq, want := binary.BigEndian.Uint32(pkt[24:]), uint32(0xfffff000)+uint32(i*1448); seq != want {
			t.Errorf("segment %d: seq %#x, want %#x", i, seq, want)
		}
		if psh := pkt[33]&tcpPSH != 0; psh != (i == n-1) {
			t.Errorf("segment %d: PSH %v, want only on the last", i, psh)
		}
		if tcpValid(pkt) {
			t.Errorf("segment %d: checksum already complete, want it left partial", i)
		}
		if got, want := binary.BigEndian.Uint16(pkt[36:]), PseudoSum(pkt, len(pkt)-20); got != want {
			t.Errorf("segment %d: checksum field %#x, want the pseudo-header sum %#x", i, got, want)
		}
		CompleteChecksum(pkt)
		if !tcpValid(pkt) {
			t.Errorf("segment %d: after CompleteChecksum the checksums are wrong", i)
		}
		got = append(got, pkt[52:]...)
	}
	if !bytes.Equal(got, payload) {
		t.Error("the segments' payloads do not add up to the super-packet's")
	}
}

func TestSplitVirtioCompletesOthers(t *testing.T) {
	// A lone UDP datagram whose checksum the kernel left undone.
	pkt := make([]byte, 20+8+100)
	pkt[0], pkt[8], pkt[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	copy(pkt[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	ipv4HeaderChecksum(pkt[:20])
	binary.BigEndian.PutUint16(pkt[24:], 108)
	for i := range 100 {
		pkt[28+i] = byte(i)
	}
	binary.BigEndian.PutUint16(pkt[26:], pseudoSum(pkt, 17, 108))
	h := vnetHdr{flags: vnetNeedsCsum, csumStart: 20, csumOffset: 6}
	in := make([]byte, vnetHdrLen+len(pkt))
	h.encode(in)
	copy(in[vnetHdrLen:], pkt)
	bufs, sizes, partial := testBufs(1)
	if n := splitVirtio(in, bufs, sizes, partial, testOff); n != 1 || partial[0] {
		t.Fatalf("splitVirtio(UDP) = %d, partial %v; want 1, false", n, partial[0])
	}
	out := bufs[0][testOff : testOff+sizes[0]]
	if s := checksum.Checksum(out[20:], pseudoSum(out, 17, 108)); s != 0xffff {
		t.Errorf("UDP checksum not completed: sum %#x", s)
	}

	// A UDP GSO super-packet: every datagram gets its whole checksum.
	big := make([]byte, 20+8+3000)
	copy(big, pkt[:20])
	binary.BigEndian.PutUint16(big[2:], uint16(len(big)))
	h = vnetHdr{flags: vnetNeedsCsum, gsoType: vnetGSOUDPL4, hdrLen: 28, gsoSize: 1200, csumStart: 20, csumOffset: 6}
	in = make([]byte, vnetHdrLen+len(big))
	h.encode(in)
	copy(in[vnetHdrLen:], big)
	bufs, sizes, partial = testBufs(4)
	n := splitVirtio(in, bufs, sizes, partial, testOff)
	if n != 3 {
		t.Fatalf("splitVirtio(UDP GSO) = %d datagrams, want 3", n)
	}
	for i := range n {
		d := bufs[i][testOff : testOff+sizes[i]]
		if partial[i] || binary.BigEndian.Uint16(d[24:]) != uint16(len(d)-20) || checksum.Checksum(d[20:], pseudoSum(d, 17, len(d)-20)) != 0xffff {
			t.Errorf("UDP GSO datagram %d: partial %v, length field %d of %d, checksum wrong", i, partial[i], binary.BigEndian.Uint16(d[24:]), len(d)-20)
		}
	}

	// Refused: an IPv4 header under an IPv6 TSO type, and a super-packet
	// of more segments than buffers.
	v4as6 := superPacket(make([]byte, 3000), 1000, tcpACK)
	v4as6[1] = vnetGSOTCPv6
	if n := splitVirtio(v4as6, bufs, sizes, partial, testOff); n != 0 {
		t.Errorf("splitVirtio(IPv4 packet, IPv6 TSO type) = %d, want 0 (dropped)", n)
	}
	if n := splitVirtio(superPacket(make([]byte, 5000), 1000, tcpACK), bufs, sizes, partial, testOff); n != 0 {
		t.Errorf("splitVirtio(5 segments into 4 buffers) = %d, want 0 (dropped)", n)
	}
}

// pipeIO is a partialIO writing into a pipe, and the pipe's read end.
func pipeIO(t *testing.T) (*partialIO, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	unix.SetNonblock(int(w.Fd()), true)
	rc, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	p := &partialIO{file: w, rc: rc, iovs: make([]unix.Iovec, 0, 129)}
	p.wfn = p.writev
	return p, r
}

func TestCoalesceAndWriteRun(t *testing.T) {
	payload := make([]byte, 5*1448+100)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	bufs, sizes, partial := testBufs(8)
	n := splitVirtio(superPacket(payload, 1448, tcpACK|tcpPSH), bufs, sizes, partial, testOff)
	run := make([][]byte, n)
	for i := range n {
		run[i] = bufs[i][:testOff+sizes[i]]
	}
	if end := coalesceEnd(run, partial, testOff, 0); end != n {
		t.Fatalf("coalesceEnd = %d, want all %d segments", end, n)
	}
	p, r := pipeIO(t)
	if err := p.writeRun(run, testOff); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 65536)
	k, err := r.Read(got)
	if err != nil {
		t.Fatal(err)
	}
	got = got[:k]
	var h vnetHdr
	h.decode(got)
	want := vnetHdr{flags: vnetNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: 52, gsoSize: 1448, csumStart: 20, csumOffset: 16}
	if h != want {
		t.Errorf("virtio header %+v, want %+v", h, want)
	}
	pkt := got[vnetHdrLen:]
	if len(pkt) != 52+len(payload) || int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) {
		t.Fatalf("coalesced packet %d bytes, IP total length %d; want %d", len(pkt), binary.BigEndian.Uint16(pkt[2:]), 52+len(payload))
	}
	if !bytes.Equal(pkt[52:], payload) {
		t.Error("coalesced payload differs from what was sent")
	}
	if pkt[33] != tcpACK|tcpPSH {
		t.Errorf("coalesced flags %#x, want ACK|PSH (the last segment's PSH)", pkt[33])
	}
	CompleteChecksum(pkt)
	if !tcpValid(pkt) {
		t.Error("coalesced packet's checksums are wrong once completed")
	}
}

func TestCoalesceEndStops(t *testing.T) {
	split := func() [][]byte {
		bufs, sizes, partial := testBufs(8)
		n := splitVirtio(superPacket(make([]byte, 4*1000), 1000, tcpACK), bufs, sizes, partial, testOff)
		run := make([][]byte, n)
		for i := range n {
			run[i] = bufs[i][:testOff+sizes[i]]
		}
		return run
	}
	all := []bool{true, true, true, true}
	for _, tc := range []struct {
		name   string
		change func(run [][]byte, partial []bool)
		want   int
	}{
		{"one flow", func([][]byte, []bool) {}, 4},
		{"a complete packet", func(_ [][]byte, p []bool) { p[2] = false }, 2},
		{"another ack", func(r [][]byte, _ []bool) { r[1][testOff+28]++ }, 1},
		{"a gap", func(r [][]byte, _ []bool) { r[2][testOff+27]++ }, 2},
		{"PSH in the middle", func(r [][]byte, _ []bool) { r[1][testOff+33] |= tcpPSH }, 2},
		{"a shorter one in the middle", func(r [][]byte, _ []bool) { r[1] = r[1][:len(r[1])-1] }, 2},
		{"another port", func(r [][]byte, _ []bool) { r[3][testOff+21]++ }, 3},
		{"another TTL", func(r [][]byte, _ []bool) { r[1][testOff+8]-- }, 1},
		{"the first has FIN", func(r [][]byte, _ []bool) { r[0][testOff+33] |= tcpFIN }, 1},
	} {
		run, partial := split(), append([]bool(nil), all...)
		tc.change(run, partial)
		if got := coalesceEnd(run, partial, testOff, 0); got != tc.want {
			t.Errorf("%s: coalesceEnd = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestPartialPathAllocatesNothing(t *testing.T) {
	in := superPacket(make([]byte, 8*1448), 1448, tcpACK)
	bufs, sizes, partial := testBufs(16)
	p, r := pipeIO(t)
	drain := make([]byte, 1<<16)
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
		t.Errorf("split, coalesce and write: %v allocs per run, want 0", allocs)
	}
}

func FuzzSplitVirtio(f *testing.F) {
	f.Add(superPacket(make([]byte, 3000), 1000, tcpACK))
	f.Add(make([]byte, vnetHdrLen+20))
	f.Add(superPacket6(make([]byte, 3000), 1000, tcpACK, 6))
	f.Add(superPacket6(make([]byte, 3000), 1000, 0, 17))
	bufs, sizes, partial := testBufs(4)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < vnetHdrLen || len(in) > vnetHdrLen+65535 {
			return
		}
		n := splitVirtio(in, bufs, sizes, partial, testOff)
		if n < 0 || n > len(bufs) {
			t.Fatalf("splitVirtio = %d, out of [0, %d]", n, len(bufs))
		}
	})
}
