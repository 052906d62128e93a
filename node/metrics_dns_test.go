package node_test

import (
	"context"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/e2e"
)

// DNS queries to the node's host listener show in its metrics by type
// and rcode.
func TestMetricsDNS(t *testing.T) {
	c := e2e.NewCluster(t, 1, e2e.ClusterOptions{Edit: func(_ int, cfg *config.Config) {
		cfg.DNS.Listen = "127.0.0.1:0"
		cfg.DNS.Upstreams = []string{"127.0.0.1:9"} // nothing answers there
	}})
	st := c.Status(t, 0)
	if st.DNS == nil || st.DNS.Listen == "" {
		t.Fatalf("Status.DNS = %+v, want a host listener", st.DNS)
	}
	cl := &mdns.Client{Timeout: 5 * time.Second}
	for range 3 {
		m := new(mdns.Msg)
		m.SetQuestion("nosuchnode.nosuchnet.overlay.", mdns.TypeA)
		if _, _, err := cl.ExchangeContext(context.Background(), m, st.DNS.Listen); err != nil {
			t.Fatal(err)
		}
	}
	reg := c.Nodes[0].MetricsRegistry()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var queries, responses float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "overlayd_dns_queries_total":
				queries += m.GetCounter().GetValue()
			case "overlayd_dns_responses_total":
				responses += m.GetCounter().GetValue()
			}
		}
	}
	if queries != 3 || responses != 3 {
		t.Errorf("overlayd_dns_queries_total = %v, overlayd_dns_responses_total = %v; want 3 and 3", queries, responses)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
