package bench_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/e2e"
)

// BenchmarkOverlayTCP is TCP throughput between two in-process nodes:
// netstack → router → VXLAN over loopback UDP → router → netstack. One op
// moves 4 MiB. The overlay MTU is set per case; 65485 is what a loopback
// underlay gives by default.
func BenchmarkOverlayTCP(b *testing.B) {
	for _, mtu := range []int{1450, 8950, 65485} {
		b.Run(fmt.Sprintf("mtu=%d", mtu), func(b *testing.B) {
			c := e2e.NewCluster(b, 2, e2e.ClusterOptions{Edit: func(_ int, cfg *config.Config) {
				cfg.MTU = mtu
				cfg.Underlay.MTU = mtu + 50
			}})
			ln, err := c.Nodes[1].Listen("tcp", ":9000")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					go func() { io.Copy(io.Discard, conn); conn.Close() }()
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			conn, err := c.Nodes[0].Dial(ctx, "tcp", c.Nodes[1].Addr().Addr().String()+":9000")
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			chunk := make([]byte, 4<<20)
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := conn.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			st := c.Status(b, 0)
			b.ReportMetric(float64(st.Traffic.Outbound.Bytes)/float64(max(st.Traffic.Outbound.Packets, 1)), "B/pkt")
		})
	}
}
