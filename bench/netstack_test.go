package bench_test

import (
	"context"
	"io"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/overlayd/overlayd/stack"
)

// BenchmarkNetstackTCP measures TCP throughput between two Netstacks wired
// back to back by a pump goroutine per direction (Read from one, Write to
// the other), the netstack's share of the overlay data path.
func BenchmarkNetstackTCP(b *testing.B) {
	for _, mtu := range []int{1450, 65000} {
		b.Run("mtu="+strconv.Itoa(mtu), func(b *testing.B) {
			benchTCP(b, mtu)
		})
	}
}

func benchTCP(b *testing.B, mtu int) {
	srv := netip.MustParseAddrPort("10.0.0.2:5201")
	na, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")}, MTU: mtu})
	if err != nil {
		b.Fatal(err)
	}
	nb, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/24")}, MTU: mtu})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var packets [2]uint64
	wg.Add(2)
	go pump(&wg, na, nb, mtu, &packets[0])
	go pump(&wg, nb, na, mtu, &packets[1])
	defer func() {
		na.Close()
		nb.Close()
		wg.Wait()
	}()

	l, err := nb.Listen("tcp", srv.String())
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	recvd := make(chan int64, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			recvd <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		recvd <- n
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := na.DialContext(ctx, "tcp", srv.String())
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 256<<10)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	n := <-recvd
	b.StopTimer()
	if want := int64(b.N) * int64(len(chunk)); n != want {
		b.Fatalf("received %d bytes, want %d", n, want)
	}
	st := na.Stats()
	if st.OutPackets > 0 {
		b.ReportMetric(float64(st.OutBytes)/float64(st.OutPackets), "B/pkt")
	}
	b.ReportMetric(float64(st.DropQueueFull), "queue-drops")
}

func pump(wg *sync.WaitGroup, src, dst *stack.Netstack, mtu int, count *uint64) {
	defer wg.Done()
	n := src.BatchSize()
	bufs := make([][]byte, n)
	out := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, stack.Headroom+mtu)
	}
	sizes := make([]int, n)
	for {
		c, err := src.Read(bufs, sizes, stack.Headroom)
		if err != nil {
			return
		}
		for i := range c {
			out[i] = bufs[i][:stack.Headroom+sizes[i]]
		}
		if _, err := dst.Write(out[:c], stack.Headroom); err != nil {
			return
		}
		*count += uint64(c)
	}
}
