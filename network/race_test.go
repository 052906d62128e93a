package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/fault"
)

// raceWindow is the create window of the race tests: the default
// profile's (node's createWindowDefault), so that a definition slowed by
// a loaded machine still arrives within it.
const raceWindow = 2 * time.Second

// racePair starts two clustered members whose creations pass their
// checks, then wait for each other before writing: each writes before the
// other's definition can reach it, the race of issue 9 item 6.
func racePair(t *testing.T) (a, b *member) {
	c := newCluster(t)
	a = c.start("a", "", Options{CreateWindow: raceWindow})
	b = c.start("b", "", Options{CreateWindow: raceWindow}, "a")
	waitMembers(t, a, b)
	var barrier sync.WaitGroup
	barrier.Add(2)
	for _, mb := range []*member{a, b} {
		mb.m.hooks.beforeCreate = func(string) {
			barrier.Done()
			barrier.Wait()
		}
	}
	return a, b
}

type createResult struct {
	node string
	info Info
	err  error
}

// createAtOnce creates network name on a (with cidrA) and b (cidrB) at
// once.
func createAtOnce(a, b *member, name, cidrA, cidrB string) []createResult {
	res := make([]createResult, 2)
	var wg sync.WaitGroup
	for i, c := range []struct {
		mb   *member
		cidr string
	}{{a, cidrA}, {b, cidrB}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			info, err := c.mb.m.Create(ctx, CreateRequest{Name: name, CIDRs: []string{c.cidr}})
			res[i] = createResult{c.mb.name, info, err}
		}()
	}
	wg.Wait()
	return res
}

// Two nodes create one network name with different CIDRs at the same
// moment: exactly one is told success, the other a conflict that names the
// winner and its CIDR; both end with the winner's definition, and the
// loser's join gets an address of it.
func TestCreateRaceLoserIsTold(t *testing.T) {
	a, b := racePair(t)
	cidrs := map[string]string{"a": "10.81.0.0/16", "b": "10.82.0.0/16"}
	res := createAtOnce(a, b, "race2", cidrs["a"], cidrs["b"])
	var won, lost []createResult
	for _, r := range res {
		if r.err == nil {
			won = append(won, r)
		} else {
			lost = append(lost, r)
		}
	}
	if len(won) != 1 || len(lost) != 1 {
		t.Fatalf("Create on both at once = %+v; want one success and one conflict", res)
	}
	w, l := won[0], lost[0]
	if fmt.Sprint(w.info.CIDRs) != "["+cidrs[w.node]+"]" || w.info.Creator != w.node {
		t.Errorf("winner %s: %+v, want CIDR %s created by %s", w.node, w.info, cidrs[w.node], w.node)
	}
	if !errors.Is(l.err, fault.ErrConflict) {
		t.Fatalf("loser %s: %v, want a conflict", l.node, l.err)
	}
	for _, want := range []string{"node " + w.node, cidrs[w.node], cidrs[l.node], "won"} {
		if !strings.Contains(l.err.Error(), want) {
			t.Errorf("loser %s: %q does not say %q", l.node, l.err.Error(), want)
		}
	}
	loser := map[string]*member{"a": a, "b": b}[l.node]
	ni, err := loser.m.Join(context.Background(), "race2")
	if err != nil {
		t.Fatal(err)
	}
	if !netip.MustParsePrefix(cidrs[w.node]).Contains(ni.Addrs[0].Addr()) {
		t.Errorf("loser's join: address %v, want one of the winner's %s", ni.Addrs, cidrs[w.node])
	}
}

// The same network created on two nodes at once (say, every node's
// configuration lists it) is what both asked for: both succeed, and
// agree on the creator.
func TestCreateRaceAlike(t *testing.T) {
	a, b := racePair(t)
	res := createAtOnce(a, b, "same", "10.83.0.0/16", "10.83.0.0/16")
	for _, r := range res {
		if r.err != nil {
			t.Fatalf("%s: %v", r.node, r.err)
		}
	}
	if res[0].info.Creator != res[1].info.Creator || res[0].info.VNI != res[1].info.VNI {
		t.Errorf("the two creations disagree: %+v / %+v", res[0].info, res[1].info)
	}
}

// A join waiting for a network it does not know yet does not hold the
// operations lock: a create on the same node goes ahead meanwhile (and
// here brings the network the join waits for).
func TestJoinWaitDoesNotBlockCreate(t *testing.T) {
	n := newCluster(t).start("solo", "", Options{})
	waiting := make(chan struct{})
	n.m.hooks.waitingNetwork = func(string) { close(waiting) }
	joined := make(chan error, 1)
	go func() {
		_, err := n.m.Join(context.Background(), "later")
		joined <- err
	}()
	<-waiting
	if _, err := n.m.Create(context.Background(), CreateRequest{Name: "later", CIDRs: []string{"10.84.0.0/24"}}); err != nil {
		t.Fatal(err)
	}
	if err := <-joined; err != nil {
		t.Errorf("join of a network created while it waited: %v", err)
	}
}
