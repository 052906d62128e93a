package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/node"
	"github.com/overlayd/overlayd/node/nodetest"
)

// serveBackend answers every TCP connection on ln with name and a newline,
// then echoes, and every UDP datagram on pc with name; until they close.
func serveBackend(ln net.Listener, pc net.PacketConn, name string) {
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				if _, err := io.WriteString(conn, name+"\n"); err != nil {
					return
				}
				io.Copy(conn, conn)
			}()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_ = n
			pc.WriteTo([]byte(name), from)
		}
	}()
}

// vipConn is a client connection through a VIP, with the backend's name.
type vipConn struct {
	net.Conn
	r       *bufio.Reader
	backend string
}

func dialVIP(nd *node.Node, vip string) (*vipConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := nd.Dial(ctx, "tcp", vip)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	name, err := r.ReadString('\n')
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read the backend's name: %w", err)
	}
	conn.SetDeadline(time.Time{})
	return &vipConn{Conn: conn, r: r, backend: strings.TrimSpace(name)}, nil
}

// echo checks that the connection still carries data both ways.
func (c *vipConn) echo(msg string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c.r, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// spread makes n connections to vip from the client nodes, 16 at a time,
// and counts them by backend.
func spread(t *testing.T, c *GossipCluster, clients []int, vip string, n int) map[string]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	var firstErr error
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for k := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			vc, err := dialVIP(c.Node(clients[k%len(clients)]), vip)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				counts["error"]++
				return
			}
			vc.Close()
			counts[vc.backend]++
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("%d of %d connections to %s failed; first: %v", counts["error"], n, vip, firstErr)
	}
	return counts
}

// inTable reports whether node i's balancer has backend addr in service
// name's table with a positive weight.
func inTable(nd *node.Node, name, addr string) bool {
	for _, s := range nodetest.Balancer(nd).Stats().Services {
		if s.Name != name {
			continue
		}
		for _, b := range s.Backends {
			if b.Addr.String() == addr && b.Weight > 0 {
				return true
			}
		}
	}
	return false
}

// TestServiceVIPBalancing: a service with three backends on three nodes
// of a gossip cluster, clients on two other nodes. 600 TCP connections
// spread evenly; UDP goes through the VIP too; a drained backend takes no
// new flows while its established flow completes; a crashed backend node
// leaves the tables (kill-to-withdraw logged), others' flows are
// untouched, new flows all go to live backends and the crashed backend's
// client gets a reset.
func TestServiceVIPBalancing(t *testing.T) { OnEachNet(t, testServiceVIPBalancing) }

func testServiceVIPBalancing(t *testing.T, over Net) {
	const nw = "svc"
	c := NewGossipCluster(t, 5, GossipOptions{Net: over})
	ctx := context.Background()
	if _, err := c.Node(0).CreateNetwork(ctx, api.CreateNetwork{Name: nw, CIDR: "10.60.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	addrs := make([]netip.Prefix, 5)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() { defer wg.Done(); addrs[i] = c.Join(i, nw) }()
	}
	wg.Wait()
	testutil.Eventually(t, 20*time.Second, "routes converge", c.routesConverged(5))

	clients, backends := []int{0, 4}, []int{1, 2, 3}
	backendAddr := map[string]string{} // name → ip:port of its TCP backend (VIP:80 → :8080)
	udpAddr := map[string]string{}     // name → ip:port of its UDP backend (VIP:53 → :53)
	for _, i := range backends {
		a := netip.AddrPortFrom(addrs[i].Addr(), 8080).String()
		ln, err := c.Node(i).Listen("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		u := netip.AddrPortFrom(addrs[i].Addr(), 53).String()
		pc, err := c.Node(i).ListenPacket("udp", u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close(); pc.Close() })
		serveBackend(ln, pc, c.Name(i))
		backendAddr[c.Name(i)] = a
		udpAddr[c.Name(i)] = u
	}

	svc, err := c.Node(0).CreateService(ctx, api.CreateService{Name: "web", Network: nw, Ports: []string{"80/tcp", "53/udp"}})
	if err != nil {
		t.Fatal(err)
	}
	vip, err := netip.ParseAddr(svc.VIP)
	if err != nil || !netip.MustParsePrefix("10.60.0.0/16").Contains(vip) {
		t.Fatalf("service VIP %q, want one of 10.60.0.0/16", svc.VIP)
	}
	t.Logf("service web: VIP %s ports %v", svc.VIP, svc.Ports)
	for _, i := range backends {
		// The backend's own node adds it (it owns the entry), after
		// gossip has brought it the service.
		testutil.Eventually(t, 10*time.Second, "the service reaches "+c.Name(i), c.knowsService(i, nw, "web"))
		// :8080 serves VIP port 80 (a port of another number, mapped);
		// :53 serves 53/udp, the port of its own number.
		if _, err := c.Node(i).AddBackend(ctx, api.AddBackend{Service: "web", Network: nw, Addr: backendAddr[c.Name(i)], Weight: 1}); err == nil ||
			!strings.Contains(err.Error(), "say which one backend "+backendAddr[c.Name(i)]+" serves with --service-port PORT") {
			t.Fatalf("add-backend :8080 to a service with ports 80/tcp and 53/udp = %v, want a request for --service-port", err)
		}
		if _, err := c.Node(i).AddBackend(ctx, api.AddBackend{Service: "web", Network: nw, Addr: backendAddr[c.Name(i)], Weight: 1, ServicePort: 80}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Node(i).AddBackend(ctx, api.AddBackend{Service: "web", Network: nw, Addr: udpAddr[c.Name(i)], Weight: 1}); err != nil {
			t.Fatal(err)
		}
	}
	took := testutil.Eventually(t, 10*time.Second, "both clients' tables hold the three backends", func() error {
		for _, i := range clients {
			for _, a := range backendAddr {
				if err := c.tableHolds(i, true, "web", a); err != nil {
					return err
				}
			}
		}
		return nil
	})
	t.Logf("backends in the clients' tables %v after the last add", took.Round(time.Millisecond))
	// Another node may not remove a backend it did not add.
	if _, err := c.Node(0).RemoveBackend(ctx, api.BackendRef{Service: "web", Network: nw, Addr: backendAddr[c.Name(1)]}, false); err == nil ||
		!strings.Contains(err.Error(), "was added by node gnode1; run the command there") {
		t.Errorf("remove another node's backend: %v, want a refusal naming gnode1", err)
	}

	tcpVIP := netip.AddrPortFrom(vip, 80).String()
	start := time.Now()
	counts := spread(t, c, clients, tcpVIP, 600)
	t.Logf("600 connections (%v): %v", time.Since(start).Round(time.Millisecond), counts)
	for _, i := range backends {
		got := counts[c.Name(i)]
		if got < 200-60 || got > 200+60 { // ±10% of the total
			t.Errorf("%s got %d of 600 connections, want 200 ± 60", c.Name(i), got)
		}
	}

	// UDP through the VIP: each flow (source port) gets one backend's answer.
	udpCounts := map[string]int{}
	for k := range 30 {
		nd := c.Node(clients[k%2])
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := nd.Dial(dctx, "udp", netip.AddrPortFrom(vip, 53).String())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("who")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := conn.Read(buf)
		conn.Close()
		if err != nil {
			t.Fatalf("UDP through the VIP: %v", err)
		}
		udpCounts[string(buf[:n])]++
	}
	t.Logf("30 UDP flows: %v", udpCounts)
	if len(udpCounts) < 2 {
		t.Errorf("30 UDP flows all went to %v", udpCounts)
	}

	// Hold one connection to each backend.
	held := map[string]*vipConn{}
	testutil.Eventually(t, 10*time.Second, "a connection to each backend", func() error {
		vc, err := dialVIP(c.Node(clients[len(held)%2]), tcpVIP)
		if err != nil {
			t.Fatal(err)
		}
		if held[vc.backend] != nil {
			vc.Close()
		} else {
			held[vc.backend] = vc
		}
		return errIf(len(held) != 3, fmt.Sprintf("connections to %d backends so far", len(held)))
	})
	defer func() {
		for _, vc := range held {
			vc.Close()
		}
	}()
	info, err := c.Node(0).Service(ctx, nw, "web")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("service show web on gnode0: flows %d, backends %+v", info.Flows, info.Backends)

	// Drain gnode1's backend: no new flows to it, its flow completes.
	drained := c.Name(1)
	if _, err := c.Node(1).RemoveBackend(ctx, api.BackendRef{Service: "web", Network: nw, Addr: backendAddr[drained]}, true); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the drained backend leaves the clients' tables", func() error {
		return errors.Join(c.tableHolds(0, false, "web", backendAddr[drained]), c.tableHolds(4, false, "web", backendAddr[drained]))
	})
	counts = spread(t, c, clients, tcpVIP, 60)
	t.Logf("60 connections with %s draining: %v", drained, counts)
	if counts[drained] != 0 {
		t.Errorf("%d new connections went to the drained %s", counts[drained], drained)
	}
	if err := held[drained].echo("still there?"); err != nil {
		t.Errorf("established flow to the drained backend: %v", err)
	}
	if _, err := c.Node(1).AddBackend(ctx, api.AddBackend{Service: "web", Network: nw, Addr: backendAddr[drained], Weight: 1}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the undrained backend is back in the tables", func() error {
		return errors.Join(c.tableHolds(0, true, "web", backendAddr[drained]), c.tableHolds(4, true, "web", backendAddr[drained]))
	})

	// Crash gnode3 in the middle of its flow.
	victim := c.Name(3)
	crashed := time.Now()
	c.Crash(3)
	testutil.Eventually(t, 15*time.Second, "the crashed backend leaves both clients' tables", func() error {
		return errors.Join(c.tableHolds(0, false, "web", backendAddr[victim]), c.tableHolds(4, false, "web", backendAddr[victim]))
	})
	t.Logf("kill-to-withdraw: %v (both clients' Maglev tables)", time.Since(crashed).Round(time.Millisecond))
	for name, vc := range held {
		if name == victim {
			continue
		}
		if err := vc.echo("after the crash of " + victim); err != nil {
			t.Errorf("flow to %s broken by the crash of %s: %v", name, victim, err)
		}
	}
	counts = spread(t, c, clients, tcpVIP, 60)
	t.Logf("60 connections after the crash: %v", counts)
	if counts[victim] != 0 {
		t.Errorf("%d new connections went to the dead %s", counts[victim], victim)
	}
	// The dead backend's client is reset, not blackholed.
	vc := held[victim]
	vc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(vc, "anyone?")
	_, err = vc.r.ReadByte()
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Errorf("client of the dead backend: read %v, want a reset", err)
	} else {
		t.Logf("client of the dead backend: %v", err)
	}
}

// TestServiceHealthCheckLocalBackendRemove: a backend with a TCP check
// and no server turns unhealthy (probed through its own node's netstack)
// and healthy again once its server listens, a UDP-checked one without a
// server turns unhealthy too; a client on a backend's own
// node is balanced over the other backends only; a service is removed only
// by its creator, after which its VIP refuses connections.
func TestServiceHealthCheckLocalBackendRemove(t *testing.T) {
	OnEachNet(t, testServiceHealthCheckLocalBackendRemove)
}

func testServiceHealthCheckLocalBackendRemove(t *testing.T, over Net) {
	const nw = "hc"
	c := NewGossipCluster(t, 3, GossipOptions{Net: over})
	ctx := context.Background()
	if _, err := c.Node(0).CreateNetwork(ctx, api.CreateNetwork{Name: nw, CIDR: "10.61.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	addrs := make([]netip.Prefix, 3)
	for i := range 3 {
		addrs[i] = c.Join(i, nw)
	}
	testutil.Eventually(t, 20*time.Second, "routes converge", c.routesConverged(3))
	svc, err := c.Node(0).CreateService(ctx, api.CreateService{Name: "api", Ports: []string{"9000"}})
	if err != nil {
		t.Fatal(err)
	}
	vip := netip.AddrPortFrom(netip.MustParseAddr(svc.VIP), 9000).String()
	a1 := netip.AddrPortFrom(addrs[1].Addr(), 9000).String()
	a2 := netip.AddrPortFrom(addrs[2].Addr(), 9000).String()
	testutil.Eventually(t, 10*time.Second, "the service reaches gnode1 and gnode2", func() error {
		return errors.Join(c.knowsService(1, "", "api")(), c.knowsService(2, "", "api")())
	})
	if _, err := c.Node(1).AddBackend(ctx, api.AddBackend{Service: "api", Addr: a1, Weight: 1, Check: "tcp"}); err != nil {
		t.Fatal(err)
	}
	state := func(i int, addr string) string {
		s, err := c.Node(i).Service(ctx, nw, "api")
		if err != nil {
			return err.Error()
		}
		for _, b := range s.Backends {
			if b.Addr == addr {
				return b.State
			}
		}
		return "absent"
	}
	// A UDP check too: nothing listens on port 5300, so the probe draws
	// an ICMP port unreachable.
	if _, err := c.Node(0).CreateService(ctx, api.CreateService{Name: "dns", Ports: []string{"53/udp"}}); err != nil {
		t.Fatal(err)
	}
	a1u := netip.AddrPortFrom(addrs[1].Addr(), 5300).String()
	testutil.Eventually(t, 10*time.Second, "service dns reaches gnode1", c.knowsService(1, "", "dns"))
	if _, err := c.Node(1).AddBackend(ctx, api.AddBackend{Service: "dns", Addr: a1u, Weight: 1, Check: "udp"}); err != nil {
		t.Fatal(err)
	}
	udpState := func() string {
		s, err := c.Node(0).Service(ctx, nw, "dns")
		if err != nil || len(s.Backends) != 1 {
			return fmt.Sprint(err)
		}
		return s.Backends[0].State
	}
	took := testutil.Eventually(t, 15*time.Second, "gnode1's backend without a server turns unhealthy on gnode0", func() error {
		st := state(0, a1)
		return errIf(st != "unhealthy", "state "+st)
	})
	t.Logf("no server → unhealthy on gnode0 in %v", took.Round(time.Millisecond))
	testutil.Eventually(t, 5*time.Second, "the UDP backend without a server turns unhealthy", func() error {
		st := udpState()
		return errIf(st != "unhealthy", "state "+st)
	})
	ln1, err := c.Node(1).Listen("tcp", a1)
	if err != nil {
		t.Fatal(err)
	}
	pc1, _ := c.Node(1).ListenPacket("udp", a1)
	defer func() { ln1.Close(); pc1.Close() }()
	serveBackend(ln1, pc1, "gnode1")
	took = testutil.Eventually(t, 15*time.Second, "gnode1's backend turns healthy again", func() error { return c.tableHolds(0, true, "api", a1) })
	t.Logf("server up → healthy in gnode0's table in %v", took.Round(time.Millisecond))
	if vc, err := dialVIP(c.Node(0), vip); err != nil || vc.backend != "gnode1" {
		t.Fatalf("gnode0 → VIP: %v %v, want gnode1", vc, err)
	} else {
		vc.Close()
	}

	// gnode2 hosts a backend too; its own clients go to gnode1 only.
	ln2, err := c.Node(2).Listen("tcp", a2)
	if err != nil {
		t.Fatal(err)
	}
	pc2, _ := c.Node(2).ListenPacket("udp", a2)
	defer func() { ln2.Close(); pc2.Close() }()
	serveBackend(ln2, pc2, "gnode2")
	if _, err := c.Node(2).AddBackend(ctx, api.AddBackend{Service: "api", Addr: a2, Weight: 1}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "gnode0's table holds both backends", func() error { return c.tableHolds(0, true, "api", a2, a1) })
	if counts := spread(t, c, []int{2}, vip, 30); counts["gnode1"] != 30 {
		t.Errorf("gnode2's own clients reached %v, want gnode1 only", counts)
	}
	if counts := spread(t, c, []int{0}, vip, 60); counts["gnode1"] == 0 || counts["gnode2"] == 0 {
		t.Errorf("gnode0's clients reached %v, want both", counts)
	}

	if err := c.Node(1).RemoveService(ctx, nw, "api"); err == nil || !strings.Contains(err.Error(), "was created by node gnode0; run the command there") {
		t.Errorf("rm on gnode1: %v, want a refusal naming gnode0", err)
	}
	if err := c.Node(0).RemoveService(ctx, nw, "api"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the service leaves gnode0's balancer", func() error {
		for _, s := range nodetest.Balancer(c.Node(0)).Stats().Services {
			if s.Name == "api" {
				return fmt.Errorf("it balances api over %v", tableOf(c.Node(0), "api"))
			}
		}
		return nil
	})
	if vc, err := dialVIP(c.Node(0), vip); err == nil {
		vc.Close()
		t.Errorf("a removed service's VIP still answers (backend %s)", vc.backend)
	} else {
		t.Logf("removed service's VIP: %v", err)
	}
}

// TestServiceStateSurvivesClusterRestart: a service outlives a crash of
// its creator; services and backends are kept in their owners' state
// directories, so they come back after every node of the cluster
// restarted.
func TestServiceStateSurvivesClusterRestart(t *testing.T) {
	OnEachNet(t, testServiceStateSurvivesClusterRestart)
}

func testServiceStateSurvivesClusterRestart(t *testing.T, over Net) {
	const nw = "keep"
	c := NewGossipCluster(t, 2, GossipOptions{Net: over})
	ctx := context.Background()
	if _, err := c.Node(0).CreateNetwork(ctx, api.CreateNetwork{Name: nw, CIDR: "10.62.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	c.Join(0, nw)
	a1 := netip.AddrPortFrom(c.Join(1, nw).Addr(), 8080).String()
	svc, err := c.Node(0).CreateService(ctx, api.CreateService{Name: "web", Ports: []string{"80/tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the service reaches gnode1", c.knowsService(1, "", "web"))
	if _, err := c.Node(1).AddBackend(ctx, api.AddBackend{Service: "web", Addr: a1, Weight: 3}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "gnode0's table holds the backend", func() error { return c.tableHolds(0, true, "web", a1) })
	// The creator's crash does not take the service away.
	c.Crash(0)
	testutil.Eventually(t, 10*time.Second, "gnode1 declares gnode0 dead", func() error {
		ps, err := c.Node(1).Peers(ctx)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.Name == "gnode0" {
				return errIf(p.State != "dead", "gnode0 is "+p.State)
			}
		}
		return fmt.Errorf("gnode0 is not among the peers %+v", ps)
	})
	if s, err := c.Node(1).Service(ctx, nw, "web"); err != nil || s.VIP != svc.VIP {
		t.Errorf("with its creator dead, gnode1 has service web: %+v, %v", s, err)
	}
	c.Crash(1)
	c.Restart(0)
	c.Restart(1)
	took := testutil.Eventually(t, 20*time.Second, "the service and its backend are back on gnode0", func() error { return c.tableHolds(0, true, "web", a1) })
	s, err := c.Node(0).Service(ctx, nw, "web")
	if err != nil || s.VIP != svc.VIP || len(s.Backends) != 1 || s.Backends[0].Weight != 3 || s.Backends[0].Owner != "gnode1" {
		t.Fatalf("after the restart: %+v, %v; want VIP %s and gnode1's backend of weight 3", s, err, svc.VIP)
	}
	t.Logf("service back %v after the restarts", took.Round(time.Millisecond))
}

// svcCluster starts n gossip nodes over over on network nw (cidr), each
// joined, with routes converged, and returns the cluster and the nodes'
// addresses.
func svcCluster(t *testing.T, over Net, n int, nw, cidr string) (*GossipCluster, []netip.Addr) {
	t.Helper()
	c := NewGossipCluster(t, n, GossipOptions{Net: over})
	if _, err := c.Node(0).CreateNetwork(context.Background(), api.CreateNetwork{Name: nw, CIDR: cidr}); err != nil {
		t.Fatal(err)
	}
	addrs := make([]netip.Addr, n)
	for i := range n {
		addrs[i] = c.Join(i, nw).Addr()
	}
	testutil.Eventually(t, 20*time.Second, "routes converge", c.routesConverged(n))
	return c, addrs
}

// listenNamed serves name on TCP at addr on node nd (see serveBackend).
func listenNamed(t *testing.T, nd *node.Node, addr netip.AddrPort, name string) {
	t.Helper()
	ln, err := nd.Listen("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	pc, err := nd.ListenPacket("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	serveBackend(ln, pc, name)
}

// waitService waits until node nd's view of service name satisfies cond.
func waitService(t *testing.T, c *GossipCluster, nd *node.Node, network, name, what string, cond func(api.ServiceInfo) bool) api.ServiceInfo {
	t.Helper()
	var si api.ServiceInfo
	testutil.Eventually(t, 15*time.Second, what, func() (err error) {
		if si, err = nd.Service(context.Background(), network, name); err != nil {
			return err
		}
		return errIf(!cond(si), fmt.Sprintf("service %+v", si))
	})
	return si
}

// TestServiceMultiPort: a service perf with ports 5201/tcp and 8002/tcp
// and backends :5201 and :8002 on two nodes: a flow to VIP:PORT only ever
// reaches a backend of that port (issue 9, item 4: 9 of 20 connections to
// VIP:8002 went to a :5201 backend).
func TestServiceMultiPort(t *testing.T) { OnEachNet(t, testServiceMultiPort) }

func testServiceMultiPort(t *testing.T, over Net) {
	const nw = "mp"
	c, addrs := svcCluster(t, over, 3, nw, "10.64.0.0/16")
	ctx := context.Background()
	svc, err := c.Node(0).CreateService(ctx, api.CreateService{Name: "perf", Network: nw, Ports: []string{"5201/tcp", "8002/tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	waitService(t, c, c.Node(1), nw, "perf", "the service reaches gnode1 and gnode2", func(api.ServiceInfo) bool { return true })
	waitService(t, c, c.Node(2), nw, "perf", "the service reaches gnode2", func(api.ServiceInfo) bool { return true })
	for _, i := range []int{1, 2} {
		for _, port := range []uint16{5201, 8002} {
			a := netip.AddrPortFrom(addrs[i], port)
			listenNamed(t, c.Node(i), a, fmt.Sprintf("%s:%d", c.Name(i), port))
			if _, err := c.Node(i).AddBackend(ctx, api.AddBackend{Service: "perf", Network: nw, Addr: a.String(), Weight: 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitService(t, c, c.Node(0), nw, "perf", "gnode0's tables hold the four backends", func(si api.ServiceInfo) bool {
		n := 0
		for _, b := range si.Backends {
			if b.InTable {
				n++
			}
		}
		return n == 4
	})
	for _, port := range []uint16{8002, 5201} {
		vip := netip.AddrPortFrom(netip.MustParseAddr(svc.VIP), port).String()
		counts := spread(t, c, []int{0}, vip, 20)
		t.Logf("20 connections to VIP:%d: %v", port, counts)
		for name, n := range counts {
			if !strings.HasSuffix(name, fmt.Sprintf(":%d", port)) {
				t.Errorf("%d of 20 connections to VIP:%d went to %s", n, port, name)
			}
		}
	}
	si, _ := c.Node(0).Service(ctx, nw, "perf")
	for _, b := range si.Backends {
		if want := strings.TrimPrefix(b.Addr[strings.LastIndex(b.Addr, ":"):], ":") + "/tcp"; len(b.Ports) != 1 || b.Ports[0] != want {
			t.Errorf("backend %s serves %v, want %s", b.Addr, b.Ports, want)
		}
	}

	// The selections metric: one label per fact (issue 10, §4: addr and
	// backend repeated one value), and the 40 flows counted.
	mfs, err := c.Node(0).MetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != "overlayd_lb_backend_selections_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var names []string
			for _, l := range m.GetLabel() {
				names = append(names, l.GetName())
			}
			if strings.Join(names, ",") != "backend,network,service" {
				t.Errorf("overlayd_lb_backend_selections_total labels %v, want backend, network, service", names)
			}
			if _, err := netip.ParseAddrPort(label(m, "backend")); err != nil || label(m, "service") != "perf" {
				t.Errorf("selections of backend %q of service %q", label(m, "backend"), label(m, "service"))
			}
			total += m.GetCounter().GetValue()
		}
	}
	if total != 40 {
		t.Errorf("overlayd_lb_backend_selections_total adds up to %v, want 40", total)
	}
}

// TestServiceConflictLeavesOthersFlows: two services claim one VIP port
// (the later is refused alone, and says so); established flows of the
// first and of a third service survive 10 rebuilds of the balancer with 0
// resets (issue 9, item 3: the per-service fallback published partial
// snapshots and reset every other service's flows on every sync).
func TestServiceConflictLeavesOthersFlows(t *testing.T) {
	OnEachNet(t, testServiceConflictLeavesOthersFlows)
}

func testServiceConflictLeavesOthersFlows(t *testing.T, over Net) {
	const nw = "cf"
	c, addrs := svcCluster(t, over, 3, nw, "10.63.0.0/16")
	ctx := context.Background()
	first, err := c.Node(0).CreateService(ctx, api.CreateService{Name: "first", Network: nw, Ports: []string{"80/tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	third, err := c.Node(0).CreateService(ctx, api.CreateService{Name: "third", Network: nw, Ports: []string{"80/tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	b1 := netip.AddrPortFrom(addrs[1], 8080)
	b2 := netip.AddrPortFrom(addrs[2], 8080)
	listenNamed(t, c.Node(1), b1, "gnode1")
	listenNamed(t, c.Node(2), b2, "gnode2")
	waitService(t, c, c.Node(1), nw, "first", "first reaches gnode1", func(api.ServiceInfo) bool { return true })
	waitService(t, c, c.Node(2), nw, "third", "third reaches gnode2", func(api.ServiceInfo) bool { return true })
	if _, err := c.Node(1).AddBackend(ctx, api.AddBackend{Service: "first", Network: nw, Addr: b1.String(), Weight: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(2).AddBackend(ctx, api.AddBackend{Service: "third", Network: nw, Addr: b2.String(), Weight: 1}); err != nil {
		t.Fatal(err)
	}
	// A second service on first's VIP port, as two nodes creating
	// services at once can make: written straight into gnode2's table.
	clash := catalog.Service{Name: "clash", Network: nw, VIP: first.VIP, Ports: []catalog.Port{{Port: 80, Proto: "tcp"}}}
	if err := nodetest.Gossip(c.Node(2)).Put(catalog.TableServices, nw, catalog.ServiceKey(clash.Name), clash.Encode()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "gnode0 balances first and third", func() error {
		return errors.Join(c.tableHolds(0, true, "first", b1.String()), c.tableHolds(0, true, "third", b2.String()))
	})
	held := map[string]*vipConn{}
	for _, vip := range []string{first.VIP, third.VIP} {
		vc, err := dialVIP(c.Node(0), vip+":80")
		if err != nil {
			t.Fatal(err)
		}
		defer vc.Close()
		held[vip] = vc
	}
	checkReported(t, c, nw)
	resets := nodetest.Balancer(c.Node(0)).Stats().Resets
	// Ten rebuilds: each weight change of first's backend is a change
	// every node applies; wait until gnode0's table has it.
	for k := range 10 {
		w := uint32(k + 2)
		if _, err := c.Node(1).AddBackend(ctx, api.AddBackend{Service: "first", Network: nw, Addr: b1.String(), Weight: w}); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, fmt.Sprintf("gnode0's table has weight %d", w), func() error {
			for _, s := range nodetest.Balancer(c.Node(0)).Stats().Services {
				for _, b := range s.Backends {
					if s.Name == "first" && b.Weight == w {
						return nil
					}
				}
			}
			return fmt.Errorf("first: %v", tableOf(c.Node(0), "first"))
		})
		for vip, vc := range held {
			if err := vc.echo(fmt.Sprintf("rebuild %d", k)); err != nil {
				t.Fatalf("flow to %s after rebuild %d: %v", vip, k, err)
			}
		}
	}
	if got := nodetest.Balancer(c.Node(0)).Stats().Resets - resets; got != 0 {
		t.Errorf("%d resets during 10 rebuilds, want 0", got)
	}
}

// checkReported: the refused service says why on every node, in service
// show, service ls and status.
func checkReported(t *testing.T, c *GossipCluster, nw string) {
	t.Helper()
	for i := range 3 {
		si := waitService(t, c, c.Node(i), nw, "clash", c.Name(i)+" reports clash", func(si api.ServiceInfo) bool { return si.Error != "" })
		if !strings.Contains(si.Error, `is already served by "`+nw+`/first"`) {
			t.Errorf("%s: clash: %q, want it refused for first's VIP port", c.Name(i), si.Error)
		}
		if st, err := c.Node(i).Status(context.Background()); err != nil || st.Services == nil || st.Services.Rejected != 1 {
			t.Errorf("%s: status services %+v, %v; want 1 not balanced", c.Name(i), st.Services, err)
		}
	}
}

// TestServiceRemoveBackendNamesOwner: remove-backend of a backend another
// node added a moment ago names that node (issue 10, §4: in its first
// second it said "has no backend").
func TestServiceRemoveBackendNamesOwner(t *testing.T) {
	OnEachNet(t, testServiceRemoveBackendNamesOwner)
}

func testServiceRemoveBackendNamesOwner(t *testing.T, over Net) {
	const nw = "rb"
	c, addrs := svcCluster(t, over, 2, nw, "10.65.0.0/16")
	ctx := context.Background()
	if _, err := c.Node(0).CreateService(ctx, api.CreateService{Name: "web", Network: nw, Ports: []string{"80/tcp"}}); err != nil {
		t.Fatal(err)
	}
	waitService(t, c, c.Node(1), nw, "web", "the service reaches gnode1", func(api.ServiceInfo) bool { return true })
	for k := range 10 {
		a := netip.AddrPortFrom(addrs[1], uint16(8000+k)).String()
		if _, err := c.Node(1).AddBackend(ctx, api.AddBackend{Service: "web", Network: nw, Addr: a, Weight: 1}); err != nil {
			t.Fatal(err)
		}
		_, err := c.Node(0).RemoveBackend(ctx, api.BackendRef{Service: "web", Network: nw, Addr: a}, false)
		if want := "backend " + a + " was added by node gnode1; run the command there"; err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("trial %d: remove-backend on gnode0 right after gnode1 added it: %v, want %q", k, err, want)
		}
	}
	// A backend nobody added is still "has no backend" (after the wait).
	if _, err := c.Node(0).RemoveBackend(ctx, api.BackendRef{Service: "web", Network: nw, Addr: "10.65.9.9:80"}, false); err == nil || !strings.Contains(err.Error(), "has no backend 10.65.9.9:80") {
		t.Errorf("remove a backend nobody added: %v", err)
	}
}

// TestServiceBackendOfDeadNodeAddedElsewhere: backends on three nodes all
// added by gnode0 (an operator adding them from one node); a crash of one
// backend's node makes that backend unreachable on every node, though its
// entry (owned by gnode0) stays, and no new flow goes there (issue 9,
// item 7: it stayed active and about 1 in 3 new connections failed).
func TestServiceBackendOfDeadNodeAddedElsewhere(t *testing.T) {
	OnEachNet(t, testServiceBackendOfDeadNodeAddedElsewhere)
}

func testServiceBackendOfDeadNodeAddedElsewhere(t *testing.T, over Net) {
	const nw = "dn"
	c, addrs := svcCluster(t, over, 5, nw, "10.66.0.0/16")
	ctx := context.Background()
	svc, err := c.Node(0).CreateService(ctx, api.CreateService{Name: "web", Network: nw, Ports: []string{"80/tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	vip := svc.VIP + ":80"
	bes := map[int]string{}
	for _, i := range []int{1, 2, 3} {
		a := netip.AddrPortFrom(addrs[i], 8080)
		listenNamed(t, c.Node(i), a, c.Name(i))
		bes[i] = a.String()
		if _, err := c.Node(0).AddBackend(ctx, api.AddBackend{Service: "web", Network: nw, Addr: a.String(), Weight: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range []int{0, 4} {
		waitService(t, c, c.Node(i), nw, "web", c.Name(i)+" balances the three backends", func(si api.ServiceInfo) bool {
			n := 0
			for _, b := range si.Backends {
				if b.InTable {
					n++
				}
			}
			return n == 3
		})
	}
	if counts := spread(t, c, []int{0, 4}, vip, 30); len(counts) != 3 {
		t.Fatalf("30 connections reached %v, want the three backends", counts)
	}
	crashed := time.Now()
	c.Crash(2)
	for _, i := range []int{0, 1, 3, 4} {
		si := waitService(t, c, c.Node(i), nw, "web", c.Name(i)+" shows gnode2's backend unreachable", func(si api.ServiceInfo) bool {
			for _, b := range si.Backends {
				if b.Addr == bes[2] {
					return b.State == "unreachable" && !b.InTable && b.Owner == "gnode0"
				}
			}
			return false
		})
		if len(si.Backends) != 3 {
			t.Errorf("%s: backends %+v, want all three listed", c.Name(i), si.Backends)
		}
	}
	t.Logf("crash → unreachable on every node: %v", time.Since(crashed).Round(time.Millisecond))
	counts := spread(t, c, []int{0, 4}, vip, 60) // fails the test on any failed connection
	t.Logf("60 connections after the crash: %v", counts)
	if counts["gnode2"] != 0 {
		t.Errorf("%d connections reached the dead gnode2", counts["gnode2"])
	}
}
