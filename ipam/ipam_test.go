package ipam

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/gossip/gossiptest"
	"github.com/overlayd/overlayd/internal/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type node struct {
	g *gossip.Gossip
	p *IPAM
}

type cluster struct {
	t     *testing.T
	net   *gossiptest.Network
	nodes map[string]*node
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{t: t, net: gossiptest.NewNetwork(), nodes: map[string]*node{}}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.p.Close()
			n.g.Close()
		}
	})
	return c
}

func (c *cluster) start(name string, seed string) *node {
	c.t.Helper()
	g, err := gossip.New(gossip.Options{Name: name, Profile: gossip.ProfileTest, Transport: c.net.NewTransport(name)})
	if err != nil {
		c.t.Fatal(err)
	}
	p, err := New(g, Options{Interval: 20 * time.Millisecond, RequestTimeout: 300 * time.Millisecond})
	if err != nil {
		c.t.Fatal(err)
	}
	n := &node{g, p}
	c.nodes[name] = n
	if seed != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Join(ctx, []string{c.net.Addr(seed)}); err != nil {
			c.t.Fatal(err)
		}
	}
	return n
}

func (c *cluster) kill(name string) {
	n := c.nodes[name]
	n.p.Close()
	n.g.Close()
	delete(c.nodes, name)
}

func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		cidr                    string
		dns, nodeLo, vipLo, top string
	}{
		{"10.1.0.0/24", "10.1.0.1", "10.1.0.2", "10.1.0.240", "10.1.0.254"},
		{"10.2.0.0/16", "10.2.0.1", "10.2.0.2", "10.2.240.0", "10.2.255.254"},
		{"fd00::/120", "fd00::1", "fd00::2", "fd00::f0", "fd00::ff"},
		// Of a /64's 64 host bits, the low 32 are the offsets.
		{"fd00:10::/64", "fd00:10::1", "fd00:10::2", "fd00:10::f000:0", "fd00:10::ffff:ffff"},
		{"fd00:20::/48", "fd00:20::1", "fd00:20::2", "fd00:20::f000:0", "fd00:20::ffff:ffff"},
	} {
		l, err := newLayout(Network{Name: "x", CIDRs: []netip.Prefix{netip.MustParsePrefix(tc.cidr)}})
		if err != nil {
			t.Fatal(err)
		}
		f := l.fams[0]
		v6 := f.cidr.Addr().Is6()
		got := fmt.Sprintln(l.DNS[0], l.addr(v6, f.nodeLo), l.addr(v6, f.vipLo), l.addr(v6, f.vipHi-1))
		want := fmt.Sprintln(tc.dns, tc.nodeLo, tc.vipLo, tc.top)
		if got != want {
			t.Errorf("layout(%s) = %s, want %s", tc.cidr, got, want)
		}
		if s, ok := l.slot(netip.MustParseAddr(tc.top)); !ok || s.off != f.vipHi-1 || s.v6 != v6 {
			t.Errorf("layout(%s).slot(%s) = %v, %v; want offset %d", tc.cidr, tc.top, s, ok, f.vipHi-1)
		}
	}
	l, err := newLayout(Network{Name: "x", CIDRs: []netip.Prefix{netip.MustParsePrefix("fd00:10::/64"), netip.MustParsePrefix("10.1.0.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(l.CIDRs, l.DNS); got != "[10.1.0.0/24 fd00:10::/64] [10.1.0.1 fd00:10::1]" {
		t.Errorf("dual-stack layout = %s, want IPv4 first and a DNS address per family", got)
	}
	// Beyond the low 32 bits of a /64: outside the offset space.
	if s, ok := l.slot(netip.MustParseAddr("fd00:10::1:0:0")); ok {
		t.Errorf("slot(fd00:10::1:0:0) = %v, want none (beyond the offsets)", s)
	}
	if s, ok := l.slot(netip.MustParseAddr("10.1.0.9")); !ok || s != (slot{false, 9}) {
		t.Errorf("slot(10.1.0.9) = %v, %v", s, ok)
	}
	for _, bad := range [][]string{{"10.0.0.0/28"}, {"fd00::/124"}, {"fd00::/32"}, {"10.0.0.0/24", "10.1.0.0/24"}, {"fd00::/64", "fd01::/64"}, {"::ffff:10.0.0.0/120"}, {}} {
		var cidrs []netip.Prefix
		for _, c := range bad {
			cidrs = append(cidrs, netip.MustParsePrefix(c))
		}
		if _, err := newLayout(Network{Name: "x", CIDRs: cidrs}); err == nil {
			t.Errorf("layout(%v) succeeded", bad)
		}
	}
}

// TestDualStack: a dual-stack network's families have their own pools,
// ranges and leases, handed out by the same construction, and a lease of
// one family never hides one of the other at the same offset.
func TestDualStack(t *testing.T) {
	c := newCluster(t)
	a := c.start("a", "")
	b := c.start("b", "a")
	cidrs := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("fd00:10::/64")}
	if err := a.p.CreateNetwork("blue", cidrs, 7); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "b knows blue", func() error {
		if _, ok := b.p.Network("blue"); !ok {
			return errors.New("not yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want := map[string]string{}
	for _, n := range []*node{a, b} {
		for _, f := range []Family{IPv4, IPv6} {
			addr, err := n.p.Allocate(ctx, "blue", n.g.Name(), f)
			if err != nil {
				t.Fatalf("%s: Allocate(%v): %v", n.g.Name(), f, err)
			}
			if FamilyOf(addr) != f || !Contains(cidrs, addr) {
				t.Fatalf("%s: Allocate(%v) = %v", n.g.Name(), f, addr)
			}
			if _, dup := want[addr.String()]; dup {
				t.Fatalf("%v allocated twice", addr)
			}
			want[addr.String()] = n.g.Name()
		}
	}
	if vip, err := a.p.AllocateVIP(ctx, "blue", "svc", IPv6); err != nil || vip != netip.MustParseAddr("fd00:10::f000:0") {
		t.Errorf("AllocateVIP(IPv6) = %v, %v; want fd00:10::f000:0", vip, err)
	}
	testutil.Eventually(t, 10*time.Second, "b sees every lease of both families held by its allocator", func() error {
		h := b.p.Holders("blue")
		for addr, owner := range want {
			if ls, ok := h[netip.MustParseAddr(addr)]; !ok || ls.Node != owner {
				return fmt.Errorf("%s: %+v, want held by %s", addr, ls, owner)
			}
		}
		return nil
	})
	nw, ok := b.p.Network("blue")
	if !ok || fmt.Sprint(nw.CIDRs, nw.DNS) != "[10.1.0.0/24 fd00:10::/64] [10.1.0.1 fd00:10::1]" {
		t.Errorf("b's Network(blue) = %+v, %v", nw, ok)
	}
	v4only := []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")}
	if err := a.p.CreateNetwork("red", v4only, 8); err != nil {
		t.Fatal(err)
	}
	if _, err := a.p.Allocate(ctx, "red", "x", IPv6); err == nil || !strings.Contains(err.Error(), "no IPv6 CIDR") {
		t.Errorf("Allocate(IPv6) in an IPv4 network = %v, want an error naming the missing family", err)
	}
	st, err := a.p.Export("blue")
	if err != nil {
		t.Fatal(err)
	}
	ds, err := DecodeState(st)
	if err != nil || len(ds.Network.CIDRs) != 2 {
		t.Fatalf("DecodeState(Export(dual-stack)) = %+v, %v", ds, err)
	}
}

func TestExhaustion(t *testing.T) {
	c := newCluster(t)
	a := c.start("a", "")
	cidr := netip.MustParsePrefix("10.1.0.0/26") // 46 node addresses, 15 VIPs
	if err := a.p.CreateNetwork("blue", []netip.Prefix{cidr}, 42); err != nil {
		t.Fatal(err)
	}
	if err := a.p.CreateNetwork("blue", []netip.Prefix{cidr}, 42); err == nil {
		t.Error("creating blue twice succeeded")
	}
	ctx := context.Background()
	seen := map[netip.Addr]bool{}
	for i := range 46 {
		addr, err := a.p.Allocate(ctx, "blue", fmt.Sprint("c", i), IPv4)
		if err != nil {
			t.Fatalf("Allocate #%d: %v", i, err)
		}
		if seen[addr] || addr == netip.MustParseAddr("10.1.0.1") || !cidr.Contains(addr) {
			t.Fatalf("Allocate #%d = %v: duplicate, DNS or outside", i, addr)
		}
		seen[addr] = true
	}
	_, err := a.p.Allocate(ctx, "blue", "one-too-many", IPv4)
	want := `ipam: network "blue" (10.1.0.0/26) has no free address`
	if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, ErrExhausted) {
		t.Errorf("Allocate on a full pool = %v, want %q", err, want)
	}
	vip, err := a.p.AllocateVIP(ctx, "blue", "svc", IPv4)
	if err != nil || vip != netip.MustParseAddr("10.1.0.48") {
		t.Errorf("AllocateVIP = %v, %v; want 10.1.0.48", vip, err)
	}
	// Release makes room again.
	if err := a.p.Release("blue", netip.MustParseAddr("10.1.0.7")); err != nil {
		t.Fatal(err)
	}
	if addr, err := a.p.Allocate(ctx, "blue", "again", IPv4); err != nil || addr != netip.MustParseAddr("10.1.0.7") {
		t.Errorf("Allocate after Release = %v, %v; want 10.1.0.7", addr, err)
	}
	if ls, ok := a.p.Lookup("blue", netip.MustParseAddr("10.1.0.7")); !ok || ls.Owner != "again" || ls.Node != "a" {
		t.Errorf("Lookup = %+v, %v", ls, ok)
	}
	if _, err := a.p.Allocate(ctx, "nosuch", "x", IPv4); err == nil {
		t.Error("Allocate in an unknown network succeeded")
	}
}

// TestManyNodesAtOnce: 20 nodes join one network at once and allocate,
// while partitions come and go; no address is ever given twice.
func TestManyNodesAtOnce(t *testing.T) {
	perNode := 4
	if testing.Short() {
		perNode = 2
	}
	c := newCluster(t)
	names := make([]string, 20)
	for i := range names {
		names[i] = fmt.Sprintf("n%02d", i)
		seed := ""
		if i > 0 {
			seed = names[0]
		}
		c.start(names[i], seed)
	}
	if err := c.nodes["n00"].p.CreateNetwork("blue", []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}, 7); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "network known everywhere", func() error {
		for name, n := range c.nodes {
			if _, ok := n.p.Network("blue"); !ok {
				return fmt.Errorf("%s does not know blue", name)
			}
		}
		return nil
	})
	stop := make(chan struct{})
	var chaos sync.WaitGroup
	chaos.Add(1)
	go func() { // partitions during the allocation
		defer chaos.Done()
		defer c.net.Heal() // the chaos ends healed, so allocations can finish
		rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
		for {
			var a, b []string
			for _, n := range names {
				if rng.IntN(3) == 0 {
					a = append(a, n)
				} else {
					b = append(b, n)
				}
			}
			c.net.Partition(a, b)
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(100+rng.IntN(300)) * time.Millisecond):
			}
			c.net.Heal()
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(100+rng.IntN(200)) * time.Millisecond):
			}
		}
	}()
	type result struct {
		node string
		addr netip.Addr
		err  error
	}
	results := make(chan result, len(names)*perNode)
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func(n *node) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			for i := range perNode {
				a, err := n.p.Allocate(ctx, "blue", fmt.Sprintf("%s-%d", name, i), IPv4)
				results <- result{name, a, err}
			}
		}(c.nodes[name])
	}
	time.AfterFunc(2*time.Second, func() { close(stop) })
	wg.Wait()
	chaos.Wait()
	c.net.Heal()
	close(results)
	byAddr := map[netip.Addr]string{}
	dups := 0
	for r := range results {
		if r.err != nil {
			t.Errorf("%s: Allocate: %v", r.node, r.err)
			continue
		}
		if prev, ok := byAddr[r.addr]; ok {
			t.Errorf("%v given to %s and %s", r.addr, prev, r.node)
			dups++
		}
		byAddr[r.addr] = r.node
	}
	t.Logf("%d addresses allocated by 20 nodes, %d duplicates", len(byAddr), dups)
	// After healing, every node sees every lease, each owned by the node
	// holding its range.
	testutil.Eventually(t, 20*time.Second, "all leases everywhere", func() error {
		for name, n := range c.nodes {
			for a, owner := range byAddr {
				ls, ok := n.p.Lookup("blue", a)
				if !ok || ls.Node != owner {
					return fmt.Errorf("%s: Lookup(%v) = %+v, %v; want node %s", name, a, ls, ok, owner)
				}
			}
		}
		return nil
	})
}

// TestRestartKeepsLeases: a node that re-supplies its exported state after
// a restart keeps its leases and never hands them out again.
func TestRestartKeepsLeases(t *testing.T) {
	c := newCluster(t)
	a := c.start("a", "")
	b := c.start("b", "a")
	if err := a.p.CreateNetwork("blue", []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}, 7); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "b knows blue", func() error {
		if _, ok := b.p.Network("blue"); !ok {
			return errors.New("not yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mine []netip.Addr
	for i := range 3 {
		addr, err := b.p.Allocate(ctx, "blue", fmt.Sprint("b", i), IPv4)
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, addr)
	}
	state, err := b.p.Export("blue")
	if err != nil {
		t.Fatal(err)
	}
	c.kill("b")
	b = c.start("b", "")
	if err := b.p.Import(state); err != nil {
		t.Fatal(err)
	}
	if err := b.g.Join(ctx, []string{c.net.Addr("a")}); err != nil {
		t.Fatal(err)
	}
	for _, addr := range mine {
		if ls, ok := b.p.Lookup("blue", addr); !ok || ls.Node != "b" {
			t.Errorf("after restart, Lookup(%v) = %+v, %v", addr, ls, ok)
		}
	}
	addr, err := b.p.Allocate(ctx, "blue", "b-new", IPv4)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mine {
		if m == addr {
			t.Errorf("restarted node gave %v again", addr)
		}
	}
	testutil.Eventually(t, 10*time.Second, "a sees b's leases", func() error {
		for _, m := range append(mine, addr) {
			if ls, ok := a.p.Lookup("blue", m); !ok || ls.Node != "b" {
				return fmt.Errorf("a: Lookup(%v) = %+v, %v", m, ls, ok)
			}
		}
		return nil
	})
	// A corrupt state is a clear error.
	bad := append([]byte(nil), state...)
	bad[len(bad)/2] ^= 0xff
	if err := b.p.Import(bad); err == nil || !strings.Contains(err.Error(), "ipam: state") {
		t.Errorf("Import(corrupt) = %v, want a clear error", err)
	}
	if err := b.p.Import(state[:len(state)-3]); err == nil {
		t.Error("Import(truncated) succeeded")
	}
}

func FuzzDecodeState(f *testing.F) {
	s := &State{
		Network: Network{Name: "blue", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}, VNI: 7, Creator: "a"},
		Ranges:  []rng{{Pool: poolNode, Start: 2, End: 100, Owner: "a", Version: 3, Creator: "a"}},
		Leases:  []Lease{{Addr: netip.MustParseAddr("10.1.0.2"), Owner: "c1"}},
	}
	f.Add(encodeState(s))
	f.Add([]byte("ovipam"))
	s.Network.CIDRs = append(s.Network.CIDRs, netip.MustParsePrefix("fd00:10::/64"))
	s.Ranges = append(s.Ranges, rng{Pool: poolNode6, Start: 2, End: 1 << 31, Owner: "a", Version: 1, Creator: "a"})
	s.Leases = append(s.Leases, Lease{Addr: netip.MustParseAddr("fd00:10::2"), Owner: "c1"})
	f.Add(encodeState(s))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := DecodeState(b)
		if err != nil {
			return
		}
		if _, err := DecodeState(encodeState(st)); err != nil {
			t.Fatalf("re-encoding a decoded state fails: %v", err)
		}
	})
}
