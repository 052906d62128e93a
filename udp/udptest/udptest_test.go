package udptest_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"

	"go.uber.org/goleak"

	"github.com/overlayd/overlayd/router"
	"github.com/overlayd/overlayd/udp/udptest"
)

var (
	_ router.Underlay      = (*udptest.Conn)(nil)
	_ router.KernelDropper = (*udptest.Conn)(nil)
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func read(t *testing.T, c *udptest.Conn, max int) ([][]byte, []netip.AddrPort) {
	t.Helper()
	bufs := make([][]byte, max)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, max)
	srcs := make([]netip.AddrPort, max)
	n, err := c.ReadBatch(bufs, sizes, srcs)
	if err != nil {
		t.Fatalf("ReadBatch: %v", err)
	}
	out := make([][]byte, n)
	for i := range n {
		out[i] = bufs[i][:sizes[i]]
	}
	return out, srcs[:n]
}

func TestRoundTrip(t *testing.T) {
	nw := udptest.NewNetwork()
	a := nw.Conn(netip.MustParseAddrPort("10.0.0.1:4789"))
	b := nw.Conn(netip.MustParseAddrPort("10.0.0.2:0"))
	defer a.Close()
	defer b.Close()
	if b.LocalAddr().Port() == 0 {
		t.Fatalf("LocalAddr() = %v, want a port", b.LocalAddr())
	}
	dst := b.LocalAddr()
	n, err := a.WriteBatch([][]byte{[]byte("one"), []byte("two")}, []netip.AddrPort{dst, dst}, nil)
	if n != 2 || err != nil {
		t.Fatalf("WriteBatch = %d, %v, want 2, nil", n, err)
	}
	got, srcs := read(t, b, 8)
	if len(got) != 2 || string(got[0]) != "one" || string(got[1]) != "two" || srcs[0] != a.LocalAddr() {
		t.Fatalf("ReadBatch = %q from %v", got, srcs)
	}
}

// TestIPv6: Conns on IPv6 addresses talk to each other, not to IPv4 ones
// (refused with an error, as by udp.Conn); a v4-mapped address is the
// IPv4 one.
func TestIPv6(t *testing.T) {
	nw := udptest.NewNetwork()
	a := nw.Conn(netip.MustParseAddrPort("[2001:db8::1]:4789"))
	b := nw.Conn(netip.MustParseAddrPort("[2001:db8::2]:0"))
	c := nw.Conn(netip.MustParseAddrPort("[::ffff:10.0.0.3]:4789"))
	defer a.Close()
	defer b.Close()
	defer c.Close()
	if got := c.LocalAddr(); got != netip.MustParseAddrPort("10.0.0.3:4789") {
		t.Errorf("LocalAddr() of a v4-mapped Conn = %v, want 10.0.0.3:4789", got)
	}
	n, err := a.WriteBatch([][]byte{[]byte("one"), []byte("four"), []byte("two")}, []netip.AddrPort{b.LocalAddr(), c.LocalAddr(), b.LocalAddr()}, nil)
	if n != 2 || err == nil {
		t.Fatalf("WriteBatch to IPv6, IPv4, IPv6 from IPv6 = %d, %v, want 2 and an error", n, err)
	}
	got, srcs := read(t, b, 8)
	if len(got) != 2 || string(got[0]) != "one" || string(got[1]) != "two" || srcs[0] != a.LocalAddr() {
		t.Fatalf("ReadBatch = %q from %v, want one, two from %v", got, srcs, a.LocalAddr())
	}
}

func TestHookAndQueue(t *testing.T) {
	nw := udptest.NewNetwork()
	nw.QueueLen = 4
	nw.Hook = func(src, dst netip.AddrPort, b []byte) int {
		switch b[0] {
		case 'd':
			return 0
		case '2':
			return 2
		case 'c':
			b[0] = 'C'
		}
		return 1
	}
	a := nw.Conn(netip.MustParseAddrPort("10.0.0.1:1"))
	b := nw.Conn(netip.MustParseAddrPort("10.0.0.2:1"))
	defer a.Close()
	defer b.Close()
	dst := b.LocalAddr()
	msgs := [][]byte{[]byte("drop"), []byte("2x"), []byte("corrupt"), []byte("x"), []byte("full")}
	dsts := []netip.AddrPort{dst, dst, dst, dst, dst}
	a.WriteBatch(msgs, dsts, nil)
	got, _ := read(t, b, 8)
	want := [][]byte{[]byte("2x"), []byte("2x"), []byte("Corrupt"), []byte("x")}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if b.Drops() != 1 {
		t.Errorf("Drops() = %d, want 1", b.Drops())
	}
	a.WriteBatch([][]byte{[]byte("x")}, []netip.AddrPort{netip.MustParseAddrPort("10.9.9.9:1")}, nil)
	if nw.Unroutable() != 1 {
		t.Errorf("Unroutable() = %d, want 1", nw.Unroutable())
	}
}

func TestCloseUnblocks(t *testing.T) {
	nw := udptest.NewNetwork()
	c := nw.Conn(netip.MustParseAddrPort("10.0.0.1:1"))
	done := make(chan error)
	go func() {
		_, err := c.ReadBatch([][]byte{make([]byte, 10)}, make([]int, 1), make([]netip.AddrPort, 1))
		done <- err
	}()
	c.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadBatch after Close: %v, want net.ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.WriteBatch(nil, nil, nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteBatch after Close: %v, want net.ErrClosed", err)
	}
	// The address is free again.
	nw.Conn(netip.MustParseAddrPort("10.0.0.1:1")).Close()
}
