package e2e

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/internal/testutil"
)

// A gossip cluster with a service: the client node's /metrics counts the
// members, the gossip messages, the conntrack entries and each backend's
// selections, and the selections add up to the connections made.
func TestMetricsServiceCluster(t *testing.T) { OnEachNet(t, testMetricsServiceCluster) }

func testMetricsServiceCluster(t *testing.T, over Net) {
	const nw = "met"
	c := NewGossipCluster(t, 3, GossipOptions{Edit: func(i int, cfg *config.Config) {
		if i == 0 {
			cfg.Metrics = "127.0.0.1:0"
		}
	}, Net: over})
	ctx := context.Background()
	if _, err := c.Node(0).CreateNetwork(ctx, api.CreateNetwork{Name: nw, CIDR: "10.61.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	addrs := make([]netip.Prefix, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { addrs[i] = c.Join(i, nw) })
	}
	wg.Wait()
	testutil.Eventually(t, 20*time.Second, "routes converge", c.routesConverged(3))
	svc, err := c.Node(0).CreateService(ctx, api.CreateService{Name: "web", Network: nw, Ports: []string{"80/tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	backendAddr := map[string]string{}
	for _, i := range []int{1, 2} {
		a := netip.AddrPortFrom(addrs[i].Addr(), 8080).String()
		ln, err := c.Node(i).Listen("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		pc, err := c.Node(i).ListenPacket("udp", a)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close(); pc.Close() })
		serveBackend(ln, pc, c.Name(i))
		backendAddr[c.Name(i)] = a
		testutil.Eventually(t, 10*time.Second, "the service reaches "+c.Name(i), c.knowsService(i, nw, "web"))
		if _, err := c.Node(i).AddBackend(ctx, api.AddBackend{Service: "web", Network: nw, Addr: a, Weight: 1}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, "the client's table holds both backends", func() error {
		return c.tableHolds(0, true, "web", backendAddr["gnode1"], backendAddr["gnode2"])
	})

	st, err := c.Node(0).Status(ctx)
	if err != nil || st.Metrics == "" {
		t.Fatalf("Status: metrics %q, %v", st.Metrics, err)
	}
	vip := net.JoinHostPort(svc.VIP, "80")
	const conns = 40
	var open []*vipConn
	for range conns {
		vc, err := dialVIP(c.Node(0), vip)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, vc)
	}
	mfs := scrapeURL(t, "http://"+st.Metrics+"/metrics")
	for _, vc := range open {
		vc.Close()
	}

	var selections float64
	for _, m := range family(mfs, "overlayd_lb_backend_selections_total") {
		if label(m, "service") == "web" && label(m, "network") == nw {
			selections += m.GetCounter().GetValue()
		}
	}
	if selections != conns {
		t.Errorf("backend selections add up to %v, want %d", selections, conns)
	}
	if v := sumOf(mfs, "overlayd_conntrack_entries"); v < conns {
		t.Errorf("overlayd_conntrack_entries = %v with %d connections open, want at least that", v, conns)
	}
	for _, m := range family(mfs, "overlayd_gossip_members") {
		if label(m, "state") == "alive" && m.GetGauge().GetValue() != 3 {
			t.Errorf("alive members = %v, want 3", m.GetGauge().GetValue())
		}
	}
	if v := sumOf(mfs, "overlayd_gossip_messages_total"); v <= 0 {
		t.Errorf("overlayd_gossip_messages_total = %v, want some", v)
	}
	problems, err := promtest.GatherAndLint(c.Node(0).MetricsRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func scrapeURL(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return mfs
}

func family(mfs map[string]*dto.MetricFamily, name string) []*dto.Metric {
	if mf, ok := mfs[name]; ok {
		return mf.GetMetric()
	}
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func sumOf(mfs map[string]*dto.MetricFamily, name string) float64 {
	var s float64
	for _, m := range family(mfs, name) {
		s += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return s
}
