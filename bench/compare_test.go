package bench_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/e2e"
)

// The paths BenchmarkCompareTunnels measures, in the order of its table.
const (
	pathVeth = iota
	pathKernel
	pathOverlayd
	pathWireguard
	pathVeth6
	pathKernel6
	pathOverlayd6
	numPaths
)

// tunnelPath is one way from h1 to h2 in the comparison's lab.
type tunnelPath struct {
	name  string
	key   string      // metric name
	dst   string      // h2's address on this path
	devs  [2]string   // the path's device on h1 and on h2
	procs []*e2e.Proc // userspace processes doing its work (none: the kernel)
	mtu   int         // read from h1's device once it is up
}

// offloads is `ethtool -k DEV` as feature → "on"/"off" (with " [fixed]").
type offloads map[string]string

// readOffloads reads dev's offload features in h.
func readOffloads(b *testing.B, h *e2e.Host, dev string) offloads {
	b.Helper()
	o := offloads{}
	for _, line := range strings.Split(h.Run("ethtool", "-k", dev), "\n") {
		name, val, ok := strings.Cut(line, ":")
		// "Features for eth0:" has no value; every feature line has one.
		if val = strings.TrimSpace(val); ok && val != "" {
			o[strings.TrimSpace(name)] = val
		}
	}
	if len(o) == 0 || o["tx-checksumming"] == "" {
		b.Fatalf("%s: ethtool -k %s: no tx-checksumming line", h.Name, dev)
	}
	return o
}

// on reports whether feature f is on.
func (o offloads) on(f string) bool { return strings.HasPrefix(o[f], "on") }

// summary is the features that decide a tunnel's speed: transmit
// checksum offload, TSO, GSO and GRO. TSO is tx-tcp-segmentation: the
// group line tcp-segmentation-offload also says "on" when only one of its
// members is (Linux 6.18's tx-tcp-accecn-segmentation stays on after
// `ethtool -K dev tx off`).
func (o offloads) summary() string {
	var parts []string
	for _, f := range []struct{ name, short string }{
		{"tx-checksumming", "tx-csum"},
		{"tx-tcp-segmentation", "tso"},
		{"generic-segmentation-offload", "gso"},
		{"generic-receive-offload", "gro"},
	} {
		v := "off"
		if o.on(f.name) {
			v = "on"
		}
		parts = append(parts, f.short+" "+v)
	}
	return strings.Join(parts, ", ")
}

// diff lists the features whose state differs between o and p.
func (o offloads) diff(p offloads) []string {
	var d []string
	for f, v := range o {
		if p[f] != v {
			d = append(d, fmt.Sprintf("%s %q → %q", f, v, p[f]))
		}
	}
	for f, v := range p {
		if _, ok := o[f]; !ok {
			d = append(d, fmt.Sprintf("%s (new) %q", f, v))
		}
	}
	sort.Strings(d)
	return d
}

// linkMTU reads dev's MTU in h.
func linkMTU(b *testing.B, h *e2e.Host, dev string) int {
	b.Helper()
	var links []struct {
		MTU int `json:"mtu"`
	}
	out := h.Run("ip", "-j", "link", "show", "dev", dev)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		b.Fatalf("%s: ip -j link show dev %s: %v\n%s", h.Name, dev, err, out)
	}
	return links[0].MTU
}

// kernelVXLAN gives h a kernel vxlan device dev to remote, over the
// underlay of remote's family with the MTU that leaves (1450 over IPv4,
// 1430 over IPv6). Unlike e2e.Host.KernelVXLAN it leaves eth0's offloads
// alone: between two kernels nothing needs turning off (only a kernel vxlan
// sending to a userspace receiver over a veth needs `ethtool -K eth0 tx
// off`, see e2e's interop tests).
func kernelVXLAN(h *e2e.Host, dev string, vni, port int, addr string, remote netip.Addr) {
	local, mtu, nodad := h.Underlay, "1450", []string(nil)
	if remote.Is6() {
		local, mtu = h.Underlay6, "1430"
	}
	if netip.MustParsePrefix(addr).Addr().Is6() {
		nodad = []string{"nodad"}
	}
	h.Run("ip", "link", "add", dev, "type", "vxlan", "id", strconv.Itoa(vni), "dstport", strconv.Itoa(port),
		"remote", remote.String(), "local", local.String(), "dev", "eth0")
	h.Run("ip", "link", "set", dev, "mtu", mtu)
	h.Run(append([]string{"ip", "addr", "add", addr, "dev", dev}, nodad...)...)
	h.Run("ip", "link", "set", dev, "up")
}

// requireComm checks that p is the program named comm (not the ip netns
// exec or env in front of it), so that its CPU time is the program's.
func requireComm(b *testing.B, p *e2e.Proc, comm string) {
	b.Helper()
	got, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.Cmd.Process.Pid))
	if err != nil || strings.TrimSpace(string(got)) != comm {
		b.Fatalf("pid %d is %q (%v), want %s: its CPU time would be the wrong process's", p.Cmd.Process.Pid, got, err, comm)
	}
}

// reach pings dst from h until it answers (a tunnel's first packet may set
// it up: wireguard's handshake), so that no iperf3 run measures setup.
func reach(b *testing.B, h *e2e.Host, name, dst string) {
	b.Helper()
	var out string
	var err error
	for range 10 {
		if out, err = h.Try("ping", "-c", "1", "-W", "2", dst); err == nil {
			return
		}
	}
	b.Fatalf("%s: %s: %s does not answer ping: %v\n%s", h.Name, name, dst, err, out)
}

// measured runs one iperf3 run and returns its Gbit/s and the CPU each of
// the processes pids used over it, in cores per Gbit/s (user + system time
// from /proc/PID/stat over the run / Gbit moved).
func measured(b *testing.B, pids []int, secs int, run func() (float64, error)) (float64, []float64, error) {
	c0 := make([]time.Duration, len(pids))
	for i, pid := range pids {
		c0[i] = cpuTime(b, pid)
	}
	g, err := run()
	if err != nil {
		return 0, nil, err
	}
	cores := make([]float64, len(pids))
	for i, pid := range pids {
		cores[i] = (cpuTime(b, pid) - c0[i]).Seconds() / (g * float64(secs))
	}
	return g, cores, nil
}

// pidsOf are the processes' IDs.
func pidsOf(procs []*e2e.Proc) []int {
	out := make([]int, len(procs))
	for i, p := range procs {
		out[i] = p.Cmd.Process.Pid
	}
	return out
}

// sum adds vs up.
func sum(vs []float64) float64 {
	t := 0.0
	for _, v := range vs {
		t += v
	}
	return t
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(data))
}

func kernelRelease() string {
	data, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(data))
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkCompareTunnels measures TCP throughput (iperf3, h1 → h2) between
// the same two network namespaces on one veth bridge, in one run, along seven
// paths: the veth itself (no tunnel), a pair of kernel vxlan devices,
// two overlayd nodes in tun mode, and two wireguard-go daemons built from the
// golang.zx2c4.com/wireguard version in our go.mod, all over IPv4; and with
// IPv6 inside and under, the veth, a kernel vxlan pair and an overlayd pair;
// one stream and four.
// It prints a table with the ratios against the kernel and against
// wireguard-go, and the CPU the userspace daemons used per Gbit/s (user +
// system time from /proc/PID/stat over the run, both ends added; the
// kernel's vxlan works in softirq context, which no process is billed for).
//
// No offload is changed anywhere: the veths keep their defaults (checked
// with ethtool -k before and after, and printed), so the kernel is measured
// at its best. All four paths are set up at once and the runs interleave
// (for each stream count, each path in turn), so that a change in the
// machine's load hits every path alike.
//
// Root only; run with -benchtime 1x (make bench-compare). Each iperf3 run
// lasts OVERLAYD_COMPARE_SECONDS (default 5); OVERLAYD_COMPARE_ROUNDS
// (default 1) repeats the whole sequence and reports medians.
func BenchmarkCompareTunnels(b *testing.B) {
	e2e.RequireRoot(b, "iperf3", "ethtool", "ping")
	secs := envInt("OVERLAYD_COMPARE_SECONDS", 5)
	rounds := envInt("OVERLAYD_COMPARE_ROUNDS", 1)
	wgBin, wgVersion := buildWireguardGo(b)
	if _, err := e2e.Binary(); err != nil {
		b.Fatal(err)
	}
	streamCounts := []int{1, 4}
	for range b.N {
		load0 := loadavg()
		lab := e2e.NewLab(b, 2, 1500)
		h1, h2 := lab.Hosts[0], lab.Hosts[1]
		hosts := []*e2e.Host{h1, h2}

		// The veths' offloads as the kernel made them, before any tunnel.
		var eth0 [2]offloads
		for i, h := range hosts {
			eth0[i] = readOffloads(b, h, "eth0")
			if !eth0[i].on("tx-checksumming") || !eth0[i].on("tx-tcp-segmentation") {
				b.Fatalf("%s: eth0 (veth) starts with %s: a veth's default is tx-checksumming and TSO on, and the comparison measures the defaults", h.Name, eth0[i].summary())
			}
		}

		paths := make([]*tunnelPath, numPaths)
		paths[pathVeth] = &tunnelPath{name: "veth, no tunnel", key: "veth", dst: h2.Underlay.String(), devs: [2]string{"eth0", "eth0"}}

		kernelVXLAN(h1, "vx0", 43, 8472, "10.201.1.1/16", h2.Underlay)
		kernelVXLAN(h2, "vx0", 43, 8472, "10.201.2.1/16", h1.Underlay)
		paths[pathKernel] = &tunnelPath{name: "kernel vxlan", key: "kernel", dst: "10.201.2.1", devs: [2]string{"vx0", "vx0"}}

		v1, v2 := h1.Underlay.String()+":4789", h2.Underlay.String()+":4789"
		o1 := h1.StartOverlayd("--mode", "tun", "--listen", v1, "--addr", "10.200.1.1/16", "--peer", "10.200.2.0/24@"+v2, "--log-level", "warn")
		o2 := h2.StartOverlayd("--mode", "tun", "--listen", v2, "--addr", "10.200.2.1/16", "--peer", "10.200.1.0/24@"+v1, "--log-level", "warn")
		requireComm(b, o1.Proc, "overlayd")
		requireComm(b, o2.Proc, "overlayd")
		paths[pathOverlayd] = &tunnelPath{name: "overlayd tun", key: "overlayd", dst: "10.200.2.1", devs: [2]string{"ovl0", "ovl0"}, procs: []*e2e.Proc{o1.Proc, o2.Proc}}

		// The UAPI socket directory is shared by all namespaces: names
		// unique to this lab (ovt1234-1-h1 → wg1234-1-h1).
		wg1, wg2 := "wg"+strings.TrimPrefix(h1.NS, "ovt"), "wg"+strings.TrimPrefix(h2.NS, "ovt")
		k1, k2 := newWGKey(b), newWGKey(b)
		w1 := startWireguardGo(b, wgBin, h1, wg1, "10.202.0.1/24", k1, 51820, k2, h2.Underlay.String()+":51820", "10.202.0.2/32")
		w2 := startWireguardGo(b, wgBin, h2, wg2, "10.202.0.2/24", k2, 51820, k1, h1.Underlay.String()+":51820", "10.202.0.1/32")
		requireComm(b, w1, "wireguard-go")
		requireComm(b, w2, "wireguard-go")
		paths[pathWireguard] = &tunnelPath{name: "wireguard-go", key: "wggo", dst: "10.202.0.2", devs: [2]string{wg1, wg2}, procs: []*e2e.Proc{w1, w2}}

		// IPv6 inside and under: the veth's IPv6 addresses, a kernel vxlan
		// pair over them, and a second overlayd pair (its own TUN, port
		// and control socket) with IPv6 inside, over the IPv6 underlay.
		paths[pathVeth6] = &tunnelPath{name: "veth IPv6", key: "veth6", dst: h2.Underlay6.String(), devs: [2]string{"eth0", "eth0"}}
		kernelVXLAN(h1, "vx6", 44, 8473, "fd00:201::1/64", h2.Underlay6)
		kernelVXLAN(h2, "vx6", 44, 8473, "fd00:201::2/64", h1.Underlay6)
		paths[pathKernel6] = &tunnelPath{name: "kernel vxlan 6in6", key: "kernel6", dst: "fd00:201::2", devs: [2]string{"vx6", "vx6"}}
		u1, u2 := fmt.Sprintf("[%s]:4790", h1.Underlay6), fmt.Sprintf("[%s]:4790", h2.Underlay6)
		o61 := h1.StartOverlayd("--mode", "tun", "--tun-name", "ovl6", "--listen", u1, "--addr", "fd00:200::1/64", "--peer", "fd00:200::2/128@"+u2, "--log-level", "warn")
		o62 := h2.StartOverlayd("--mode", "tun", "--tun-name", "ovl6", "--listen", u2, "--addr", "fd00:200::2/64", "--peer", "fd00:200::1/128@"+u1, "--log-level", "warn")
		requireComm(b, o61.Proc, "overlayd")
		requireComm(b, o62.Proc, "overlayd")
		paths[pathOverlayd6] = &tunnelPath{name: "overlayd tun 6in6", key: "overlayd6", dst: "fd00:200::2", devs: [2]string{"ovl6", "ovl6"}, procs: []*e2e.Proc{o61.Proc, o62.Proc}}

		for _, p := range paths {
			p.mtu = linkMTU(b, h1, p.devs[0])
			reach(b, h1, p.name, p.dst)
		}

		fmt.Printf("compare: TCP h1 → h2 (iperf3), two network namespaces on one veth bridge (underlay MTU 1500), %d s per run, %d round(s), runs interleaved\n", secs, rounds)
		fmt.Printf("compare: machine: Linux %s, %d CPUs, load average before: %s\n", kernelRelease(), runtime.NumCPU(), load0)
		fmt.Printf("compare: wireguard-go built from %s %s (our go.mod)\n", wireguardModule, wgVersion)
		fmt.Printf("compare: offloads (ethtool -k), as the kernel and the daemons set them; this harness changes none:\n")
		for _, p := range paths {
			for i, h := range hosts {
				fmt.Printf("compare:   %-18s %s %-13s %s\n", p.name, h.Name, p.devs[i], readOffloads(b, h, p.devs[i]).summary())
			}
		}
		checkEth0 := func(when string) {
			for i, h := range hosts {
				if d := eth0[i].diff(readOffloads(b, h, "eth0")); len(d) > 0 {
					b.Fatalf("%s: eth0's offloads changed %s: %s", h.Name, when, strings.Join(d, "; "))
				}
			}
		}
		checkEth0("while the tunnels were set up")

		// gbps[path][streams index] per round, and cpu[path][streams
		// index][process] per round in cores per Gbit/s (CPU seconds per
		// Gbit sent).
		gbps := make([][][]float64, numPaths)
		cpu := make([][][][]float64, numPaths)
		for pi, p := range paths {
			gbps[pi] = make([][]float64, len(streamCounts))
			cpu[pi] = make([][][]float64, len(streamCounts))
			for si := range streamCounts {
				cpu[pi][si] = make([][]float64, len(p.procs))
			}
		}
		for r := range rounds {
			for si, streams := range streamCounts {
				for pi, p := range paths {
					g, cores, err := measured(b, pidsOf(p.procs), secs, func() (float64, error) { return h1.Iperf(h2, p.dst, secs, streams) })
					if err != nil {
						b.Fatalf("%s, %d stream(s): %v", p.name, streams, err)
					}
					gbps[pi][si] = append(gbps[pi][si], g)
					for i, c := range cores {
						cpu[pi][si][i] = append(cpu[pi][si][i], c)
					}
					if rounds > 1 {
						fmt.Printf("compare:   round %d, %d stream(s), %-18s %6.2f Gbit/s\n", r+1, streams, p.name, g)
					}
				}
			}
		}
		checkEth0("during the runs")
		load1 := loadavg()

		med := func(v []float64) float64 { return median(append([]float64(nil), v...)) }
		fmt.Printf("compare: %-18s %5s %14s %14s\n", "path", "MTU", "1 stream", "4 streams")
		for pi, p := range paths {
			fmt.Printf("compare: %-18s %5d %7.2f Gbit/s %7.2f Gbit/s\n", p.name, p.mtu, med(gbps[pi][0]), med(gbps[pi][1]))
		}
		ratio := func(a, c int, si int) float64 { return med(gbps[a][si]) / med(gbps[c][si]) }
		for _, rr := range []struct {
			label string
			a, c  int
		}{
			{"overlayd tun / kernel vxlan", pathOverlayd, pathKernel},
			{"overlayd tun / wireguard-go", pathOverlayd, pathWireguard},
			{"kernel vxlan / veth", pathKernel, pathVeth},
			{"overlayd tun / veth", pathOverlayd, pathVeth},
			{"overlayd 6in6 / kernel 6in6", pathOverlayd6, pathKernel6},
			{"overlayd 6in6 / wireguard-go", pathOverlayd6, pathWireguard},
			{"kernel 6in6 / veth IPv6", pathKernel6, pathVeth6},
		} {
			fmt.Printf("compare: %-28s %5.2f× (1 stream) %5.2f× (4 streams)\n", rr.label, ratio(rr.a, rr.c, 0), ratio(rr.a, rr.c, 1))
		}
		fmt.Printf("compare: CPU of the daemons, cores per Gbit/s (user+system time from /proc/PID/stat over the run / Gbit sent; h1 sends, h2 receives):\n")
		for pi, p := range paths {
			if len(p.procs) == 0 {
				continue
			}
			var cols []string
			for si, streams := range streamCounts {
				var sum float64
				var ends []string
				for i := range p.procs {
					c := med(cpu[pi][si][i])
					sum += c
					ends = append(ends, fmt.Sprintf("%s %.3f", hosts[i].Name, c))
				}
				cols = append(cols, fmt.Sprintf("%d stream(s): %.3f both ends (%s)", streams, sum, strings.Join(ends, " + ")))
			}
			fmt.Printf("compare:   %-18s %s\n", p.name, strings.Join(cols, "; "))
		}
		fmt.Printf("compare:   (veth and kernel vxlan: the kernel's work runs in softirq context, billed to no process)\n")
		fmt.Printf("compare: load average after: %s\n", load1)

		for pi, p := range paths {
			for si, streams := range streamCounts {
				b.ReportMetric(med(gbps[pi][si]), fmt.Sprintf("%s-P%d-Gbit/s", p.key, streams))
			}
		}
		for si, streams := range streamCounts {
			b.ReportMetric(ratio(pathOverlayd, pathKernel, si), fmt.Sprintf("overlayd/kernel-P%d", streams))
			b.ReportMetric(ratio(pathOverlayd, pathWireguard, si), fmt.Sprintf("overlayd/wggo-P%d", streams))
			b.ReportMetric(med(cpu[pathOverlayd][si][0])+med(cpu[pathOverlayd][si][1]), fmt.Sprintf("overlayd-P%d-cores/Gbit/s", streams))
			b.ReportMetric(ratio(pathOverlayd6, pathKernel6, si), fmt.Sprintf("overlayd6/kernel6-P%d", streams))
		}
		lab.Close()
	}
}
