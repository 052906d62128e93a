package nodetest_test

import (
	"context"
	"net/netip"
	"testing"

	"go.uber.org/goleak"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/node"
	"github.com/overlayd/overlayd/node/nodetest"
)

func start(t *testing.T, gossiping bool) *node.Node {
	t.Helper()
	cfg := config.Default()
	cfg.Name = "seam"
	cfg.Mode = config.ModeNetstack
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Addr = netip.MustParsePrefix("10.78.0.1/24")
	cfg.Control = ""
	cfg.DNS.Listen = config.DNSOff
	if gossiping {
		cfg.Gossip.Listen = netip.MustParseAddrPort("127.0.0.1:0")
		cfg.Gossip.Profile = gossip.ProfileTest
		cfg.StateDir = t.TempDir()
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		n.Close()
		t.Fatal(err)
	}
	return n
}

// The seams reach the node's own parts: its router (the VTEP it
// forwards for), its gossip and balancer when it has them; Crash stops it
// and is safe twice.
func TestParts(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	s := start(t, false)
	if rt := nodetest.Router(s); rt == nil || rt.MAC().String() == "" {
		t.Fatalf("Router of a static node = %v", rt)
	}
	if g, b := nodetest.Gossip(s), nodetest.Balancer(s); g != nil || b != nil {
		t.Fatalf("static node: Gossip %v, Balancer %v; want nil (no control plane)", g, b)
	}
	if err := nodetest.Crash(s); err != nil {
		t.Fatal(err)
	}
	if err := nodetest.Crash(s); err != nil {
		t.Fatalf("second Crash: %v", err)
	}

	g := start(t, true)
	peers, err := g.Peers(context.Background())
	if err != nil || len(peers) != 1 {
		t.Fatalf("Peers = %v, %v", peers, err)
	}
	if got := nodetest.Gossip(g); got == nil || got.Addr() != peers[0].Addr {
		t.Fatalf("Gossip of a gossip node: %v, want the instance at %s", got, peers[0].Addr)
	}
	if nodetest.Balancer(g) == nil {
		t.Fatal("Balancer of a gossip node is nil")
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := nodetest.Crash(g); err != nil {
		t.Fatalf("Crash after Close: %v", err)
	}
}
