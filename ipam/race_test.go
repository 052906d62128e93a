package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
)

// TestLostCreationWithdrawn: two partitioned nodes create one name with
// different CIDRs; after the partition heals one definition wins
// everywhere, the loser withdraws the ranges of its own creation (they can
// never be used), and its allocations come from the winner's CIDR. Holders
// agrees with Lookup.
func TestLostCreationWithdrawn(t *testing.T) {
	c := newCluster(t)
	a := c.start("a", "")
	b := c.start("b", "a")
	c.net.Partition([]string{"a"}, []string{"b"})
	if err := a.p.CreateNetwork("race", []netip.Prefix{netip.MustParsePrefix("10.81.0.0/24")}, 81); err != nil {
		t.Fatal(err)
	}
	if err := b.p.CreateNetwork("race", []netip.Prefix{netip.MustParsePrefix("10.82.0.0/24")}, 82); err != nil {
		t.Fatal(err)
	}
	c.net.Heal()
	var winner Network
	testutil.Eventually(t, 10*time.Second, "one definition everywhere", func() error {
		na, _ := a.p.Network("race")
		nb, _ := b.p.Network("race")
		if !na.Equal(nb) {
			return fmt.Errorf("a has %+v, b has %+v", na, nb)
		}
		winner = na
		return nil
	})
	loser := map[string]*node{"a": b, "b": a}[winner.Creator]
	testutil.Eventually(t, 10*time.Second, "loser's ranges withdrawn", func() error {
		for _, n := range []*node{a, b} {
			for _, e := range n.g.ListAll(tableRanges, "race") {
				if r, ok := decodeRange(e.Value); ok && r.Creator != winner.Creator {
					return fmt.Errorf("%s still has range %+v written by %s", n.g.Name(), r, e.Owner)
				}
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr, err := loser.p.Allocate(ctx, "race", "x", IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if !winner.Contains(addr) {
		t.Errorf("loser allocated %v, want an address of the winner's %v", addr, winner.CIDRs)
	}
	testutil.Eventually(t, 10*time.Second, "Holders agrees with Lookup", func() error {
		for _, n := range []*node{a, b} {
			h := n.p.Holders("race")
			ls, ok := n.p.Lookup("race", addr)
			if !ok || h[addr] != ls || len(h) != 1 {
				return fmt.Errorf("%s: Holders %v, Lookup %+v %v", n.g.Name(), h, ls, ok)
			}
		}
		return nil
	})
	if _, err := a.p.Allocate(ctx, "nosuch", "x", IPv4); err == nil || errors.Is(err, ErrExhausted) {
		t.Errorf("Allocate(nosuch) = %v", err)
	}
}

// TestClaim: a node leases an address of its own range again; not one in
// another node's range, nor one leased elsewhere.
func TestClaim(t *testing.T) {
	c := newCluster(t)
	a := c.start("a", "")
	b := c.start("b", "a")
	if err := a.p.CreateNetwork("blue", []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}, 7); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	x, err := a.p.Allocate(ctx, "blue", "x", IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.p.Claim("blue", x, "x"); err != nil {
		t.Errorf("Claim of its own lease again: %v", err)
	}
	if err := a.p.Claim("blue", x, "y"); err == nil {
		t.Error("Claim of an address leased to another owner succeeded")
	}
	free := netip.MustParseAddr("10.1.0.77")
	if err := a.p.Claim("blue", free, "z"); err != nil {
		t.Fatal(err)
	}
	if ls, ok := a.p.Lookup("blue", free); !ok || ls.Owner != "z" || ls.Node != "a" {
		t.Errorf("Lookup after Claim = %+v, %v", ls, ok)
	}
	testutil.Eventually(t, 5*time.Second, "b knows blue's ranges", func() error {
		if _, ok := b.p.Network("blue"); !ok {
			return errors.New("not yet")
		}
		if err := b.p.Participate("blue"); err != nil {
			return err
		}
		if len(b.p.Holders("blue")) != 2 {
			return fmt.Errorf("holders %v", b.p.Holders("blue"))
		}
		return nil
	})
	if err := b.p.Claim("blue", netip.MustParseAddr("10.1.0.78"), "b"); err == nil {
		t.Error("Claim in another node's range succeeded")
	}
}
