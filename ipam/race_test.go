package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"
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
	if err := a.p.CreateNetwork("race", netip.MustParsePrefix("10.81.0.0/24"), 81); err != nil {
		t.Fatal(err)
	}
	if err := b.p.CreateNetwork("race", netip.MustParsePrefix("10.82.0.0/24"), 82); err != nil {
		t.Fatal(err)
	}
	c.net.Heal()
	var winner Network
	waitFor(t, 10*time.Second, "one definition everywhere", func() error {
		na, _ := a.p.Network("race")
		nb, _ := b.p.Network("race")
		if na != nb {
			return fmt.Errorf("a has %+v, b has %+v", na, nb)
		}
		winner = na
		return nil
	})
	loser := map[string]*node{"a": b, "b": a}[winner.Creator]
	waitFor(t, 10*time.Second, "loser's ranges withdrawn", func() error {
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
	addr, err := loser.p.Allocate(ctx, "race", "x")
	if err != nil {
		t.Fatal(err)
	}
	if !winner.CIDR.Contains(addr) {
		t.Errorf("loser allocated %v, want an address of the winner's %v", addr, winner.CIDR)
	}
	waitFor(t, 10*time.Second, "Holders agrees with Lookup", func() error {
		for _, n := range []*node{a, b} {
			h := n.p.Holders("race")
			ls, ok := n.p.Lookup("race", addr)
			if !ok || h[addr] != ls || len(h) != 1 {
				return fmt.Errorf("%s: Holders %v, Lookup %+v %v", n.g.Name(), h, ls, ok)
			}
		}
		return nil
	})
	if _, err := a.p.Allocate(ctx, "nosuch", "x"); err == nil || errors.Is(err, ErrExhausted) {
		t.Errorf("Allocate(nosuch) = %v", err)
	}
}
