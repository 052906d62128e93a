package bench_test

import (
	"net/netip"
	"testing"

	"github.com/overlayd/overlayd/udp"
)

// BenchmarkUDPLoopback sends batches of 64 datagrams of 1400 bytes over
// loopback and reads them back, in lock step on one goroutine (so nothing
// is dropped): one op is one WriteBatch plus the ReadBatch calls that
// receive it. The reader's buffers are 65535 bytes, as the router's are.
func BenchmarkUDPLoopback(b *testing.B) {
	const (
		batch = 64
		size  = 1400
	)
	for _, off := range []bool{false, true} {
		name := "offload=on"
		if off {
			name = "offload=off"
		}
		b.Run(name, func(b *testing.B) {
			opts := udp.Options{DisableOffload: off}
			lo := netip.MustParseAddrPort("127.0.0.1:0")
			rx, err := udp.Listen(lo, opts)
			if err != nil {
				b.Fatal(err)
			}
			defer rx.Close()
			tx, err := udp.Listen(lo, opts)
			if err != nil {
				b.Fatal(err)
			}
			defer tx.Close()
			gso, gro := tx.Offload()
			b.Logf("gso=%v gro=%v", gso, gro)

			out := make([][]byte, batch)
			dsts := make([]netip.AddrPort, batch)
			for i := range out {
				out[i] = make([]byte, size)
				out[i][0] = byte(i)
				dsts[i] = rx.LocalAddr()
			}
			in := make([][]byte, rx.BatchSize())
			for i := range in {
				in[i] = make([]byte, 65535)
			}
			sizes := make([]int, len(in))
			srcs := make([]netip.AddrPort, len(in))
			reads := 0

			b.SetBytes(batch * size)
			b.ReportAllocs()
			for b.Loop() {
				if n, err := tx.WriteBatch(out, dsts, nil); n != batch || err != nil {
					b.Fatalf("WriteBatch = %d, %v", n, err)
				}
				for got := 0; got < batch; {
					n, err := rx.ReadBatch(in, sizes, srcs)
					if err != nil {
						b.Fatalf("ReadBatch: %v", err)
					}
					got += n
					reads++
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "datagrams/s")
			b.ReportMetric(float64(reads)/float64(b.N), "reads/op")
		})
	}
}
