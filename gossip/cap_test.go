package gossip

import (
	"fmt"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
)

// TestPushPullOverCap: when the cluster-wide entries do not fit
// MaxPushPullBytes, push/pull carries digests only and bulk syncs in
// messages under the cap repair a node that missed the deltas.
func TestPushPullOverCap(t *testing.T) {
	c := newCluster(t)
	start := func(name string, seeds ...string) *Gossip {
		g, err := New(Options{Name: name, Profile: ProfileTest, MaxPushPullBytes: 2048, Transport: c.net.NewTransport(name), Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		c.nodes[name] = g
		return g
	}
	a, b := start("a"), start("b")
	b.Join(t.Context(), []string{c.net.Addr("a")})
	c.waitMembers(5 * time.Second)
	c.net.Partition([]string{"a"}, []string{"b"})
	for i := range 100 { // ~6 KB of entries, missed by b
		if err := a.Put("t", "", fmt.Sprintf("key-%03d", i), []byte("0123456789012345678901234567890123456789")); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, "a's broadcasts spent while cut off", func() error {
		if n := a.globalQ.NumQueued(); n > 0 {
			return fmt.Errorf("%d queued", n)
		}
		return nil
	})
	c.net.Heal()
	testutil.Eventually(t, 15*time.Second, "convergence over the cap", func() error {
		if n := len(b.List("t", "")); n != 100 {
			return fmt.Errorf("b lists %d entries, want 100", n)
		}
		return c.converged()
	})
	st := a.Stats()
	if st.StateOverCap == 0 {
		t.Errorf("a never left its entries out of push/pull: %+v", st)
	}
	if a.Stats().BulkSyncs+b.Stats().BulkSyncs == 0 {
		t.Errorf("no bulk sync ran")
	}
}
