package udp_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/udp"
)

// TestKernelDrops: datagrams sent to a socket with a tiny receive buffer
// that nobody reads are dropped by the kernel, and KernelDrops counts
// them exactly: what was read plus what it reports is what was sent.
func TestKernelDrops(t *testing.T) {
	for _, lo := range loopbacks {
		t.Run(lo.Addr().String(), func(t *testing.T) { testKernelDrops(t, lo) })
	}
}

func testKernelDrops(t *testing.T, lo netip.AddrPort) {
	rx := listen(t, lo, udp.Options{DisableOffload: true, ReadBuffer: 4096})
	tx := listen(t, lo, udp.Options{DisableOffload: true})
	if n, ok := rx.KernelDrops(); !ok || n != 0 {
		t.Fatalf("KernelDrops of a new socket = %d, %v; want 0, true", n, ok)
	}
	const sent = 200
	out := make([][]byte, sent)
	dsts := make([]netip.AddrPort, sent)
	for i := range out {
		out[i] = payload(i, 1000)
		dsts[i] = rx.LocalAddr()
	}
	if n, err := tx.WriteBatch(out, dsts, nil); n != sent || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	// Loopback delivers (or drops) in the sender's system call; wait for
	// the count to settle all the same.
	var drops uint64
	testutil.Eventually(t, 5*time.Second, "KernelDrops to settle above 0", func() error {
		n, _ := rx.KernelDrops()
		if n == drops && n > 0 {
			return nil
		}
		drops = n
		return fmt.Errorf("KernelDrops = %d, want some drops of %d datagrams into a 4 KiB buffer, the same twice", n, sent)
	})
	if drops >= sent {
		t.Fatalf("KernelDrops = %d of %d sent: nothing was kept?", drops, sent)
	}
	want := sent - int(drops)
	bufs, sizes, srcs := make([][]byte, 64), make([]int, 64), make([]netip.AddrPort, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	got := 0
	done := make(chan error, 1)
	go func() {
		for got < want {
			n, err := rx.ReadBatch(bufs, sizes, srcs)
			if err != nil {
				done <- err
				return
			}
			got += n
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		rx.Close()
		<-done
		t.Fatalf("read %d datagrams, want %d (sent %d, kernel dropped %d): the books do not balance", got, want, sent, drops)
	}
	t.Logf("sent %d, read %d, kernel dropped %d", sent, got, drops)
	// The count lives as long as the socket.
	if n, ok := rx.KernelDrops(); !ok || n != drops {
		t.Errorf("KernelDrops after reading = %d, %v; want %d, true", n, ok, drops)
	}
	rx.Close()
	if _, ok := rx.KernelDrops(); ok {
		t.Error("KernelDrops after Close reports a count")
	}
}
