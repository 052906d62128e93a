package bench_test

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/e2e"
)

// BenchmarkCompareEndpoints measures TCP throughput (iperf3) between two
// network namespaces attached as endpoints of one overlayd node (tun mode
// with gossip, in a third namespace): the router switches their packets
// locally, TUN to TUN, never through the underlay. Beside it, in the same
// run and between the same two namespaces, a veth pair: the kernel's own
// path between two namespaces, which is the limit. One stream and four;
// the runs interleave so that a change in the machine's load hits both
// alike. It prints both figures, their ratio and the daemon's CPU per
// Gbit/s (user + system time from /proc/PID/stat over the run).
//
// The veth pair keeps the kernel's defaults (checksum offload, TSO, GSO
// and GRO on; checked with ethtool -k and printed), so it is measured at
// its best; the endpoints' TUNs are as overlayd makes them (printed too).
//
// Root only; run with -benchtime 1x. Each iperf3 run lasts
// OVERLAYD_COMPARE_SECONDS (default 5); OVERLAYD_COMPARE_ROUNDS (default
// 1) repeats the sequence and reports medians. The in-process figure of
// the same switching is router's BenchmarkLocalSwitch.
func BenchmarkCompareEndpoints(b *testing.B) {
	e2e.RequireRoot(b, "iperf3", "ethtool", "ping")
	secs := envInt("OVERLAYD_COMPARE_SECONDS", 5)
	rounds := envInt("OVERLAYD_COMPARE_ROUNDS", 1)
	if _, err := e2e.Binary(); err != nil {
		b.Fatal(err)
	}
	streamCounts := []int{1, 4}
	for range b.N {
		load0 := loadavg()
		// h1 runs the node; h2 and h3 are the two namespaces (their eth0
		// on the lab's bridge is not used here).
		lab := e2e.NewLab(b, 3, 1500)
		h1, h2, h3 := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2]

		// The reference: a veth pair straight from h2 to h3.
		h2.Run("ip", "link", "add", "vp0", "type", "veth", "peer", "name", "vp1", "netns", h3.NS)
		h2.Run("ip", "addr", "add", "10.51.0.1/24", "dev", "vp0")
		h3.Run("ip", "addr", "add", "10.51.0.2/24", "dev", "vp1")
		h2.Run("ip", "link", "set", "vp0", "up")
		h3.Run("ip", "link", "set", "vp1", "up")
		vethOff := [2]offloads{readOffloads(b, h2, "vp0"), readOffloads(b, h3, "vp1")}
		for i, o := range vethOff {
			if !o.on("tx-checksumming") || !o.on("tx-tcp-segmentation") {
				b.Fatalf("veth end %d starts with %s: a veth's default is tx-checksumming and TSO on, and the comparison measures the defaults", i, o.summary())
			}
		}

		o := h1.StartOverlayd("--mode", "tun", "--listen", h1.Underlay.String()+":4789",
			"--gossip", h1.Underlay.String()+":7946", "--log-level", "warn")
		requireComm(b, o.Proc, "overlayd")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c := o.Client()
		if _, err := c.CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.50.0.0/24"}); err != nil {
			b.Fatal(err)
		}
		if _, err := c.JoinNetwork(ctx, "blue"); err != nil {
			b.Fatal(err)
		}
		var dst string
		var mtu int
		for _, h := range []*e2e.Host{h2, h3} {
			in, err := c.Attach(ctx, api.Attach{Name: h.Name, Network: "blue", Netns: "/var/run/netns/" + h.NS, IfName: "ep0"})
			if err != nil {
				b.Fatalf("attach %s: %v", h.Name, err)
			}
			dst, mtu = netip.MustParsePrefix(in.Addr).Addr().String(), in.MTU
		}
		cancel()

		paths := []struct {
			name, key, dst string
			devs           [2]string
			procs          []*e2e.Proc
			mtu            int
		}{
			{"veth pair", "veth", "10.51.0.2", [2]string{"vp0", "vp1"}, nil, linkMTU(b, h2, "vp0")},
			{"overlayd endpoints", "endpoints", dst, [2]string{"ep0", "ep0"}, []*e2e.Proc{o.Proc}, mtu},
		}
		for _, p := range paths {
			reach(b, h2, p.name, p.dst)
		}
		fmt.Printf("endpoints: TCP h2 → h3 (iperf3), two network namespaces: a veth pair, and endpoints of one overlayd node (in h1) switched locally; %d s per run, %d round(s), runs interleaved\n", secs, rounds)
		fmt.Printf("endpoints: machine: Linux %s, %d CPUs, load average before: %s\n", kernelRelease(), runtime.NumCPU(), load0)
		fmt.Printf("endpoints: offloads (ethtool -k), as the kernel and overlayd set them; this harness changes none:\n")
		for _, p := range paths {
			for i, h := range []*e2e.Host{h2, h3} {
				fmt.Printf("endpoints:   %-18s %s %-4s MTU %5d  %s\n", p.name, h.Name, p.devs[i], p.mtu, readOffloads(b, h, p.devs[i]).summary())
			}
		}

		gbps := make([][][]float64, len(paths)) // [path][streams index] per round
		cpu := make([][]float64, len(streamCounts))
		for pi := range paths {
			gbps[pi] = make([][]float64, len(streamCounts))
		}
		for r := range rounds {
			for si, streams := range streamCounts {
				for pi, p := range paths {
					g, cores, err := measured(b, pidsOf(p.procs), secs, func() (float64, error) { return h2.Iperf(h3, p.dst, secs, streams) })
					if err != nil {
						b.Fatalf("%s, %d stream(s): %v", p.name, streams, err)
					}
					gbps[pi][si] = append(gbps[pi][si], g)
					cpu[si] = append(cpu[si], cores...)
					if rounds > 1 {
						fmt.Printf("endpoints:   round %d, %d stream(s), %-18s %6.2f Gbit/s\n", r+1, streams, p.name, g)
					}
				}
			}
		}
		for i, h := range []*e2e.Host{h2, h3} {
			if d := vethOff[i].diff(readOffloads(b, h, paths[0].devs[i])); len(d) > 0 {
				b.Fatalf("%s: the veth's offloads changed during the runs: %v", h.Name, d)
			}
		}
		st, err := o.Status()
		if err != nil {
			b.Fatal(err)
		}
		if st.Traffic.Outbound.Packets != 0 || st.Traffic.Inbound.Packets != 0 {
			b.Errorf("the node sent %d and received %d underlay packets: the endpoints' traffic is to be switched locally",
				st.Traffic.Outbound.Packets, st.Traffic.Inbound.Packets)
		}

		fmt.Printf("endpoints: %-18s %14s %14s\n", "path", "1 stream", "4 streams")
		for pi, p := range paths {
			fmt.Printf("endpoints: %-18s %7.2f Gbit/s %7.2f Gbit/s\n", p.name, median(gbps[pi][0]), median(gbps[pi][1]))
		}
		ratio := func(si int) float64 { return median(gbps[1][si]) / median(gbps[0][si]) }
		fmt.Printf("endpoints: %-18s %6.2f×        %6.2f×\n", "endpoints / veth", ratio(0), ratio(1))
		fmt.Printf("endpoints: overlayd CPU, cores per Gbit/s: %.3f (1 stream), %.3f (4 streams); switched locally %d packets, underlay %d\n",
			median(cpu[0]), median(cpu[1]), st.Traffic.Local.Packets, st.Traffic.Outbound.Packets+st.Traffic.Inbound.Packets)
		fmt.Printf("endpoints: load average after: %s\n", loadavg())
		for pi, p := range paths {
			for si, streams := range streamCounts {
				b.ReportMetric(median(gbps[pi][si]), fmt.Sprintf("%s-P%d-Gbit/s", p.key, streams))
			}
		}
		for si, streams := range streamCounts {
			b.ReportMetric(ratio(si), fmt.Sprintf("endpoints/veth-P%d", streams))
			b.ReportMetric(median(cpu[si]), fmt.Sprintf("overlayd-P%d-cores/Gbit/s", streams))
		}
		lab.Close()
	}
}
