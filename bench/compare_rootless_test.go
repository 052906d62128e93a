package bench_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/e2e"
	"github.com/overlayd/overlayd/internal/testutil"
)

// wgNetstackPairMain is the reference of BenchmarkCompareRootlessPair:
// wireguard-go's own netstack (golang.zx2c4.com/wireguard/tun/netstack,
// gVisor with its defaults) on both ends of a WireGuard tunnel, in one
// process, with the same two front doors as overlayd's path: a host
// listener whose connections are dialled through netstack 1 to netstack
// 2's address, where a listener splices each to the target on the host.
// The tunnel runs over loopback UDP. It prints "ready" once it listens.
const wgNetstackPairMain = `package main

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"
)

func key() (priv, pub string) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	return hex.EncodeToString(k.Bytes()), hex.EncodeToString(k.PublicKey().Bytes())
}

func node(addr, peer netip.Addr, mtu, port, peerPort int, priv, peerPub string) *netstack.Net {
	tun, tnet, err := netstack.CreateNetTUN([]netip.Addr{addr}, nil, mtu)
	if err != nil {
		log.Fatal(err)
	}
	dev := device.NewDevice(tun, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, ""))
	if err := dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=%d\npublic_key=%s\nendpoint=127.0.0.1:%d\nallowed_ip=%s/32\n",
		priv, port, peerPub, peerPort, peer)); err != nil {
		log.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		log.Fatal(err)
	}
	return tnet
}

type closeWriter interface{ CloseWrite() error }

func pipe(dst, src net.Conn, done chan<- struct{}) {
	io.Copy(dst, src)
	if cw, ok := dst.(closeWriter); ok {
		cw.CloseWrite()
	}
	done <- struct{}{}
}

func serve(ln net.Listener, dial func() (net.Conn, error)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			d, err := dial()
			if err != nil {
				log.Print(err)
				return
			}
			defer d.Close()
			done := make(chan struct{}, 2)
			go pipe(d, c, done)
			go pipe(c, d, done)
			<-done
			<-done
		}()
	}
}

func main() {
	mtu := flag.Int("mtu", 1420, "the netstacks' MTU")
	listen := flag.String("listen", "127.0.0.1:5302", "the host listener (the forward door)")
	target := flag.String("target", "127.0.0.1:5202", "where netstack 2's listener splices to (the expose door)")
	flag.Parse()
	a1, a2 := netip.MustParseAddr("10.203.0.1"), netip.MustParseAddr("10.203.0.2")
	priv1, pub1 := key()
	priv2, pub2 := key()
	n1 := node(a1, a2, *mtu, 51821, 51822, priv1, pub2)
	n2 := node(a2, a1, *mtu, 51822, 51821, priv2, pub1)
	far := netip.AddrPortFrom(a2, 5201)
	ln2, err := n2.ListenTCPAddrPort(far)
	if err != nil {
		log.Fatal(err)
	}
	go serve(ln2, func() (net.Conn, error) { return net.Dial("tcp", *target) })
	ln1, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("ready")
	serve(ln1, func() (net.Conn, error) { return n1.DialContextTCPAddrPort(context.Background(), far) })
}
`

// buildWGNetstackPair builds wgNetstackPairMain against the
// golang.zx2c4.com/wireguard version in our go.mod, in a scratch module
// as buildWireguardGo does, and returns its path and that version.
func buildWGNetstackPair(b *testing.B) (bin, version string) {
	b.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", wireguardModule).CombinedOutput()
	if err != nil {
		b.Fatalf("go list -m %s: %v\n%s", wireguardModule, err, out)
	}
	version = strings.TrimSpace(string(out))
	dir := b.TempDir()
	mod := fmt.Sprintf("module overlayd.bench/wgnetstack\n\ngo 1.23\n\nrequire %s %s\n", wireguardModule, version)
	for name, data := range map[string]string{"go.mod": mod, "main.go": wgNetstackPairMain} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	bin = filepath.Join(dir, "wgnetstack")
	cmd := exec.Command("go", "build", "-mod=mod", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build the wireguard-go netstack pair (wireguard %s, from go.mod): %v\n%s", version, err, out)
	}
	return bin, version
}

// iperfTo runs an iperf3 client in h to 127.0.0.1:port (a forward door)
// for secs seconds with streams streams and returns the received Gbit/s.
// It retries while the path is not up yet (iperf3 says so in "error").
func iperfTo(h *e2e.Host, port, secs, streams int) (float64, error) {
	g, out, err := e2e.IperfClient(h.Try, secs, streams, "127.0.0.1", "-p", strconv.Itoa(port))
	if err != nil {
		return 0, fmt.Errorf("iperf3 → 127.0.0.1:%d measured nothing: %v\n%s", port, err, out)
	}
	return g, nil
}

// pairPath is one of BenchmarkCompareRootlessPair's two paths.
type pairPath struct {
	name  string
	key   string
	host  *e2e.Host
	port  int // the forward door on host's loopback
	mtu   int
	procs []*e2e.Proc
}

// BenchmarkCompareRootlessPair measures TCP throughput (iperf3) over
// overlayd's rootless path between two nodes in netstack mode, each in a
// network namespace of a lab whose underlay (a veth bridge) has MTU 1500:
// iperf3 → h1's forward door (127.0.0.1:5301) → h1's netstack → VXLAN →
// h2's netstack → h2's expose door → iperf3 on h2's 127.0.0.1:5201. The
// reference, in the same run, is wireguard-go's netstack pair with the
// same two doors (wgNetstackPairMain: one process, MTU 1420, its
// defaults), built from the wireguard version in our go.mod. The runs
// interleave (each round, each stream count, each path in turn); it
// prints the medians (best round in brackets), the ratio, and the CPU the
// daemons used per Gbit/s (user+system time from /proc/PID/stat, both
// overlayd nodes added; the reference's one process).
//
// Root only (namespaces); run with make bench-compare. Each iperf3 run
// lasts OVERLAYD_COMPARE_SECONDS (default 5); OVERLAYD_COMPARE_ROUNDS
// (default 1) repeats the sequence.
func BenchmarkCompareRootlessPair(b *testing.B) {
	e2e.RequireRoot(b, "iperf3")
	secs := envInt("OVERLAYD_COMPARE_SECONDS", 5)
	rounds := envInt("OVERLAYD_COMPARE_ROUNDS", 1)
	wgBin, wgVersion := buildWGNetstackPair(b)
	if _, err := e2e.Binary(); err != nil {
		b.Fatal(err)
	}
	streamCounts := []int{1, 4}
	for range b.N {
		load0 := loadavg()
		lab := e2e.NewLab(b, 2, 1500)
		h1, h2 := lab.Hosts[0], lab.Hosts[1]
		state := b.TempDir()
		node := func(h *e2e.Host, flags ...string) *e2e.Overlayd {
			o := h.StartOverlayd(append([]string{"--mode", "netstack", "--mtu", "1450", "--log-level", "warn",
				"--listen", h.Underlay.String() + ":4789", "--gossip", h.Underlay.String() + ":7946",
				"--state-dir", filepath.Join(state, h.Name)}, flags...)...)
			requireComm(b, o.Proc, "overlayd")
			return o
		}
		ctx := context.Background()
		h2.Start("iperf3", "-s", "-B", "127.0.0.1", "-p", "5201")
		o2 := node(h2, "--expose", "perf.blue:5201/tcp=127.0.0.1:5201")
		if _, err := o2.Client().CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.230.0.0/24"}); err != nil {
			b.Fatal(err)
		}
		ni, err := o2.Client().JoinNetwork(ctx, "blue")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := o2.Client().CreateService(ctx, api.CreateService{Name: "perf", Network: "blue", Ports: []string{"5201/tcp"}}); err != nil {
			b.Fatal(err)
		}
		addr2, _, _ := strings.Cut(ni.Addr, "/")
		o1 := node(h1, "--join", h2.Underlay.String()+":7946", "--forward", "127.0.0.1:5301="+addr2+":5201")
		testutil.Eventually(b, 20*time.Second, "h1 joins blue", func() error {
			_, err := o1.Client().JoinNetwork(ctx, "blue")
			return err
		})

		h1.Start("iperf3", "-s", "-B", "127.0.0.1", "-p", "5202")
		wg := h1.Start(wgBin, "-mtu", "1420", "-listen", "127.0.0.1:5302", "-target", "127.0.0.1:5202")
		wg.WaitOutput(b, 15*time.Second, "ready")
		requireComm(b, wg, "wgnetstack")

		paths := []*pairPath{
			{name: "overlayd rootless pair", key: "overlayd", host: h1, port: 5301, mtu: 1450, procs: []*e2e.Proc{o1.Proc, o2.Proc}},
			{name: "wireguard-go netstack pair", key: "wgnetstack", host: h1, port: 5302, mtu: 1420, procs: []*e2e.Proc{wg}},
		}
		fmt.Printf("compare-pair: TCP through two front doors and two netstacks (iperf3 → forward → netstack → tunnel → netstack → expose → iperf3), %d s per run, %d round(s), runs interleaved\n", secs, rounds)
		fmt.Printf("compare-pair: machine: Linux %s, %d CPUs, load average before: %s\n", kernelRelease(), runtime.NumCPU(), load0)
		fmt.Printf("compare-pair: overlayd: two nodes in netstack mode in two namespaces, VXLAN over a veth bridge with MTU 1500; wireguard-go (%s %s, our go.mod): its tun/netstack pair in one process over loopback UDP\n", wireguardModule, wgVersion)

		gbps := make([][][]float64, len(paths)) // [path][streams index][round]
		cpu := make([][][]float64, len(paths))  // cores per Gbit/s, the path's processes added
		for pi := range paths {
			gbps[pi] = make([][]float64, len(streamCounts))
			cpu[pi] = make([][]float64, len(streamCounts))
		}
		for r := range rounds {
			for si, streams := range streamCounts {
				for pi, p := range paths {
					g, cores, err := measured(b, pidsOf(p.procs), secs, func() (float64, error) { return iperfTo(p.host, p.port, secs, streams) })
					if err != nil {
						b.Fatalf("%s, %d stream(s): %v", p.name, streams, err)
					}
					gbps[pi][si] = append(gbps[pi][si], g)
					cpu[pi][si] = append(cpu[pi][si], sum(cores))
					if rounds > 1 {
						fmt.Printf("compare-pair:   round %d, %d stream(s), %-28s %6.2f Gbit/s\n", r+1, streams, p.name, g)
					}
				}
			}
		}
		med := func(v []float64) float64 { return median(v) }
		fmt.Printf("compare-pair: medians (best round in brackets), Gbit/s\n")
		fmt.Printf("compare-pair: %-28s %5s %15s %15s %s\n", "path", "MTU", "1 stream", "4 streams", "CPU (cores per Gbit/s, 1 / 4 streams)")
		for pi, p := range paths {
			fmt.Printf("compare-pair: %-28s %5d %6.2f (%6.2f) %6.2f (%6.2f) %.3f / %.3f\n", p.name, p.mtu,
				med(gbps[pi][0]), slices.Max(gbps[pi][0]), med(gbps[pi][1]), slices.Max(gbps[pi][1]), med(cpu[pi][0]), med(cpu[pi][1]))
		}
		var cols []string
		for si, streams := range streamCounts {
			cols = append(cols, fmt.Sprintf("%5.2f× (%d stream(s))", med(gbps[0][si])/med(gbps[1][si]), streams))
		}
		fmt.Printf("compare-pair: overlayd / wireguard-go netstack pair %s\n", strings.Join(cols, " "))
		fmt.Printf("compare-pair:   (CPU: both overlayd daemons, the reference's one process; Tailscale publishes 0.15-0.17 cores per Gbit/s for its netstack)\n")
		fmt.Printf("compare-pair: load average after: %s\n", loadavg())
		for pi, p := range paths {
			for si, streams := range streamCounts {
				b.ReportMetric(med(gbps[pi][si]), fmt.Sprintf("%s-P%d-Gbit/s", p.key, streams))
			}
		}
		for si, streams := range streamCounts {
			b.ReportMetric(med(gbps[0][si])/med(gbps[1][si]), fmt.Sprintf("overlayd/wgnetstack-P%d", streams))
			b.ReportMetric(med(cpu[0][si]), fmt.Sprintf("overlayd-P%d-cores/Gbit/s", streams))
		}
		lab.Close()
	}
}
