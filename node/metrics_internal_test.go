package node

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A gossip node's metrics include the cluster's members and messages and,
// with its balancer, the connection-tracking table; they lint clean.
func TestMetricsGossipNode(t *testing.T) {
	n := gossipNode(t)
	reg := n.MetricsRegistry()
	for _, name := range []string{
		"overlayd_gossip_members", "overlayd_gossip_messages_total", "overlayd_gossip_bytes_total",
		"overlayd_conntrack_entries", "overlayd_conntrack_evictions_total", "overlayd_packets_total",
		"overlayd_gossip_log_lines_suppressed_total",
	} {
		if c, err := testutil.GatherAndCount(reg, name); err != nil || c == 0 {
			t.Errorf("%s: %d samples, %v; want some", name, c, err)
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	alive := -1.0
	for _, mf := range mfs {
		if mf.GetName() != "overlayd_gossip_members" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" && l.GetValue() == "alive" {
					alive = m.GetGauge().GetValue()
				}
			}
		}
	}
	if alive != 1 {
		t.Errorf("overlayd_gossip_members{state=\"alive\"} = %v, want 1 (itself)", alive)
	}
}
