package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/node/nodetest"
	"github.com/overlayd/overlayd/vxlan"
)

// echoOver serves one echo listener on node dst's address and checks that
// node src reaches it over the overlay.
func echoOver(t *testing.T, c *GossipCluster, src, dst int, addr netip.Addr, port int) error {
	t.Helper()
	ln, err := c.Node(dst).Listen("tcp", net.JoinHostPort(addr.String(), fmt.Sprint(port)))
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(conn, conn)
		conn.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := c.Node(src).Dial(ctx, "tcp", net.JoinHostPort(addr.String(), fmt.Sprint(port)))
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte(fmt.Sprintf("hello from %d to %d", src, dst))
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		return err
	}
	if string(got) != string(msg) {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// TestGossipClusterConvergesWithdrawsRestores: 10 nodes learn each other's
// routes on one network, carry traffic over them, withdraw a crashed node
// everywhere and take it back, with the same address, when it restarts.
func TestGossipClusterConvergesWithdrawsRestores(t *testing.T) {
	OnEachNet(t, testGossipClusterConvergesWithdrawsRestores)
}

func testGossipClusterConvergesWithdrawsRestores(t *testing.T, over Net) {
	const n = 10
	c := NewGossipCluster(t, n, GossipOptions{Net: over})
	if _, err := c.Node(0).CreateNetwork(context.Background(), api.CreateNetwork{Name: "blue", CIDR: "10.50.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	addrs := make([]netip.Prefix, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); addrs[i] = c.Join(i, "blue") }()
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i, a := range addrs {
		if j, dup := seen[a.Addr()]; dup {
			t.Fatalf("nodes %d and %d both got %v", j, i, a)
		}
		seen[a.Addr()] = i
	}
	took := testutil.Eventually(t, 20*time.Second, "10 nodes learn 9 routes each and converge", func() error {
		for i := range n {
			if rs := c.RoutesOf(i); len(rs) != n-1 {
				return fmt.Errorf("node %d has %d routes: %v", i, len(rs), slices.Sorted(maps.Keys(rs)))
			}
		}
		return converged(c, "blue", "")
	})
	t.Logf("converged in %v after the joins (digest %s)", took.Round(time.Millisecond), c.Node(0).Digest("blue"))

	for _, p := range [][2]int{{1, 2}, {9, 0}, {4, 7}} {
		if err := echoOver(t, c, p[0], p[1], addrs[p[1]].Addr(), 7000); err != nil {
			t.Fatalf("node %d → node %d (%v): %v", p[0], p[1], addrs[p[1]], err)
		}
	}

	const victim = 3
	c.Crash(victim)
	took = testutil.Eventually(t, 15*time.Second, "the crashed node's route is withdrawn on every survivor", func() error {
		for _, i := range c.Live() {
			if r, ok := c.RoutesOf(i)[c.Name(victim)]; ok {
				return fmt.Errorf("node %d still routes %+v", i, r)
			}
		}
		return nil
	})
	t.Logf("crash → withdrawn on all %d survivors in %v", n-1, took.Round(time.Millisecond))
	if err := echoOver(t, c, 1, 2, addrs[2].Addr(), 7001); err != nil {
		t.Fatalf("survivors lost traffic: %v", err)
	}

	c.Restart(victim)
	st, _ := c.Node(victim).Status(context.Background())
	if len(st.Networks) != 1 || st.Networks[0].Addr != addrs[victim].String() {
		t.Fatalf("restarted node's networks %+v, want blue with %v", st.Networks, addrs[victim])
	}
	took = testutil.Eventually(t, 15*time.Second, "the restarted node's route is back everywhere", func() error {
		for _, i := range c.Live() {
			if i == victim {
				continue
			}
			r, ok := c.RoutesOf(i)[c.Name(victim)]
			if want := netip.PrefixFrom(addrs[victim].Addr(), 32).String(); !ok || r.Prefix != want {
				return fmt.Errorf("node %d routes the victim as %+v (present %v), want %s", i, r, ok, want)
			}
		}
		if rs := c.RoutesOf(victim); len(rs) != n-1 {
			return fmt.Errorf("the restarted node has %d routes, want %d", len(rs), n-1)
		}
		return converged(c, "blue")
	})
	t.Logf("restart → restored on all nodes in %v", took.Round(time.Millisecond))
	if err := echoOver(t, c, 0, victim, addrs[victim].Addr(), 7002); err != nil {
		t.Fatalf("node 0 → restarted node: %v", err)
	}
	if err := echoOver(t, c, victim, 8, addrs[8].Addr(), 7003); err != nil {
		t.Fatalf("restarted node → node 8: %v", err)
	}
}

// TestGossipNetworksIsolated: node 0 is on red and green, node 1 on red
// only, node 2 on green only. Nobody reaches a network it is not on, and
// VXLAN carrying another network's VNI is dropped and counted.
func TestGossipNetworksIsolated(t *testing.T) { OnEachNet(t, testGossipNetworksIsolated) }

func testGossipNetworksIsolated(t *testing.T, over Net) {
	c := NewGossipCluster(t, 3, GossipOptions{Net: over})
	ctx := context.Background()
	if _, err := c.Node(0).CreateNetwork(ctx, api.CreateNetwork{Name: "red", CIDR: "10.61.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	vniGreen := uint32(4242)
	if _, err := c.Node(0).CreateNetwork(ctx, api.CreateNetwork{Name: "green", CIDR: "10.62.0.0/24", VNI: &vniGreen}); err != nil {
		t.Fatal(err)
	}
	red0, green0 := c.Join(0, "red"), c.Join(0, "green")
	red1 := c.Join(1, "red")
	green2 := c.Join(2, "green")
	testutil.Eventually(t, 10*time.Second, "routes learned", func() error {
		if r0, r1, r2 := c.RoutesOf(0), c.RoutesOf(1), c.RoutesOf(2); len(r0) != 2 || len(r1) != 1 || len(r2) != 1 {
			return fmt.Errorf("routes %v, %v, %v; want 2, 1 and 1", r0, r1, r2)
		}
		return nil
	})
	if r := c.RoutesOf(1)[c.Name(0)]; r.Prefix != netip.PrefixFrom(red0.Addr(), 32).String() {
		t.Errorf("node 1 routes node 0 as %+v, want only its red address %v", r, red0)
	}
	if err := echoOver(t, c, 1, 0, red0.Addr(), 7100); err != nil {
		t.Fatalf("red: node 1 → node 0: %v", err)
	}
	if err := echoOver(t, c, 2, 0, green0.Addr(), 7101); err != nil {
		t.Fatalf("green: node 2 → node 0: %v", err)
	}
	if err := echoOver(t, c, 1, 2, green2.Addr(), 7102); err == nil {
		t.Error("node 1 (red only) reached node 2's green address")
	}
	if err := echoOver(t, c, 1, 0, green0.Addr(), 7103); err == nil {
		t.Error("node 1 (red only) reached node 0's green address")
	}
	if _, ok := nodetest.Gossip(c.Node(1)).Get(catalog.TableRoutes, "green", catalog.RouteKey(c.Name(2))); ok {
		t.Error("node 1 holds green's state without taking part in it")
	}

	// Forged VXLAN from a peer's IP: green's VNI, inner destination node
	// 1's red address. Node 1 has no green network: unknown_vni.
	before := nodetest.Router(c.Node(1)).Stats().Drops["unknown_vni"]
	sendVXLAN(t, c, c.Node(1).VTEP(), vniGreen, red1.Addr())
	testutil.Eventually(t, 5*time.Second, "node 1 counts the green packet as unknown_vni", func() error {
		if got := nodetest.Router(c.Node(1)).Stats().Drops["unknown_vni"]; got <= before {
			return fmt.Errorf("%d unknown_vni drops, was %d", got, before)
		}
		return nil
	})
	// Node 0 is on both: a green packet for its red address is not for us.
	before = nodetest.Router(c.Node(0)).Stats().Drops["not_for_us"]
	in := nodetest.Router(c.Node(0)).Stats().Inbound.Packets
	sendVXLAN(t, c, c.Node(0).VTEP(), vniGreen, red0.Addr())
	testutil.Eventually(t, 5*time.Second, "node 0 counts the cross-VNI packet as not_for_us", func() error {
		if got := nodetest.Router(c.Node(0)).Stats().Drops["not_for_us"]; got <= before {
			return fmt.Errorf("%d not_for_us drops, was %d", got, before)
		}
		return nil
	})
	if got := nodetest.Router(c.Node(0)).Stats().Inbound.Packets; got != in {
		t.Errorf("node 0 delivered %d packets from the forged datagram", got-in)
	}

	// Leave: node 0 loses its green address, node 2 its route to it.
	if err := c.Node(0).LeaveNetwork(ctx, "green"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "node 2 withdraws node 0's green route", func() error {
		if rs := c.RoutesOf(2); len(rs) != 0 {
			return fmt.Errorf("node 2 routes %v", rs)
		}
		return nil
	})
	if err := echoOver(t, c, 2, 0, green0.Addr(), 7104); err == nil {
		t.Error("node 2 reached node 0's green address after node 0 left green")
	}
	if err := c.Node(1).LeaveNetwork(ctx, "green"); err == nil || !strings.Contains(err.Error(), "has not joined") {
		t.Errorf("leave of a network not joined: %v", err)
	}
}

// sendVXLAN sends one VXLAN datagram to vtep from a peer's underlay IP
// (c.sendUnderlay): an ICMP echo to dst inside, addressed to the router's
// broadcast MAC.
func sendVXLAN(t *testing.T, c *GossipCluster, vtep netip.AddrPort, vni uint32, dst netip.Addr) {
	t.Helper()
	ip := make([]byte, 28)
	ip[0], ip[3], ip[8], ip[9] = 0x45, 28, 64, 1
	copy(ip[12:16], []byte{10, 9, 9, 9})
	a := dst.As4()
	copy(ip[16:20], a[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(ip[i])<<8 | uint32(ip[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	ip[10], ip[11] = byte(^sum>>8), byte(^sum)
	ip[20] = 8 // echo request
	buf := make([]byte, vxlan.EncapLen+len(ip))
	copy(buf[vxlan.EncapLen:], ip)
	d := vxlan.Encap(buf, vxlan.EncapLen, len(ip), vni, vxlan.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, vxlan.MAC{2, 0, 0, 0, 0, 1}, vxlan.EtherTypeIPv4)
	c.sendUnderlay(t, vtep, d)
}

// TestGossipWrongKeyRefused: a node with another key, or none, cannot join
// a keyed cluster, and the cluster's membership is unchanged.
func TestGossipWrongKeyRefused(t *testing.T) { OnEachNet(t, testGossipWrongKeyRefused) }

func testGossipWrongKeyRefused(t *testing.T, over Net) {
	dir := t.TempDir()
	keyFile := func(name string, b byte) string {
		p := filepath.Join(dir, name)
		k := make([]byte, 32)
		for i := range k {
			k[i] = b
		}
		if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, bad := keyFile("good.key", 1), keyFile("bad.key", 2)
	c := NewGossipCluster(t, 4, GossipOptions{Edit: func(i int, cfg *config.Config) {
		switch i {
		case 2:
			cfg.Gossip.KeyFile = bad
		case 3:
			cfg.Gossip.KeyFile = ""
		default:
			cfg.Gossip.KeyFile = good
		}
	}, Net: over})
	testutil.Eventually(t, 10*time.Second, "the keyed pair sees each other", func() error {
		if ms := nodetest.Gossip(c.Node(0)).Members(); len(ms) != 2 {
			return fmt.Errorf("node 0's members: %+v", ms)
		}
		return nil
	})
	// The intruders' joins were answered and refused (each says why)...
	for _, i := range []int{2, 3} {
		testutil.Eventually(t, 10*time.Second, fmt.Sprintf("node %d's join refused", i), func() error {
			if st := nodetest.Gossip(c.Node(i)).Stats(); st.JoinError == "" {
				return fmt.Errorf("no join error; gossip stats %+v", st)
			}
			return nil
		})
		t.Logf("node %d: %s", i, nodetest.Gossip(c.Node(i)).Stats().JoinError)
	}
	// ...and a write of node 1's, sent after them, reaching node 0 proves
	// node 0 has handled everything they sent before.
	if err := nodetest.Gossip(c.Node(1)).Put("e2e.marker", "", "after-intruders", []byte("m")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "node 1's marker on node 0", func() error {
		if _, ok := nodetest.Gossip(c.Node(0)).Get("e2e.marker", "", "after-intruders"); !ok {
			return errors.New("not there")
		}
		return nil
	})
	for _, i := range []int{0, 1} {
		var names []string
		for _, m := range nodetest.Gossip(c.Node(i)).Members() {
			names = append(names, m.Name)
		}
		sort.Strings(names)
		if !slices.Equal(names, []string{"gnode0", "gnode1"}) {
			t.Errorf("node %d members %v, want only gnode0 and gnode1", i, names)
		}
	}
	for _, i := range []int{2, 3} {
		if ms := nodetest.Gossip(c.Node(i)).Members(); len(ms) != 1 {
			t.Errorf("node %d (wrong or no key) sees %d members, want only itself", i, len(ms))
		}
	}
}

// TestGossipStateCorrupt: a corrupt state file stops the node with an
// error that names the file.
func TestGossipStateCorrupt(t *testing.T) { OnEachNet(t, testGossipStateCorrupt) }

func testGossipStateCorrupt(t *testing.T, over Net) {
	c := NewGossipCluster(t, 1, GossipOptions{Net: over})
	if _, err := c.Node(0).CreateNetwork(context.Background(), api.CreateNetwork{Name: "blue", CIDR: "10.70.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	c.Join(0, "blue")
	c.Crash(0)
	dir := c.cfgs[0].StateDir
	// One rule for every state file (issue 10 §3): a damaged one does not
	// stop the node; it is reported, moved aside to NAME.corrupt, and what
	// it held comes from the other files and the peers (node/state_test.go
	// checks the reports and the recovery).
	for _, f := range []string{"networks.json", "ipam-blue.state"} {
		path := filepath.Join(dir, f)
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		bad := slices.Clone(orig)
		bad[len(bad)/2] ^= 0x55
		os.WriteFile(path, bad, 0o600)
		if _, err := newNodeErr(c.cfgs[0]); err != nil {
			t.Errorf("start with corrupt %s: %v, want a start that recovers", f, err)
		}
		if _, err := os.Stat(path + ".corrupt"); err != nil {
			t.Errorf("corrupt %s not moved aside: %v", f, err)
		}
		os.Remove(path + ".corrupt")
		os.WriteFile(path, orig, 0o600)
	}
}

// TestGossipStaticBesideLearned: static routes (--peer, on the --addr
// network) keep working beside learned ones on a gossip node.
func TestGossipStaticBesideLearned(t *testing.T) { OnEachNet(t, testGossipStaticBesideLearned) }

func testGossipStaticBesideLearned(t *testing.T, over Net) {
	c := NewGossipCluster(t, 2, GossipOptions{Edit: func(i int, cfg *config.Config) {
		cfg.Addr = NodeAddr(i) // 10.99.(i+1).1/16, VNI 42
	}, Net: over})
	// The static routes need the other node's VTEP, known only now.
	for i := range 2 {
		other := c.Node(1 - i)
		peer := config.Peer{Prefix: netip.PrefixFrom(NodeAddr(1-i).Addr(), 32), VTEP: other.VTEP()}
		if err := c.Node(i).SetStaticRoutes([]config.Peer{peer}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Node(0).CreateNetwork(context.Background(), api.CreateNetwork{Name: "blue", CIDR: "10.99.0.0/24"}); err == nil {
		t.Error("a network overlapping the static one was created")
	}
	if _, err := c.Node(0).CreateNetwork(context.Background(), api.CreateNetwork{Name: "blue", CIDR: "10.80.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	blue1 := c.Join(1, "blue")
	c.Join(0, "blue")
	testutil.Eventually(t, 10*time.Second, "a static and a learned route on each node", func() error {
		for i := range 2 {
			rs, err := c.Node(i).Routes(context.Background())
			if err != nil {
				return err
			}
			owners := map[string]bool{}
			for _, r := range rs.Routes {
				owners[r.Owner] = true
			}
			if !owners["static"] || !owners[c.Name(1-i)] {
				return fmt.Errorf("node %d's routes are owned by %v", i, owners)
			}
		}
		return nil
	})
	if err := echoOver(t, c, 0, 1, NodeAddr(1).Addr(), 7200); err != nil {
		t.Errorf("static route: %v", err)
	}
	if err := echoOver(t, c, 0, 1, blue1.Addr(), 7201); err != nil {
		t.Errorf("learned route: %v", err)
	}
}

// converged says, for each network, whether every live node has the
// same digest of it, and if not, which digests they have.
func converged(c *GossipCluster, networks ...string) error {
	for _, nw := range networks {
		if !c.Converged(nw) {
			ds := map[string]string{}
			for _, i := range c.Live() {
				ds[c.Name(i)] = c.Node(i).Digest(nw)
			}
			return fmt.Errorf("network %q not converged: digests %v", nw, ds)
		}
	}
	return nil
}
