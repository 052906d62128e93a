package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/dns/dnstest"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/node"
)

// fakeUpstream answers ext.test. with 192.0.2.7 and anything else NXDOMAIN:
// the only resolver the DNS tests forward to.
func fakeUpstream(t *testing.T) *dnstest.Upstream {
	return dnstest.NewUpstream(t, func(req *mdns.Msg, _ bool) []*mdns.Msg {
		if q := req.Question[0]; q.Name == "ext.test." && q.Qtype == mdns.TypeA {
			return []*mdns.Msg{dnstest.Reply(req, "ext.test. 60 IN A 192.0.2.7")}
		}
		m := dnstest.Reply(req)
		m.Rcode = mdns.RcodeNameError
		return []*mdns.Msg{m}
	})
}

// withDNS turns a test node's DNS on: a host listener on a free loopback
// port, up to the fake upstream, TTL 1 s.
func withDNS(up *dnstest.Upstream) func(int, *config.Config) {
	return func(_ int, c *config.Config) {
		c.DNS.Listen = "127.0.0.1:0"
		c.DNS.Upstreams = []string{up.Addr.String()}
		c.DNS.TTL = time.Second
	}
}

// ask sends one query over conn (a fresh one per query) and returns the reply.
func ask(conn net.Conn, name string, qtype uint16) (*mdns.Msg, error) {
	defer conn.Close()
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), qtype)
	c := &mdns.Conn{Conn: conn}
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if err := c.WriteMsg(q); err != nil {
		return nil, err
	}
	return c.ReadMsg()
}

// askHost queries a node's host listener over UDP.
func askHost(nd *node.Node, name string, qtype uint16) (*mdns.Msg, error) {
	conn, err := net.Dial("udp", nd.DNSAddr().String())
	if err != nil {
		return nil, err
	}
	return ask(conn, name, qtype)
}

// answerA is what a reply says about an A query: the addresses, or the rcode.
func answerA(m *mdns.Msg, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	if m.Rcode != mdns.RcodeSuccess {
		return mdns.RcodeToString[m.Rcode]
	}
	var as []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*mdns.A); ok {
			as = append(as, a.A.String())
		}
	}
	if len(as) == 0 {
		return "NODATA"
	}
	slices.Sort(as)
	return strings.Join(as, ",")
}

// waitAnswer polls the host listeners of nodes (default: the live ones)
// until name's A answer is want on all of them.
func waitAnswer(t *testing.T, c *GossipCluster, d time.Duration, name, want string, nodes ...int) time.Duration {
	t.Helper()
	if nodes == nil {
		nodes = c.Live()
	}
	return testutil.Eventually(t, d, fmt.Sprintf("%s = %s on nodes %v", name, want, nodes), func() error {
		for _, i := range nodes {
			if last := fmt.Sprintf("node %d: %s", i, answerA(askHost(c.Node(i), name, mdns.TypeA))); !strings.HasSuffix(last, ": "+want) {
				return errors.New(last)
			}
		}
		return nil
	})
}

// TestDNSGossip: overlay names on every node's host listener and through
// the netstack at the network's DNS address, following the tables: a
// node's name appears when it joins, goes when it dies and returns when it
// restarts; a service's name appears on create and goes on delete; other
// names are forwarded.
func TestDNSGossip(t *testing.T) { OnEachNet(t, testDNSGossip) }

func testDNSGossip(t *testing.T, over Net) {
	up := fakeUpstream(t)
	c := NewGossipCluster(t, 3, GossipOptions{Edit: withDNS(up), Net: over})
	ctx := context.Background()
	if _, err := c.Node(0).CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.201.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	addr := map[int]netip.Addr{}
	for i := range 2 {
		addr[i] = c.Join(i, "blue").Addr()
	}
	for i := range 2 {
		waitAnswer(t, c, 5*time.Second, c.Name(i)+".blue.overlay", addr[i].String(), 0, 1)
	}
	// Node 2 is not on blue: blue's names are not in its zone.
	if got := answerA(askHost(c.Node(2), "gnode0.blue.overlay", mdns.TypeA)); got != "NXDOMAIN" {
		t.Errorf("gnode0.blue.overlay on node 2 (not on blue) = %s, want NXDOMAIN", got)
	}
	addr[2] = c.Join(2, "blue").Addr()
	took := waitAnswer(t, c, 5*time.Second, "gnode2.blue.overlay", addr[2].String())
	t.Logf("gnode2.blue.overlay answered on every node %v after its join", took.Round(time.Millisecond))

	// Through node 1's netstack at blue's DNS address, UDP and TCP.
	dnsAddr := "10.201.0.1:53"
	for _, proto := range []string{"udp", "tcp"} {
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := c.Node(1).Dial(dctx, proto, dnsAddr)
		cancel()
		if err != nil {
			t.Fatalf("node 1: dial %s %s: %v", proto, dnsAddr, err)
		}
		if got := answerA(ask(conn, "gnode0.blue.overlay", mdns.TypeA)); got != addr[0].String() {
			t.Errorf("%s @%s gnode0.blue.overlay through node 1's netstack = %s, want %s", proto, dnsAddr, got, addr[0])
		}
	}

	// A service: the VIP on every node, its port as SRV; gone after delete.
	svc, err := c.Node(0).CreateService(ctx, api.CreateService{Name: "web", Network: "blue", Ports: []string{"80/tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	took = waitAnswer(t, c, 5*time.Second, "web.blue.overlay", svc.VIP)
	t.Logf("web.blue.overlay = %s on every node %v after service create", svc.VIP, took.Round(time.Millisecond))
	m, err := askHost(c.Node(2), "_80._tcp.web.blue.overlay", mdns.TypeSRV)
	if err != nil || len(m.Answer) != 1 || m.Answer[0].(*mdns.SRV).Port != 80 {
		t.Errorf("SRV _80._tcp.web.blue.overlay on node 2 = %v, %v; want one record, port 80", m, err)
	}
	if err := c.Node(0).RemoveService(ctx, "blue", "web"); err != nil {
		t.Fatal(err)
	}
	took = waitAnswer(t, c, 5*time.Second, "web.blue.overlay", "NXDOMAIN")
	t.Logf("web.blue.overlay NXDOMAIN on every node %v after service rm", took.Round(time.Millisecond))

	// Names resolve for Dial: node 1 reaches node 0 by name, from its own
	// address (never from the DNS address, which every node holds).
	ln, err := c.Node(0).Listen("tcp", netip.AddrPortFrom(addr[0], 7070).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Addr, 1)
	go func() {
		if conn, err := ln.Accept(); err == nil {
			accepted <- conn.RemoteAddr()
			conn.Close()
		}
	}()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := c.Node(1).Dial(dctx, "tcp", "gnode0.blue.overlay:7070")
	cancel()
	if err != nil {
		t.Fatalf("node 1: dial gnode0.blue.overlay:7070: %v", err)
	}
	conn.Close()
	select {
	case from := <-accepted:
		if got := netip.MustParseAddrPort(from.String()).Addr(); got != addr[1] {
			t.Errorf("node 0 accepted from %v, want node 1's address %v", got, addr[1])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("node 0 accepted nothing")
	}

	// Forwarded: through the fake upstream.
	if got := answerA(askHost(c.Node(1), "ext.test", mdns.TypeA)); got != "192.0.2.7" {
		t.Errorf("ext.test through node 1 = %s, want 192.0.2.7 (forwarded)", got)
	}
	askHost(c.Node(1), "ext.test", mdns.TypeA) // a cache hit

	// A crashed node's name goes everywhere; it returns on restart.
	c.Crash(2)
	took = waitAnswer(t, c, 10*time.Second, "gnode2.blue.overlay", "NXDOMAIN")
	t.Logf("gnode2.blue.overlay NXDOMAIN on the live nodes %v after its crash", took.Round(time.Millisecond))
	c.Restart(2)
	took = waitAnswer(t, c, 10*time.Second, "gnode2.blue.overlay", addr[2].String())
	t.Logf("gnode2.blue.overlay back on every node %v after its restart", took.Round(time.Millisecond))

	st, err := c.Node(1).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := st.DNS
	if d == nil || d.Responses["NOERROR"] == 0 || d.Responses["NXDOMAIN"] == 0 || d.CacheHits == 0 || !slices.Contains(d.Addrs, "10.201.0.1") || d.Listen != c.Node(1).DNSAddr().String() {
		t.Errorf("node 1 status DNS = %+v; want NOERROR and NXDOMAIN answers, a cache hit, 10.201.0.1 served, listen %v", d, c.Node(1).DNSAddr())
	}

	// A node that leaves the network: its name goes everywhere, and it no
	// longer serves the network's DNS address.
	if err := c.Node(1).LeaveNetwork(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	waitAnswer(t, c, 5*time.Second, "gnode1.blue.overlay", "NXDOMAIN")
	testutil.Eventually(t, 5*time.Second, "node 1 stops serving 10.201.0.1", func() error {
		st, err := c.Node(1).Status(ctx)
		if err != nil {
			return err
		}
		return errIf(st.DNS == nil || len(st.DNS.Addrs) != 0, fmt.Sprintf("DNS status %+v", st.DNS))
	})
}

// TestDNSStatic: without gossip a node's zone holds itself on its static
// network, and its DNS is served on its own address (on a static network
// any other address, the first one too, may be another host's: issue 9
// item 1): another node asks it there through the overlay.
func TestDNSStatic(t *testing.T) { OnEachNet(t, testDNSStatic) }

func testDNSStatic(t *testing.T, over Net) {
	up := fakeUpstream(t)
	c := NewCluster(t, 2, ClusterOptions{Edit: withDNS(up), Net: over})
	self := NodeAddr(0).Addr().String()
	if got := answerA(askHost(c.Nodes[0], "node0.static.overlay", mdns.TypeA)); got != self {
		t.Errorf("node0.static.overlay on node 0 = %s, want %s", got, self)
	}
	if got := answerA(askHost(c.Nodes[0], "node1.static.overlay", mdns.TypeA)); got != "NXDOMAIN" {
		t.Errorf("node1.static.overlay on node 0 = %s, want NXDOMAIN (static mode knows itself only)", got)
	}
	for i := range 2 {
		st, err := c.Nodes[i].Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if want := NodeAddr(i).Addr().String(); st.DNS == nil || !slices.Equal(st.DNS.Addrs, []string{want}) {
			t.Errorf("node %d status DNS = %+v, want its own address %s served", i, st.DNS, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	// Node 1 asks node 0 at node 0's address, through the overlay: node 0
	// answers (it knows only itself).
	for _, proto := range []string{"udp", "tcp"} {
		conn, err := c.Nodes[1].Dial(ctx, proto, self+":53")
		if err != nil {
			t.Fatalf("node 1: dial %s %s:53: %v", proto, self, err)
		}
		if got := answerA(ask(conn, "node0.static.overlay", mdns.TypeA)); got != self {
			t.Errorf("%s node0.static.overlay @%s through node 1 = %s, want %s (node 0's answer)", proto, self, got, self)
		}
	}
}
