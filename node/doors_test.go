package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/e2e"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/node"
)

const webBody = "hello from node1\n"

// doorCluster is two in-process nodes; node 0 has every kind of door
// (all on port 0) and metrics, node 1 serves HTTP on :80, TCP echo on
// :9000 and UDP echo on :9001.
func doorCluster(t *testing.T) (*e2e.Cluster, map[string]api.Door, string) {
	t.Helper()
	srv := e2e.NodeAddr(1).Addr().String()
	c := e2e.NewCluster(t, 2, e2e.ClusterOptions{Edit: func(i int, c *config.Config) {
		if i != 0 {
			return
		}
		c.Metrics = "127.0.0.1:0"
		c.Doors = config.Doors{
			SOCKS5:    "127.0.0.1:0",
			HTTPProxy: "127.0.0.1:0",
			Forwards: []config.Forward{
				{Listen: "127.0.0.1:0", Target: srv + ":9000"},
				{Listen: "127.0.0.1:0", Target: srv + ":9001", Proto: "udp"},
			},
		}
	}})
	n1 := c.Nodes[1]
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // runs after the nodes close (cleanups run last-in first-out)

	hl, err := n1.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, webBody)
	})}
	wg.Go(func() { hs.Serve(hl) })
	t.Cleanup(func() { hs.Close() })

	el, err := n1.Listen("tcp", ":9000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { el.Close() })
	wg.Go(func() {
		for {
			conn, err := el.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				io.Copy(conn, conn)
			})
		}
	})

	pc, err := n1.ListenPacket("udp", ":9001")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	wg.Go(func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	})

	st := c.Status(t, 0)
	doors := map[string]api.Door{}
	for _, d := range st.Doors {
		key := d.Kind
		if d.Kind == "forward" {
			key += "/" + d.Proto
		}
		if !strings.HasPrefix(d.Addr, "127.0.0.1:") || strings.HasSuffix(d.Addr, ":0") {
			t.Errorf("door %s: Addr %q, want the port chosen", key, d.Addr)
		}
		doors[key] = d
	}
	if len(doors) != 4 || st.Metrics == "" {
		t.Fatalf("Status doors = %+v, metrics %q; want 4 doors and metrics", st.Doors, st.Metrics)
	}
	return c, doors, st.Metrics
}

func TestFrontDoors(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	t.Run("all", testFrontDoors)
}

func testFrontDoors(t *testing.T) {
	c, doors, _ := doorCluster(t)
	srv := e2e.NodeAddr(1).Addr().String()

	curl := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "curl", append([]string{"-sS", "--max-time", "15"}, args...)...).CombinedOutput()
		return string(out), err
	}
	e2e.RequireTools(t, "curl")

	t.Run("socks5", func(t *testing.T) {
		out, err := curl("--socks5-hostname", doors["socks5"].Addr, "http://"+srv+"/")
		if err != nil || out != webBody {
			t.Fatalf("curl --socks5-hostname: %q, %v; want %q", out, err, webBody)
		}
		// A name: refused in SOCKS terms until overlay DNS is wired.
		out, err = curl("--socks5-hostname", doors["socks5"].Addr, "http://web.default.overlay/")
		if err == nil {
			t.Fatalf("curl of a name without overlay DNS: %q, want an error", out)
		}
		// With a resolver (as the DNS wiring sets), the name works.
		c.Nodes[0].SetResolver(func(_ context.Context, host string) ([]netip.Addr, error) {
			if host == "web.default.overlay" {
				return []netip.Addr{e2e.NodeAddr(1).Addr()}, nil
			}
			return nil, fmt.Errorf("%s: no such name", host)
		})
		defer c.Nodes[0].SetResolver(nil)
		out, err = curl("--socks5-hostname", doors["socks5"].Addr, "http://web.default.overlay/")
		if err != nil || out != webBody {
			t.Fatalf("curl --socks5-hostname by name: %q, %v; want %q", out, err, webBody)
		}
		// Nothing listens on :81: the connection is refused.
		if out, err = curl("--socks5-hostname", doors["socks5"].Addr, "http://"+srv+":81/"); err == nil {
			t.Fatalf("curl to a closed port: %q, want an error", out)
		}
	})

	t.Run("http", func(t *testing.T) {
		for _, args := range [][]string{
			{"--proxy", "http://" + doors["http_proxy"].Addr, "http://" + srv + "/"},                  // absolute-form request
			{"--proxytunnel", "--proxy", "http://" + doors["http_proxy"].Addr, "http://" + srv + "/"}, // CONNECT
		} {
			out, err := curl(args...)
			if err != nil || out != webBody {
				t.Errorf("curl %v: %q, %v; want %q", args, out, err, webBody)
			}
		}
	})

	t.Run("forward tcp", func(t *testing.T) {
		conn, err := net.Dial("tcp", doors["forward/tcp"].Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		want := make([]byte, 4<<20)
		rand.Read(want)
		errc := make(chan error, 1)
		go func() {
			_, err := conn.Write(want)
			if err == nil {
				err = conn.(*net.TCPConn).CloseWrite()
			}
			errc <- err
		}()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		got, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("read back: %v (after %d bytes)", err, len(got))
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("forward echoed %d bytes, differing from the %d sent", len(got), len(want))
		}
	})

	t.Run("forward udp", func(t *testing.T) {
		conn, err := net.Dial("udp", doors["forward/udp"].Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		buf := make([]byte, 2000)
		for i, size := range []int{1, 100, 1200} {
			msg := bytes.Repeat([]byte{byte('a' + i)}, size)
			var n int
			// The first datagram may race the session's overlay dial and
			// ARP; resend until the echo comes.
			for try := 0; ; try++ {
				conn.Write(msg)
				conn.SetReadDeadline(time.Now().Add(time.Second))
				if n, err = conn.Read(buf); err == nil || try == 10 {
					break
				}
			}
			if err != nil || !bytes.Equal(buf[:n], msg) {
				t.Fatalf("UDP forward echo of %d bytes: %d bytes, %v", size, n, err)
			}
		}
	})

	st := c.Status(t, 0)
	for _, d := range st.Doors {
		if d.Accepted == 0 || d.OutBytes == 0 || d.InBytes == 0 {
			t.Errorf("door %s on %s: counters %+v, want traffic counted", d.Kind, d.Addr, d)
		}
	}
}

// TestMetricsScrape scrapes a node's /metrics before and after traffic
// through its doors: the exposition parses, lints clean, and the counters
// move with the traffic.
func TestMetricsScrape(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	t.Run("all", testMetricsScrape)
}

func testMetricsScrape(t *testing.T) {
	c, doors, maddr := doorCluster(t)
	before := scrape(t, maddr)

	for range 3 {
		conn, err := net.Dial("tcp", doors["forward/tcp"].Addr)
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte("ping through the forward")
		conn.Write(msg)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, len(msg))
		_, err = io.ReadFull(conn, got)
		conn.Close()
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo: %q, %v", got, err)
		}
	}
	fwd := doors["forward/tcp"].Addr
	want := []struct {
		name   string
		labels map[string]string
		min    float64 // the least increase
	}{
		{"overlayd_packets_total", map[string]string{"direction": "outbound"}, 6},
		{"overlayd_packets_total", map[string]string{"direction": "inbound"}, 6},
		{"overlayd_bytes_total", map[string]string{"direction": "outbound"}, 3 * 24},
		{"overlayd_bytes_total", map[string]string{"direction": "inbound"}, 3 * 24},
		{"overlayd_network_packets_total", map[string]string{"network": "static", "direction": "outbound"}, 6},
		{"overlayd_network_packets_total", map[string]string{"network": "static", "direction": "inbound"}, 6},
		{"overlayd_network_bytes_total", map[string]string{"network": "static", "direction": "outbound"}, 3 * 24},
		{"overlayd_door_connections_total", map[string]string{"door": "forward", "listen": fwd, "result": "accepted"}, 3},
		{"overlayd_door_bytes_total", map[string]string{"door": "forward", "listen": fwd, "direction": "out"}, 3 * 24},
		{"overlayd_door_bytes_total", map[string]string{"door": "forward", "listen": fwd, "direction": "in"}, 3 * 24},
	}
	// A door adds a connection's bytes when its splice ends, just after
	// the client has closed: scrape until the counters have caught up.
	var after map[string]*dto.MetricFamily
	// The checks below say which fell short if some still do after 5s.
	testutil.Poll(5*time.Second, func() error {
		after = scrape(t, maddr)
		for _, m := range want {
			if value(after, m.name, m.labels)-value(before, m.name, m.labels) < m.min {
				return fmt.Errorf("%s%v short", m.name, m.labels)
			}
		}
		return nil
	})
	for _, m := range want {
		b, a := value(before, m.name, m.labels), value(after, m.name, m.labels)
		if a-b < m.min {
			t.Errorf("%s%v went %v → %v, want an increase of at least %v", m.name, m.labels, b, a, m.min)
		}
	}
	if v := value(after, "overlayd_build_info", map[string]string{"node": "node0", "mode": "netstack"}); v != 1 {
		t.Errorf("overlayd_build_info = %v, want 1", v)
	}
	problems, err := promtest.GatherAndLint(c.Nodes[0].MetricsRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// scrape GETs /metrics and parses the text exposition.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// value is the sum of the samples of name whose labels include want.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	mf, ok := mfs[name]
	if !ok {
		return -1
	}
	var sum float64
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}

// TestResolveWithoutDNS: names are refused with a clear error until
// overlay DNS is wired; IP literals work.
func TestResolveWithoutDNS(t *testing.T) {
	c := e2e.NewCluster(t, 1, e2e.ClusterOptions{})
	_, err := c.Nodes[0].Dial(context.Background(), "tcp", "web.default.overlay:80")
	if err == nil || !strings.Contains(err.Error(), `cannot resolve "web.default.overlay": overlay DNS is not enabled`) {
		t.Errorf("Dial(name) = %v, want the overlay-DNS error", err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("Dial(name) timed out: %v", err)
	}
}

// A door whose address is taken fails Start with one sentence naming it,
// and Close releases everything already open.
func TestDoorAddressTaken(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := config.Default()
	cfg.Name = "taken"
	cfg.Mode = config.ModeNetstack
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Addr = e2e.NodeAddr(0)
	cfg.Control = ""
	cfg.DNS.Listen = config.DNSOff
	cfg.Metrics = "127.0.0.1:0"
	cfg.Doors.SOCKS5 = "127.0.0.1:0"
	cfg.Doors.HTTPProxy = taken.Addr().String()
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = n.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "http proxy door on "+taken.Addr().String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("Start = %v, want the http proxy door's address in use", err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
