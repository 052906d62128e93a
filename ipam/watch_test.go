package ipam

import (
	"net/netip"
	"testing"
	"time"

	"github.com/overlayd/overlayd/gossip"
)

// WatchNetworks sees a network defined on another node: what callers
// (node) wait on instead of naming ipam's table.
func TestWatchNetworks(t *testing.T) {
	c := newCluster(t)
	a := c.start("a", "")
	b := c.start("b", "a")
	ch, cancel := WatchNetworks(b.g)
	defer cancel()
	if err := a.p.CreateNetwork("blue", []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}, 7); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.Type == gossip.EventResync || ev.Entry.Key != "blue" {
				continue
			}
			if ev.Entry.Table != tableNetworks || ev.Type != gossip.EventPut {
				t.Fatalf("event %v on %q, want a put of the networks table", ev.Type, ev.Entry.Table)
			}
			return
		case <-timeout:
			t.Fatal("no event for network blue on b within 10s")
		}
	}
}
