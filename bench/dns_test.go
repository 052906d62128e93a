package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/overlayd/overlayd/dns"
	"github.com/overlayd/overlayd/dns/dnstest"
)

const (
	benchOverlayName = "web.default.overlay."
	benchForwardName = "www.example.test."
)

func benchZone() dns.ZoneData {
	return dns.ZoneData{
		Networks: []dns.Network{{Name: "default", CIDR: netip.MustParsePrefix("10.200.0.0/16")}},
		Services: []dns.ServiceRecord{{Name: "web", Network: "default", VIP: netip.MustParseAddr("10.200.255.10"), Ports: []dns.Port{{Port: 80, Proto: "tcp"}}}},
	}
}

// benchUpstream is a fake upstream answering everything with a long TTL, so
// that forwarded names are served from the cache after the first query.
func benchUpstream(b *testing.B) *dnstest.Upstream {
	return dnstest.NewUpstream(b, func(req *mdns.Msg, tcp bool) []*mdns.Msg {
		return []*mdns.Msg{dnstest.Reply(req, req.Question[0].Name+" 3600 IN A 192.0.2.10")}
	})
}

// startDNS serves overlayd's dns.Server on a loopback UDP socket, forwarding
// to up, and returns its address.
func startDNS(b *testing.B, up netip.AddrPort) string {
	b.Helper()
	f, err := dns.NewForwarder(dns.ForwarderOptions{Upstreams: []netip.AddrPort{up}})
	if err != nil {
		b.Fatal(err)
	}
	readers, _ := strconv.Atoi(os.Getenv("OVERLAYD_DNS_READERS"))
	s, err := dns.New(dns.Options{Forwarder: f, PacketReaders: readers})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.SetZone(benchZone()); err != nil {
		b.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.ServePacket(pc) }()
	b.Cleanup(func() { s.Close(); wg.Wait() })
	return pc.LocalAddr().String()
}

// BenchmarkDNS measures queries per second answered by overlayd's DNS
// server over a real UDP socket on loopback, from 8×GOMAXPROCS clients each
// with one query outstanding: for an overlay name, and for a forwarded name
// served from the cache.
func BenchmarkDNS(b *testing.B) {
	up := benchUpstream(b)
	addr := startDNS(b, up.Addr)
	for _, tc := range []struct{ label, name string }{{"overlay", benchOverlayName}, {"cached-forward", benchForwardName}} {
		b.Run(tc.label, func(b *testing.B) {
			q := new(mdns.Msg)
			q.SetQuestion(tc.name, mdns.TypeA)
			wire, err := q.Pack()
			if err != nil {
				b.Fatal(err)
			}
			// Warm the cache (and check the answer) once.
			if r := udpQuery(b, addr, wire); len(r.Answer) != 1 {
				b.Fatalf("%s: answer %v", tc.name, r.Answer)
			}
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("udp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				buf := make([]byte, 1500)
				for pb.Next() {
					c.SetDeadline(time.Now().Add(2 * time.Second))
					if _, err := c.Write(wire); err != nil {
						b.Error(err)
						return
					}
					if _, err := c.Read(buf); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "qps")
		})
	}
}

func udpQuery(b *testing.B, addr string, wire []byte) *mdns.Msg {
	b.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(wire); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		b.Fatal(err)
	}
	r := new(mdns.Msg)
	if err := r.Unpack(buf[:n]); err != nil {
		b.Fatal(err)
	}
	return r
}

// requireTool skips without tool (naming the Debian package) and fails under
// CI, which installs it.
func requireTool(b *testing.B, tool, pkg string) {
	b.Helper()
	if _, err := exec.LookPath(tool); err == nil {
		return
	}
	msg := fmt.Sprintf("needs %s (apt-get install %s)", tool, pkg)
	if os.Getenv("CI") == "true" {
		b.Fatalf("%s; CI installs it in .ci/run, so this is a failure", msg)
	}
	b.Skip(msg + "; skipped")
}

var (
	dnsperfQPS       = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	dnsperfCompleted = regexp.MustCompile(`Queries completed:\s+([0-9]+)`)
)

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

// dnsperf runs dnsperf against addr for secs seconds with one query name
// and returns the queries per second it reports and the CPU time the server
// (process pid; 0 for this one) spent per completed query.
func dnsperf(b *testing.B, addr netip.AddrPort, pid int, name string, secs int) (qps float64, cpuPerQuery time.Duration) {
	b.Helper()
	file := filepath.Join(b.TempDir(), "queries")
	if err := os.WriteFile(file, []byte(name+" A\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	cpu0 := cpuTime(b, pid)
	out, err := exec.Command("dnsperf", "-s", addr.Addr().String(), "-p", strconv.Itoa(int(addr.Port())),
		"-d", file, "-l", strconv.Itoa(secs), "-c", "4", "-q", "200", "-t", "2").CombinedOutput()
	if err != nil {
		b.Fatalf("dnsperf: %v\n%s", err, out)
	}
	cpu := cpuTime(b, pid) - cpu0
	m := dnsperfQPS.FindSubmatch(out)
	if m == nil {
		b.Fatalf("dnsperf printed no rate:\n%s", out)
	}
	qps, _ = strconv.ParseFloat(string(m[1]), 64)
	c := dnsperfCompleted.FindSubmatch(out)
	if c == nil {
		b.Fatalf("dnsperf printed no completed count:\n%s", out)
	}
	n, _ := strconv.Atoi(string(c[1]))
	return qps, cpu / time.Duration(max(n, 1))
}

// cpuTime is the user+system CPU time used so far by process pid, or by
// this process (without children) when pid is 0.
func cpuTime(b *testing.B, pid int) time.Duration {
	if pid == 0 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after "(comm) ": state is field 3, utime 14, stime 15, in
	// clock ticks (USER_HZ, 100 on Linux).
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	ut, _ := strconv.Atoi(f[14-3])
	st, _ := strconv.Atoi(f[15-3])
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// BenchmarkCompareDnsperf runs dnsperf against overlayd's DNS server and
// against dnsmasq serving the same records, in one run, for an overlay name
// (local data in both) and for a forwarded name (cached by both from the same
// fake upstream), and reports both rates and their ratio (overlayd/dnsmasq),
// and the CPU time each server spent per query with their ratio
// (dnsmasq/overlayd: above 1, overlayd needs less CPU per query). overlayd's
// CPU is this test process's (the server, plus an idle fake upstream).
// Needs dnsperf and dnsmasq (Debian packages dnsperf, dnsmasq-base); run with
// -benchtime 1x. Runs alternate between the two servers and the medians are
// reported, since the machine may be shared: OVERLAYD_DNSPERF_ROUNDS (default
// 3) rounds of OVERLAYD_DNSPERF_SECONDS (default 3) each.
func BenchmarkCompareDnsperf(b *testing.B) {
	requireTool(b, "dnsperf", "dnsperf")
	dnstest.RequireDnsmasq(b)
	secs, rounds := 3, 3
	if s, err := strconv.Atoi(os.Getenv("OVERLAYD_DNSPERF_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	if r, err := strconv.Atoi(os.Getenv("OVERLAYD_DNSPERF_ROUNDS")); err == nil && r > 0 {
		rounds = r
	}
	up := benchUpstream(b)
	ovl := netip.MustParseAddrPort(startDNS(b, up.Addr))
	dm := dnstest.StartDnsmasq(b,
		"--host-record=web.default.overlay,10.200.255.10",
		"--local=/overlay/",
		"--local-ttl=5",
		"--cache-size=1000",
		"--server=/example.test/"+up.Addr.Addr().String()+"#"+strconv.Itoa(int(up.Addr.Port())),
	)
	// Warm both caches.
	for _, a := range []netip.AddrPort{ovl, dm.Addr} {
		c := &mdns.Client{Timeout: 2 * time.Second}
		q := new(mdns.Msg)
		q.SetQuestion(benchForwardName, mdns.TypeA)
		if r, _, err := c.ExchangeContext(context.Background(), q, a.String()); err != nil || len(r.Answer) != 1 {
			b.Fatalf("warming %v: %v, %v", a, r, err)
		}
	}
	for _, tc := range []struct{ label, name string }{{"overlay", benchOverlayName}, {"cached-forward", benchForwardName}} {
		b.Run(tc.label, func(b *testing.B) {
			for range b.N {
				// Interleaved rounds, medians: the machine is shared.
				var oq, dq, oc, dc []float64
				for range rounds {
					q, c := dnsperf(b, ovl, 0, tc.name, secs)
					oq, oc = append(oq, q), append(oc, float64(c)/1e3)
					q, c = dnsperf(b, dm.Addr, dm.Pid(), tc.name, secs)
					dq, dc = append(dq, q), append(dc, float64(c)/1e3)
				}
				o, d := median(oq), median(dq)
				ocpu, dcpu := median(oc), median(dc)
				b.ReportMetric(o, "overlayd-qps")
				b.ReportMetric(d, "dnsmasq-qps")
				b.ReportMetric(o/d, "ratio")
				b.ReportMetric(ocpu, "overlayd-cpu-µs/q")
				b.ReportMetric(dcpu, "dnsmasq-cpu-µs/q")
				b.ReportMetric(dcpu/ocpu, "cpu-ratio")
				b.Logf("rounds: overlayd %.0f qps %.2f µs/q, dnsmasq %.0f qps %.2f µs/q", oq, oc, dq, dc)
				fmt.Printf("dnsperf %s (%s, median of %d×%ds): overlayd %.0f qps, dnsmasq %.0f qps, ratio %.2f; CPU per query: overlayd %.2f µs, dnsmasq %.2f µs, ratio (dnsmasq/overlayd) %.2f\n",
					tc.label, tc.name, rounds, secs, o, d, o/d, ocpu, dcpu, dcpu/ocpu)
			}
		})
	}
}
