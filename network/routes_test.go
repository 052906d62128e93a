package network

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/internal/testutil"
)

// learnedOn is what m learns from a snapshot of its joined networks.
func learnedOn(mb *member) []Route {
	var names []string
	for _, j := range mb.m.Joined() {
		names = append(names, j.Name)
	}
	return mb.m.Learned(catalog.Read(mb.g, names))
}

func routeOf(rs []Route, a netip.Addr) (Route, bool) {
	for _, r := range rs {
		if r.Prefix == netip.PrefixFrom(a, 32) {
			return r, true
		}
	}
	return Route{}, false
}

// Learned accepts a route entry only from the lease holder of its one
// address at the VTEP its writer advertises; every other entry is
// refused for its reason and counted once per entry version, the
// reasons that can be the gossip's ordering (no lease, VTEP) only after
// the grace.
func TestLearnedRefusals(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	a := c.start("observer", "", Options{})
	b := c.start("victim", "", Options{}, "observer")
	e := c.start("evil", "", Options{}, "observer")
	waitMembers(t, a, b, e)
	if _, err := a.m.Create(ctx, CreateRequest{Name: "blue", CIDRs: []string{"10.20.0.0/16"}}); err != nil {
		t.Fatal(err)
	}
	for _, mb := range []*member{a, b, e} {
		if _, err := mb.m.Join(ctx, "blue"); err != nil {
			t.Fatal(err)
		}
	}
	victim, evil := joinedAddr(t, b, "blue").Addr(), joinedAddr(t, e, "blue").Addr()
	testutil.Eventually(t, 10*time.Second, "observer learns both routes", func() error {
		rs := learnedOn(a)
		rb, okb := routeOf(rs, victim)
		re, oke := routeOf(rs, evil)
		if !okb || rb.Owner != "victim" || rb.VTEP != b.vtep || rb.VNI == 0 || !oke || re.Owner != "evil" {
			return fmt.Errorf("learned %+v", rs)
		}
		return nil
	})
	if a.m.Refused() != nil {
		t.Fatalf("refused %v before any bad entry", a.m.Refused())
	}
	put := func(key string, value []byte) {
		t.Helper()
		if err := e.g.Put(catalog.TableRoutes, "blue", key, value); err != nil {
			t.Fatal(err)
		}
	}
	route := func(a netip.Addr, vtep netip.AddrPort) []byte {
		return catalog.Route{Prefixes: []netip.Prefix{netip.PrefixFrom(a, 32)}, VTEP: vtep}.Encode()
	}
	want := map[string]uint64{}
	for _, tc := range []struct {
		reason string
		key    string
		value  []byte
	}{
		{RefuseMalformed, "evil", []byte("garbage")},
		{RefuseOutside, "evil", route(netip.MustParseAddr("10.99.0.1"), e.vtep)},
		{RefuseLease, "evil", route(victim, e.vtep)},
		{RefuseNoLease, "evil", route(netip.MustParseAddr("10.20.200.200"), e.vtep)},
		{RefuseVTEP, "evil", route(evil, netip.MustParseAddrPort("127.0.0.1:9"))},
		// Last: the entry under its own key is refused by now.
		{RefuseKey, "victim2", route(evil, e.vtep)},
	} {
		put(tc.key, tc.value)
		want[tc.reason]++
		// The refusal counted is the event that proves the observer has
		// seen the entry.
		testutil.Eventually(t, 10*time.Second, tc.reason+" refused", func() error {
			rs := learnedOn(a)
			if got := a.m.Refused(); !maps.Equal(got, want) {
				return fmt.Errorf("refused %v, want %v", got, want)
			}
			if r, ok := routeOf(rs, victim); !ok || r.Owner != "victim" || r.VTEP != b.vtep {
				return fmt.Errorf("route for the victim's %v = %+v, %v", victim, r, ok)
			}
			for _, r := range rs {
				if r.Owner == "evil" {
					return fmt.Errorf("a refused entry routed: %+v", r)
				}
			}
			return nil
		})
		if tc.key != "evil" {
			if err := e.g.Delete(catalog.TableRoutes, "blue", tc.key); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Repeated reads do not count one entry again.
	learnedOn(a)
	learnedOn(a)
	if got := a.m.Refused(); !maps.Equal(got, want) {
		t.Errorf("after more reads: refused %v, want %v", got, want)
	}
}

// noteRefused counts an entry refused for a reason that can be transient
// only once it has been refused for refuseGrace, once; a lasting reason
// at once; an entry no longer refused is forgotten.
func TestNoteRefusedGrace(t *testing.T) {
	m := &Manager{refused: map[string]uint64{}, pending: map[refusalKey]time.Time{}, log: zapNop}
	t0 := time.Now()
	noLease := refusalKey{"blue", "x", "x", 1, RefuseNoLease}
	lease := refusalKey{"blue", "y", "y", 1, RefuseLease}
	both := func() map[refusalKey]refusal { return map[refusalKey]refusal{noLease: {}, lease: {}} }
	for _, step := range []struct {
		now  map[refusalKey]refusal
		at   time.Duration
		want map[string]uint64
	}{
		{both(), 0, map[string]uint64{RefuseLease: 1}},
		{both(), refuseGrace / 2, map[string]uint64{RefuseLease: 1}},
		{both(), refuseGrace, map[string]uint64{RefuseLease: 1, RefuseNoLease: 1}},
		{both(), 2 * refuseGrace, map[string]uint64{RefuseLease: 1, RefuseNoLease: 1}},
		{map[refusalKey]refusal{}, 3 * refuseGrace, map[string]uint64{RefuseLease: 1, RefuseNoLease: 1}},
		// Back again, a new refusal: the grace starts over.
		{both(), 4 * refuseGrace, map[string]uint64{RefuseLease: 2, RefuseNoLease: 1}},
		{both(), 5 * refuseGrace, map[string]uint64{RefuseLease: 2, RefuseNoLease: 2}},
	} {
		m.noteRefused(step.now, t0.Add(step.at))
		if got := m.Refused(); !maps.Equal(got, step.want) {
			t.Errorf("at %v: refused %v, want %v", step.at, got, step.want)
		}
	}
}
