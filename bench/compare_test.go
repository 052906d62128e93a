package bench_test

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"testing"

	"github.com/overlayd/overlayd/e2e"
)

func iperf(b *testing.B, h1, h2 *e2e.Host, dst string, secs, streams int) float64 {
	b.Helper()
	gbps, err := h1.Iperf(h2, dst, secs, streams)
	if err != nil {
		b.Fatal(err)
	}
	return gbps
}

// BenchmarkCompareKernelVXLAN measures TCP throughput between the same two
// network namespaces, first through the kernel's vxlan devices, then
// through overlayd in tun mode, in one run, and reports both and their
// ratio. Root only; run with -benchtime 1x (make bench-compare).
// OVERLAYD_COMPARE_SECONDS sets each iperf3 run's length (default 5).
func BenchmarkCompareKernelVXLAN(b *testing.B) {
	e2e.RequireRoot(b, "iperf3", "ethtool")
	secs := 5
	if s, err := strconv.Atoi(os.Getenv("OVERLAYD_COMPARE_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	for _, streams := range []int{1, 4} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			for range b.N {
				lab := e2e.NewLab(b, 2, 1500)
				h1, h2 := lab.Hosts[0], lab.Hosts[1]

				h1.KernelVXLAN(43, netip.MustParsePrefix("10.201.1.1/16"), h2.Underlay, 1450)
				h2.KernelVXLAN(43, netip.MustParsePrefix("10.201.2.1/16"), h1.Underlay, 1450)
				kernel := iperf(b, h1, h2, "10.201.2.1", secs, streams)
				h1.Run("ip", "link", "del", "vx0")
				h2.Run("ip", "link", "del", "vx0")

				v1, v2 := h1.Underlay.String()+":4789", h2.Underlay.String()+":4789"
				h1.StartOverlayd("--mode", "tun", "--listen", v1, "--addr", "10.200.1.1/16", "--peer", "10.200.2.0/24@"+v2, "--log-level", "warn")
				h2.StartOverlayd("--mode", "tun", "--listen", v2, "--addr", "10.200.2.1/16", "--peer", "10.200.1.0/24@"+v1, "--log-level", "warn")
				ovl := iperf(b, h1, h2, "10.200.2.1", secs, streams)

				b.ReportMetric(kernel, "kernel-Gbit/s")
				b.ReportMetric(ovl, "overlayd-Gbit/s")
				b.ReportMetric(ovl/kernel, "ratio")
				fmt.Printf("compare (%d stream(s), %ds): kernel vxlan %.2f Gbit/s, overlayd tun %.2f Gbit/s, ratio %.2f\n",
					streams, secs, kernel, ovl, ovl/kernel)
				lab.Close()
			}
		})
	}
}
