package udp

import (
	"bytes"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// loopbacks are the families the tests run over.
var loopbacks = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("[::1]:0")}

func mustListen(t *testing.T, addr netip.AddrPort, opts Options) *Conn {
	t.Helper()
	c, err := Listen(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// perFamily runs f over IPv4 and IPv6 loopback.
func perFamily(t *testing.T, f func(t *testing.T, lo netip.AddrPort)) {
	for _, lo := range loopbacks {
		t.Run(lo.Addr().String(), func(t *testing.T) { f(t, lo) })
	}
}

func needOffload(t *testing.T, c *Conn) {
	t.Helper()
	if gso, gro := c.Offload(); !gso || !gro {
		t.Skipf("kernel lacks UDP GSO/GRO (gso=%v gro=%v)", gso, gro)
	}
}

func datagram(i, size int) []byte {
	b := bytes.Repeat([]byte{byte(i)}, size)
	b[0] = byte(i >> 8)
	return b
}

// readAll reads n datagrams with batch-long reads into bufSize buffers,
// calling after each read.
func readAll(t *testing.T, c *Conn, n, bufSize, batch int, after func(got int)) [][]byte {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, func() { c.Close() })
	defer timer.Stop()
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, bufSize)
	}
	sizes := make([]int, batch)
	srcs := make([]netip.AddrPort, batch)
	var out [][]byte
	for len(out) < n {
		k, err := c.ReadBatch(bufs, sizes, srcs)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d: %v", len(out), n, err)
		}
		for i := range k {
			out = append(out, bytes.Clone(bufs[i][:sizes[i]]))
		}
		if after != nil {
			after(k)
		}
	}
	return out
}

func sendN(t *testing.T, tx *Conn, dst netip.AddrPort, bufs [][]byte) {
	t.Helper()
	dsts := make([]netip.AddrPort, len(bufs))
	for i := range dsts {
		dsts[i] = dst
	}
	if n, err := tx.WriteBatch(bufs, dsts, nil); n != len(bufs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v, want %d, nil", n, err, len(bufs))
	}
}

// TestGROCoalesced: on loopback a GSO send reaches a GRO socket as one
// coalesced message, which ReadBatch splits.
func TestGROCoalesced(t *testing.T) { perFamily(t, testGROCoalesced) }

func testGROCoalesced(t *testing.T, lo netip.AddrPort) {
	rx, tx := mustListen(t, lo, Options{}), mustListen(t, lo, Options{})
	needOffload(t, rx)
	var bufs [][]byte
	for i := range 64 {
		bufs = append(bufs, datagram(i, 1400))
	}
	sendN(t, tx, rx.LocalAddr(), bufs)
	got := readAll(t, rx, 64, maxRead, 128, nil)
	// 46 datagrams of 1400 bytes fill the 65507 bytes (65527 over IPv6)
	// one GSO send may carry.
	limit := maxGSOPayload4
	if lo.Addr().Is6() {
		limit = maxGSOPayload6
	}
	if want := limit / 1400; rx.r.groSegs != want {
		t.Errorf("after the read, groSegs = %d, want %d (coalesced messages)", rx.r.groSegs, want)
	}
	for i := range bufs {
		if !bytes.Equal(got[i], bufs[i]) {
			t.Fatalf("datagram %d differs", i)
		}
	}
}

// TestGROSpill: coalesced messages that split into more datagrams than
// the caller's batch are kept for later reads, in order, none lost.
func TestGROSpill(t *testing.T) { perFamily(t, testGROSpill) }

func testGROSpill(t *testing.T, lo netip.AddrPort) {
	for _, bufSize := range []int{maxRead, 1500} {
		rx, tx := mustListen(t, lo, Options{}), mustListen(t, lo, Options{})
		needOffload(t, rx)
		var bufs [][]byte
		for i := range 200 {
			bufs = append(bufs, datagram(i, 1000+i/64)) // runs of 64, then 8
		}
		sendN(t, tx, rx.LocalAddr(), bufs)
		spilled := false
		got := readAll(t, rx, len(bufs), bufSize, 10, func(int) {
			spilled = spilled || len(rx.r.pend) > 0
		})
		if !spilled {
			t.Errorf("buf=%d: no read kept datagrams for later; the test did not test", bufSize)
		}
		for i := range bufs {
			if !bytes.Equal(got[i], bufs[i]) {
				t.Fatalf("buf=%d: datagram %d: %d bytes, want %d", bufSize, i, len(got[i]), len(bufs[i]))
			}
		}
	}
}

// TestGSORejected: when the kernel refuses a GSO send (here because the
// socket sends without UDP checksums: SO_NO_CHECK over IPv4,
// UDP_NO_CHECK6_TX over IPv6, whose receiver must then take zero
// checksums, UDP_NO_CHECK6_RX), the Conn turns GSO off and sends the
// batch without it.
func TestGSORejected(t *testing.T) { perFamily(t, testGSORejected) }

func testGSORejected(t *testing.T, lo netip.AddrPort) {
	rx, tx := mustListen(t, lo, Options{}), mustListen(t, lo, Options{})
	needOffload(t, tx)
	set := func(c *Conn, level, opt int, name string) {
		c.socks[0].rc.Control(func(fd uintptr) {
			if err := unix.SetsockoptInt(int(fd), level, opt, 1); err != nil {
				t.Skipf("%s: %v", name, err)
			}
		})
	}
	if lo.Addr().Is4() {
		set(tx, unix.SOL_SOCKET, unix.SO_NO_CHECK, "SO_NO_CHECK")
	} else {
		set(tx, unix.SOL_UDP, unix.UDP_NO_CHECK6_TX, "UDP_NO_CHECK6_TX")
		set(rx, unix.SOL_UDP, unix.UDP_NO_CHECK6_RX, "UDP_NO_CHECK6_RX")
	}
	var bufs [][]byte
	for i := range 10 {
		bufs = append(bufs, datagram(i, 500))
	}
	bufs = append(bufs, datagram(10, 20))
	sendN(t, tx, rx.LocalAddr(), bufs)
	if gso, _ := tx.Offload(); gso {
		t.Errorf("Offload() gso = true after the kernel refused GSO")
	}
	got := readAll(t, rx, len(bufs), maxRead, 128, nil)
	for i := range bufs {
		if !bytes.Equal(got[i], bufs[i]) {
			t.Fatalf("datagram %d differs", i)
		}
	}
}

func TestBadDestination(t *testing.T) {
	rx, tx := mustListen(t, loopbacks[0], Options{}), mustListen(t, loopbacks[0], Options{})
	bufs := [][]byte{{1}, {2}, {3}}
	dsts := []netip.AddrPort{rx.LocalAddr(), netip.MustParseAddrPort("[2001:db8::1]:4789"), rx.LocalAddr()}
	n, err := tx.WriteBatch(bufs, dsts, nil)
	if n != 2 || err == nil {
		t.Fatalf("WriteBatch with an IPv6 destination on IPv4 = %d, %v, want 2 and an error", n, err)
	}
	got := readAll(t, rx, 2, 100, 8, nil)
	if got[0][0] != 1 || got[1][0] != 3 {
		t.Fatalf("got %v, want [1] [3]", got)
	}
}

// TestBuffers: Options.ReadBuffer and WriteBuffer size the socket's
// buffers on either family, beyond net.core.[rw]mem_max as root (the
// kernel reports twice the size asked for, its bookkeeping included).
func TestBuffers(t *testing.T) { perFamily(t, testBuffers) }

func testBuffers(t *testing.T, lo netip.AddrPort) {
	const size = 3 << 20
	c := mustListen(t, lo, Options{ReadBuffer: size, WriteBuffer: size})
	var rbuf, wbuf int
	c.socks[0].rc.Control(func(fd uintptr) {
		rbuf, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		wbuf, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	})
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("not root under CI=true (CI runs as root)")
		}
		t.Skipf("not root: buffers %d and %d are capped at the sysctl maxima", rbuf, wbuf)
	}
	if rbuf != 2*size || wbuf != 2*size {
		t.Errorf("SO_RCVBUF, SO_SNDBUF = %d, %d, want %d each", rbuf, wbuf, 2*size)
	}
}
