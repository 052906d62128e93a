package udp_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/overlayd/overlayd/router"
	"github.com/overlayd/overlayd/udp"
)

var (
	_ router.Underlay      = (*udp.Conn)(nil)
	_ router.KernelDropper = (*udp.Conn)(nil)
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	lo4 = netip.MustParseAddrPort("127.0.0.1:0")
	lo6 = netip.MustParseAddrPort("[::1]:0")
	// loopbacks are the families every test runs over.
	loopbacks = []netip.AddrPort{lo4, lo6}
)

func listen(t testing.TB, addr netip.AddrPort, opts udp.Options) *udp.Conn {
	t.Helper()
	c, err := udp.Listen(addr, opts)
	if err != nil {
		if addr.Addr().Is6() && (errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT)) {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatalf("Listen(%v): %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type dgram struct {
	data []byte
	src  netip.AddrPort
}

// collect reads until want datagrams have arrived, failing after a
// deadline (it closes c to unblock the read).
func collect(t *testing.T, c *udp.Conn, want, bufSize, batch int) []dgram {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, func() { c.Close() })
	defer timer.Stop()
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, bufSize)
	}
	sizes := make([]int, batch)
	srcs := make([]netip.AddrPort, batch)
	var got []dgram
	for len(got) < want {
		n, err := c.ReadBatch(bufs, sizes, srcs)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d datagrams: %v", len(got), want, err)
		}
		if n < 1 || n > batch {
			t.Fatalf("ReadBatch = %d, want 1..%d", n, batch)
		}
		for i := range n {
			got = append(got, dgram{bytes.Clone(bufs[i][:sizes[i]]), srcs[i]})
		}
	}
	if len(got) != want {
		t.Fatalf("got %d datagrams, want %d", len(got), want)
	}
	return got
}

// payload is datagram i of a test: size bytes that name i.
func payload(i, size int) []byte {
	b := make([]byte, size)
	for k := range b {
		b[k] = byte(i*7 + k)
	}
	if size >= 2 {
		b[0], b[1] = byte(i>>8), byte(i)
	}
	return b
}

func offloadName(off bool) string {
	if off {
		return "offload=off"
	}
	return "offload=on"
}

// TestGSOBatch: 64 datagrams of one size and a short tail, in one
// WriteBatch, arrive as 65 datagrams with their exact contents, whatever
// the offloads and the reader's buffers and batch.
func TestGSOBatch(t *testing.T) {
	for _, fam := range []netip.AddrPort{lo4, lo6} {
		for _, disable := range []bool{false, true} {
			for _, rb := range []struct{ bufSize, batch int }{{65535, 128}, {65535, 16}, {1500, 128}, {1500, 7}} {
				name := fmt.Sprintf("%v/%s/buf=%d/batch=%d", fam.Addr(), offloadName(disable), rb.bufSize, rb.batch)
				t.Run(name, func(t *testing.T) {
					opts := udp.Options{DisableOffload: disable}
					rx := listen(t, fam, opts)
					tx := listen(t, fam, opts)
					var bufs [][]byte
					var dsts []netip.AddrPort
					for i := range 64 {
						bufs = append(bufs, payload(i, 1400))
						dsts = append(dsts, rx.LocalAddr())
					}
					bufs = append(bufs, payload(64, 300))
					dsts = append(dsts, rx.LocalAddr())
					n, err := tx.WriteBatch(bufs, dsts, nil)
					if n != len(bufs) || err != nil {
						t.Fatalf("WriteBatch = %d, %v, want %d, nil", n, err, len(bufs))
					}
					got := collect(t, rx, len(bufs), rb.bufSize, rb.batch)
					for i, d := range got {
						if !bytes.Equal(d.data, bufs[i]) {
							t.Fatalf("datagram %d: %d bytes %x..., want %d bytes %x...", i, len(d.data), d.data[:min(4, len(d.data))], len(bufs[i]), bufs[i][:4])
						}
						if d.src != tx.LocalAddr() {
							t.Fatalf("datagram %d from %v, want %v", i, d.src, tx.LocalAddr())
						}
					}
				})
			}
		}
	}
}

// TestMixedDestinations: one batch to two receivers, interleaved, with
// runs that GSO can and cannot coalesce, and an empty datagram.
func TestMixedDestinations(t *testing.T) {
	for _, lo := range loopbacks {
		for _, disable := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/%s", lo.Addr(), offloadName(disable)), func(t *testing.T) {
				testMixedDestinations(t, lo, disable)
			})
		}
	}
}

func testMixedDestinations(t *testing.T, lo netip.AddrPort, disable bool) {
	opts := udp.Options{DisableOffload: disable}
	tx := listen(t, lo, opts)
	rxs := []*udp.Conn{listen(t, lo, opts), listen(t, lo, opts)}
	pattern := []int{0, 0, 0, 1, 0, 1, 1, 1, 1, 0, 0, 1}
	sizes := []int{100, 100, 100, 200, 50, 200, 200, 10, 0, 100, 100, 200}
	var bufs [][]byte
	var dsts []netip.AddrPort
	want := make([][][]byte, 2)
	for i, r := range pattern {
		b := payload(i, sizes[i])
		bufs = append(bufs, b)
		dsts = append(dsts, rxs[r].LocalAddr())
		want[r] = append(want[r], b)
	}
	if n, err := tx.WriteBatch(bufs, dsts, nil); n != len(bufs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v, want %d, nil", n, err, len(bufs))
	}
	for r, rx := range rxs {
		got := collect(t, rx, len(want[r]), 65535, 128)
		for i, d := range got {
			if !bytes.Equal(d.data, want[r][i]) || d.src != tx.LocalAddr() {
				t.Fatalf("receiver %d datagram %d = %x from %v, want %x from %v", r, i, d.data, d.src, want[r][i], tx.LocalAddr())
			}
		}
	}
}

// TestLargeBatch: a WriteBatch longer than BatchSize goes in several
// system calls, and a ReadBatch returns at most BatchSize.
func TestLargeBatch(t *testing.T) {
	for _, lo := range loopbacks {
		t.Run(lo.Addr().String(), func(t *testing.T) { testLargeBatch(t, lo) })
	}
}

func testLargeBatch(t *testing.T, lo netip.AddrPort) {
	rx := listen(t, lo, udp.Options{BatchSize: 8})
	tx := listen(t, lo, udp.Options{BatchSize: 8})
	if bs := rx.BatchSize(); bs < 1 || bs > 8 {
		t.Fatalf("BatchSize() = %d, want 8 (1 without batched system calls)", bs)
	}
	var bufs [][]byte
	var dsts []netip.AddrPort
	for i := range 50 {
		bufs = append(bufs, payload(i, 64+i%3))
		dsts = append(dsts, rx.LocalAddr())
	}
	if n, err := tx.WriteBatch(bufs, dsts, nil); n != len(bufs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v, want %d, nil", n, err, len(bufs))
	}
	got := collect(t, rx, len(bufs), 2048, 32)
	for i, d := range got {
		if !bytes.Equal(d.data, bufs[i]) {
			t.Fatalf("datagram %d = %x, want %x", i, d.data, bufs[i])
		}
	}
}

// TestSourcePorts: one flow leaves from one port; several flows from
// several ports, all on the listening IP.
func TestSourcePorts(t *testing.T) {
	for _, lo := range loopbacks {
		t.Run(lo.Addr().String(), func(t *testing.T) { testSourcePorts(t, lo) })
	}
}

func testSourcePorts(t *testing.T, lo netip.AddrPort) {
	const ports = 4
	rx := listen(t, lo, udp.Options{})
	tx := listen(t, lo, udp.Options{SourcePorts: ports})
	send := func(flows []uint32) []dgram {
		t.Helper()
		bufs := make([][]byte, len(flows))
		dsts := make([]netip.AddrPort, len(flows))
		for i := range flows {
			bufs[i] = payload(i, 500)
			dsts[i] = rx.LocalAddr()
		}
		if n, err := tx.WriteBatch(bufs, dsts, flows); n != len(bufs) || err != nil {
			t.Fatalf("WriteBatch = %d, %v, want %d, nil", n, err, len(bufs))
		}
		return collect(t, rx, len(bufs), 65535, 128)
	}

	one := send([]uint32{0xdeadbeef, 0xdeadbeef, 0xdeadbeef, 0xdeadbeef, 0xdeadbeef})
	for i, d := range one {
		if d.src != one[0].src {
			t.Fatalf("flow datagram %d from %v, datagram 0 from %v: want one port", i, d.src, one[0].src)
		}
		if !bytes.Equal(d.data, payload(i, 500)) {
			t.Fatalf("flow datagram %d out of order or changed", i)
		}
	}

	var flows []uint32
	for i := range 4 * ports {
		flows = append(flows, uint32(i))
	}
	seen := map[netip.AddrPort]int{}
	for _, d := range send(flows) {
		if d.src.Addr() != tx.LocalAddr().Addr() {
			t.Fatalf("datagram from %v, want IP %v", d.src, tx.LocalAddr().Addr())
		}
		seen[d.src]++
	}
	if len(seen) != ports {
		t.Fatalf("datagrams came from %d ports (%v), want %d", len(seen), seen, ports)
	}
	if seen[tx.LocalAddr()] == 0 {
		t.Errorf("no datagram from the listening port %v: %v", tx.LocalAddr(), seen)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	c, err := udp.Listen(lo4, udp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := c.ReadBatch([][]byte{make([]byte, 2048)}, make([]int, 1), make([]netip.AddrPort, 1))
		done <- err
	}()
	// Whether the read has blocked yet or not, it must end with ErrClosed.
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadBatch after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadBatch still blocked after Close")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.WriteBatch([][]byte{{1}}, []netip.AddrPort{c.LocalAddr()}, nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteBatch after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.ReadBatch([][]byte{make([]byte, 10)}, make([]int, 1), make([]netip.AddrPort, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadBatch after Close: %v, want net.ErrClosed", err)
	}
}

func TestListenErrors(t *testing.T) {
	c := listen(t, lo4, udp.Options{})
	_, err := udp.Listen(c.LocalAddr(), udp.Options{})
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Listen(%v) twice: %v, want EADDRINUSE", c.LocalAddr(), err)
	}
	want := fmt.Sprintf("udp: listen %v: address already in use (another overlayd or a kernel vxlan device holds it; choose another with --listen)", c.LocalAddr())
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}

	c6 := listen(t, lo6, udp.Options{})
	if _, err := udp.Listen(c6.LocalAddr(), udp.Options{}); !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "--listen") {
		t.Errorf("Listen(%v) twice: %v, want EADDRINUSE with advice", c6.LocalAddr(), err)
	}
	for _, a := range []string{"192.0.2.1:0", "[2001:db8::1]:0"} {
		_, err = udp.Listen(netip.MustParseAddrPort(a), udp.Options{})
		if !errors.Is(err, syscall.EADDRNOTAVAIL) || !strings.Contains(err.Error(), "--listen") {
			t.Errorf("Listen(%s) = %v, want EADDRNOTAVAIL with advice", a, err)
		}
	}
	if _, err := udp.Listen(netip.AddrPort{}, udp.Options{}); err == nil {
		t.Errorf("Listen(invalid) succeeded")
	}
	if _, err := udp.Listen(lo4, udp.Options{SourcePorts: -1}); err == nil {
		t.Errorf("Listen(SourcePorts: -1) succeeded")
	}
}

func TestLocalAddr(t *testing.T) {
	for _, addr := range []netip.AddrPort{lo4, lo6} {
		c := listen(t, addr, udp.Options{})
		if c.LocalAddr().Addr() != addr.Addr() || c.LocalAddr().Port() == 0 {
			t.Errorf("Listen(%v).LocalAddr() = %v", addr, c.LocalAddr())
		}
		gso, gro := c.Offload()
		t.Logf("%v: gso=%v gro=%v", c.LocalAddr(), gso, gro)
	}
	c := listen(t, lo4, udp.Options{DisableOffload: true})
	if gso, gro := c.Offload(); gso || gro {
		t.Errorf("Offload() with DisableOffload = %v, %v, want false, false", gso, gro)
	}
}

// TestConcurrentWriters: WriteBatch from several goroutines at once.
func TestConcurrentWriters(t *testing.T) {
	for _, lo := range loopbacks {
		t.Run(lo.Addr().String(), func(t *testing.T) { testConcurrentWriters(t, lo) })
	}
}

func testConcurrentWriters(t *testing.T, lo netip.AddrPort) {
	const writers, per = 4, 40
	rx := listen(t, lo, udp.Options{})
	tx := listen(t, lo, udp.Options{SourcePorts: 2})
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			bufs := make([][]byte, per)
			dsts := make([]netip.AddrPort, per)
			flows := make([]uint32, per)
			for i := range bufs {
				bufs[i] = []byte{byte(w), byte(i)}
				dsts[i] = rx.LocalAddr()
				flows[i] = uint32(w)
			}
			n, err := tx.WriteBatch(bufs, dsts, flows)
			if err == nil && n != per {
				err = fmt.Errorf("WriteBatch = %d, want %d", n, per)
			}
			errs <- err
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	next := make([]int, writers)
	for _, d := range collect(t, rx, writers*per, 64, 128) {
		w, i := int(d.data[0]), int(d.data[1])
		if i != next[w] {
			t.Fatalf("writer %d: datagram %d arrived when %d was due", w, i, next[w])
		}
		next[w]++
	}
}

// TestIPv6Only: a socket on [::] is IPv6-only. An IPv4 socket binds the
// same port on 0.0.0.0 beside it (with a dual-stack socket that is
// EADDRINUSE), the IPv6 one hears nothing sent to 127.0.0.1, and a
// v4-mapped listen address means the IPv4 address.
func TestIPv6Only(t *testing.T) {
	any6 := listen(t, netip.MustParseAddrPort("[::]:0"), udp.Options{})
	port := any6.LocalAddr().Port()
	if got := any6.LocalAddr(); got.Addr() != netip.IPv6Unspecified() || port == 0 {
		t.Fatalf("Listen([::]:0).LocalAddr() = %v, want [::]:PORT", got)
	}
	any4, err := udp.Listen(netip.AddrPortFrom(netip.IPv4Unspecified(), port), udp.Options{})
	if err != nil {
		t.Fatalf("Listen(0.0.0.0:%d) beside [::]:%d: %v (the IPv6 socket is not IPv6-only?)", port, port, err)
	}
	defer any4.Close()
	tx4 := listen(t, lo4, udp.Options{})
	tx6 := listen(t, lo6, udp.Options{})
	dst4 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	dst6 := netip.AddrPortFrom(netip.IPv6Loopback(), port)
	if n, err := tx4.WriteBatch([][]byte{[]byte("four")}, []netip.AddrPort{dst4}, nil); n != 1 || err != nil {
		t.Fatalf("WriteBatch to %v = %d, %v", dst4, n, err)
	}
	if n, err := tx6.WriteBatch([][]byte{[]byte("six")}, []netip.AddrPort{dst6}, nil); n != 1 || err != nil {
		t.Fatalf("WriteBatch to %v = %d, %v", dst6, n, err)
	}
	// Each socket gets exactly its family's datagram: the IPv4 one would
	// be the IPv6 socket's too if it were dual-stack (it binds first).
	for _, c := range []struct {
		conn *udp.Conn
		want string
		src  netip.AddrPort
	}{{any6, "six", tx6.LocalAddr()}, {any4, "four", tx4.LocalAddr()}} {
		got := collect(t, c.conn, 1, 2048, 8)
		if string(got[0].data) != c.want || got[0].src != c.src {
			t.Errorf("%v got %q from %v, want %q from %v", c.conn.LocalAddr(), got[0].data, got[0].src, c.want, c.src)
		}
	}

	mapped := listen(t, netip.MustParseAddrPort("[::ffff:127.0.0.1]:0"), udp.Options{})
	if a := mapped.LocalAddr().Addr(); a != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("Listen([::ffff:127.0.0.1]:0).LocalAddr() = %v, want 127.0.0.1:PORT", mapped.LocalAddr())
	}
}

// TestOtherFamilyDestination: a datagram to the other family's address
// is refused (one error for the batch, the rest still sent) on either
// socket; a v4-mapped destination on an IPv4 socket is its IPv4 address.
func TestOtherFamilyDestination(t *testing.T) {
	for _, tc := range []struct {
		lo    netip.AddrPort
		other string
	}{
		{lo4, "[2001:db8::1]:4789"},
		{lo6, "192.0.2.1:4789"},
		{lo6, "[::ffff:192.0.2.1]:4789"},
	} {
		t.Run(tc.lo.Addr().String()+"->"+tc.other, func(t *testing.T) {
			rx, tx := listen(t, tc.lo, udp.Options{}), listen(t, tc.lo, udp.Options{})
			dsts := []netip.AddrPort{rx.LocalAddr(), netip.MustParseAddrPort(tc.other), rx.LocalAddr()}
			n, err := tx.WriteBatch([][]byte{{1}, {2}, {3}}, dsts, nil)
			if n != 2 || err == nil || !strings.Contains(err.Error(), "cannot reach") {
				t.Fatalf("WriteBatch with a %s destination = %d, %v, want 2 and a \"cannot reach\" error", tc.other, n, err)
			}
			got := collect(t, rx, 2, 100, 8)
			if got[0].data[0] != 1 || got[1].data[0] != 3 {
				t.Fatalf("got %x %x, want 01 03", got[0].data, got[1].data)
			}
		})
	}
	rx, tx := listen(t, lo4, udp.Options{}), listen(t, lo4, udp.Options{})
	mapped := netip.AddrPortFrom(netip.AddrFrom16(rx.LocalAddr().Addr().As16()), rx.LocalAddr().Port())
	if n, err := tx.WriteBatch([][]byte{{7}}, []netip.AddrPort{mapped}, nil); n != 1 || err != nil {
		t.Fatalf("WriteBatch to %v on IPv4 = %d, %v, want 1, nil", mapped, n, err)
	}
	if got := collect(t, rx, 1, 100, 8); got[0].data[0] != 7 || got[0].src != tx.LocalAddr() {
		t.Fatalf("got %x from %v, want 07 from %v", got[0].data, got[0].src, tx.LocalAddr())
	}
}
