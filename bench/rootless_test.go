package bench_test

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/e2e"
	"github.com/overlayd/overlayd/internal/testutil"
)

// rootlessPath is one way out of a rootless container in
// BenchmarkCompareRootless.
type rootlessPath struct {
	name  string
	key   string // for ReportMetric
	from  *e2e.Container
	dst   string
	dev   string // the container's interface, for its MTU
	procs []*e2e.UserProc
}

// BenchmarkCompareRootless measures TCP throughput (iperf3) out of
// rootless containers on one machine, everything run by an unprivileged
// user made for the run: container to container over overlayd (two
// nodes in netstack mode, VXLAN and gossip on loopback, each container
// attached with `overlayd attach` through the daemon's helper), beside
// container to host through the two user-mode networks rootless
// containers use today, which give only NAT to the host: slirp4netns
// (with its own defaults, MTU 1500, and with podman's, --mtu 65520) and
// pasta (its defaults: to the gateway address, which it maps to the
// host, through its tap path; and to the container's loopback, which it
// splices to the host's). The references are measured at their best:
// their default options, and for slirp4netns also podman's MTU, the
// ratio taken against the faster. Every path gets the median of the
// rounds (the best round is printed too: the user-mode networks' figures
// swing from run to run on a loaded machine), and the runs interleave (each round, each stream count, each
// path in turn) so that the machine's load hits all paths alike. It
// prints the table, the ratios and the CPU the user-mode processes used
// per Gbit/s.
//
// Root only (to make the user, the machine's namespace and to open
// /dev/net/tun to the user for the run); needs iperf3, slirp4netns and
// pasta (Debian's iperf3, slirp4netns and passt). Not in CI; run it with
//
//	go test -run '^$' -bench CompareRootless -benchtime 1x ./bench/
//
// Each iperf3 run lasts OVERLAYD_COMPARE_SECONDS (default 5);
// OVERLAYD_COMPARE_ROUNDS (default 3) repeats the sequence and reports
// medians.
func BenchmarkCompareRootless(b *testing.B) {
	secs := envInt("OVERLAYD_COMPARE_SECONDS", 5)
	rounds := envInt("OVERLAYD_COMPARE_ROUNDS", 3)
	streamCounts := []int{1, 4}
	for range b.N {
		load0 := loadavg()
		p := e2e.NewRootlessPair(b, "iperf3", "slirp4netns", "pasta")
		c1, c2 := p.Containers[0], p.Containers[1]
		c2.Start("iperf3", "-s", "-B", p.Addrs[1].String())
		// The host's server, for the NAT paths: on the machine's
		// loopback, before pasta starts (it forwards the ports bound
		// then).
		host := p.Start("iperf3", "-s", "-B", "127.0.0.1")
		waitListen(b, p, "127.0.0.1:5201", host)

		slirp := func(mtu string) (*e2e.Container, *e2e.UserProc) {
			c := p.Container()
			args := []string{"slirp4netns", "--configure"}
			if mtu != "" {
				args = append(args, "--mtu="+mtu)
			}
			proc := p.Start(append(args, fmt.Sprint(c.PID), "tap0")...)
			waitAddr(b, c, "tap0", "10.0.2.100/24", proc)
			return c, proc
		}
		s1, sp1 := slirp("")
		s2, sp2 := slirp("65520")
		q := p.Container()
		pasta := p.Start("pasta", "--config-net", "--foreground", "--quiet", fmt.Sprint(q.PID))
		waitAddr(b, q, "eth0", "192.0.2.1/24", pasta)

		paths := []*rootlessPath{
			{name: "overlayd, container → container", key: "overlayd", from: c1, dst: p.Addrs[1].String(), dev: "eth0",
				procs: []*e2e.UserProc{p.Nodes[0].UserProc, p.Nodes[1].UserProc}},
			{name: "slirp4netns (MTU 1500), → host", key: "slirp4netns", from: s1, dst: "10.0.2.2", dev: "tap0", procs: []*e2e.UserProc{sp1}},
			{name: "slirp4netns --mtu 65520, → host", key: "slirp4netns-65520", from: s2, dst: "10.0.2.2", dev: "tap0", procs: []*e2e.UserProc{sp2}},
			{name: "pasta, → host (gateway)", key: "pasta-gw", from: q, dst: "192.0.2.254", dev: "eth0", procs: []*e2e.UserProc{pasta}},
			{name: "pasta, → host (loopback)", key: "pasta-lo", from: q, dst: "127.0.0.1", dev: "eth0", procs: []*e2e.UserProc{pasta}},
		}
		comms := map[string]string{"overlayd": "overlayd", "slirp4netns": "slirp4netns", "slirp4netns-65520": "slirp4netns"}
		for _, path := range paths {
			for _, pr := range path.procs {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pr.Cmd.Process.Pid))
				want, ok := comms[path.key]
				if got := strings.TrimSpace(string(comm)); ok && got != want || !ok && !strings.HasPrefix(got, "pas") {
					b.Fatalf("%s: pid %d is %q, not the program: its CPU time would be the wrong process's", path.name, pr.Cmd.Process.Pid, got)
				}
			}
		}

		gbps := make([][][]float64, len(paths)) // [path][streams index][round]
		cpu := make([][][]float64, len(paths))  // cores per Gbit/s, all the path's processes added
		for pi := range paths {
			gbps[pi] = make([][]float64, len(streamCounts))
			cpu[pi] = make([][]float64, len(streamCounts))
		}
		fmt.Printf("compare-rootless: TCP out of rootless containers (iperf3), run by an unprivileged user, %d s per run, %d round(s), runs interleaved\n", secs, rounds)
		fmt.Printf("compare-rootless: machine: Linux %s, %d CPUs, load average before: %s\n", kernelRelease(), runtime.NumCPU(), load0)
		for r := range rounds {
			for si, streams := range streamCounts {
				for pi, path := range paths {
					pids := make([]int, len(path.procs))
					for i, pr := range path.procs {
						pids[i] = pr.Cmd.Process.Pid
					}
					g, cores, err := measured(b, pids, secs, func() (float64, error) { return path.from.Iperf(path.dst, secs, streams) })
					if err != nil {
						b.Fatalf("%s, %d stream(s): %v", path.name, streams, err)
					}
					gbps[pi][si] = append(gbps[pi][si], g)
					cpu[pi][si] = append(cpu[pi][si], sum(cores))
					if rounds > 1 {
						fmt.Printf("compare-rootless:   round %d, %d stream(s), %-32s %6.2f Gbit/s\n", r+1, streams, path.name, g)
					}
				}
			}
		}
		med := func(v []float64) float64 { return median(append([]float64(nil), v...)) }
		best := func(v []float64) float64 { return slices.Max(v) }
		fmt.Printf("compare-rootless: medians (best round in brackets), Gbit/s\n")
		fmt.Printf("compare-rootless: %-32s %5s %15s %15s %s\n", "path", "MTU", "1 stream", "4 streams", "CPU (cores per Gbit/s, 1 / 4 streams)")
		for pi, path := range paths {
			// ip -o link: "2: eth0: <...> mtu 1500 qdisc ..."
			_, mtu, _ := strings.Cut(path.from.Run("ip", "-o", "link", "show", "dev", path.dev), " mtu ")
			mtu, _, _ = strings.Cut(mtu, " ")
			fmt.Printf("compare-rootless: %-32s %5s %6.2f (%6.2f) %6.2f (%6.2f) %.3f / %.3f\n", path.name, mtu,
				med(gbps[pi][0]), best(gbps[pi][0]), med(gbps[pi][1]), best(gbps[pi][1]), med(cpu[pi][0]), med(cpu[pi][1]))
		}
		fmt.Printf("compare-rootless:   (overlayd's CPU is both daemons'; the container's own kernel work is billed to no process)\n")
		faster := func(keys ...string) func(si int) (float64, string) {
			return func(si int) (float64, string) {
				var g float64
				var name string
				for pi, path := range paths {
					for _, k := range keys {
						if path.key == k && med(gbps[pi][si]) > g {
							g, name = med(gbps[pi][si]), path.name
						}
					}
				}
				return g, name
			}
		}
		for _, ref := range []struct {
			label string
			best  func(int) (float64, string)
		}{
			{"slirp4netns (its better setting)", faster("slirp4netns", "slirp4netns-65520")},
			{"pasta (gateway)", faster("pasta-gw")},
			{"pasta (loopback)", faster("pasta-lo")},
		} {
			var cols []string
			for si, streams := range streamCounts {
				g, _ := ref.best(si)
				cols = append(cols, fmt.Sprintf("%5.2f× (%d stream(s))", med(gbps[0][si])/g, streams))
			}
			fmt.Printf("compare-rootless: overlayd / %-32s %s\n", ref.label, strings.Join(cols, " "))
		}
		fmt.Printf("compare-rootless: load average after: %s\n", loadavg())
		for pi, path := range paths {
			for si, streams := range streamCounts {
				b.ReportMetric(med(gbps[pi][si]), fmt.Sprintf("%s-P%d-Gbit/s", path.key, streams))
			}
		}
	}
}

// waitListen waits until something listens on the TCP addr in the
// machine's namespace.
func waitListen(b *testing.B, p *e2e.RootlessPair, addr string, proc *e2e.UserProc) {
	b.Helper()
	testutil.Eventually(b, 10*time.Second, "a listener on "+addr, func() error {
		if proc.Exited() {
			b.Fatalf("the server exited: %s", proc.Output())
		}
		if out, err := p.Try("ss", "-Htln", "src", addr); err != nil || !strings.Contains(out, addr) {
			return fmt.Errorf("ss: %q, %v", out, err)
		}
		return nil
	})
}

// waitAddr waits until the container's dev has addr (a user-mode
// network configured it).
func waitAddr(b *testing.B, c *e2e.Container, dev, addr string, proc *e2e.UserProc) {
	b.Helper()
	testutil.Eventually(b, 10*time.Second, fmt.Sprintf("%s on %s in the container", addr, dev), func() error {
		if proc.Exited() {
			b.Fatalf("%s exited: %s", proc.Cmd.Args, proc.Output())
		}
		if out, err := c.Try("ip", "-o", "-4", "addr", "show", "dev", dev); err != nil || !strings.Contains(out, addr) {
			return fmt.Errorf("ip addr: %q, %v", out, err)
		}
		return nil
	})
}
