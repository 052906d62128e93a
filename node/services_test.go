package node

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/internal/testutil"
)

// TestServicesFollowChangesNotATimer: the balancer's services are rebuilt
// on a change and only then (issue 9, item 2: a 1 s tick added its own
// delay). With nothing changing, no rebuild happens while three rounds of
// health checks (every 2 s) go by, though the reconciler passes every
// second; a change is applied at once.
func TestServicesFollowChangesNotATimer(t *testing.T) {
	cfg := config.Default()
	cfg.Name = "n0"
	cfg.Mode = config.ModeNetstack
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Control = ""
	cfg.Gossip.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Gossip.Profile = "test"
	cfg.DNS.Listen = config.DNSOff
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := n.CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.10.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	ni, err := n.JoinNetwork(ctx, "blue")
	if err != nil {
		t.Fatal(err)
	}
	be := netip.AddrPortFrom(netip.MustParsePrefix(ni.Addr).Addr(), 8080).String()
	ln, err := n.Listen("tcp", be)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := n.CreateService(ctx, api.CreateService{Name: "web", Ports: []string{"80/tcp"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.AddBackend(ctx, api.AddBackend{Service: "web", Addr: be, Weight: 1, Check: "tcp"}); err != nil {
		t.Fatal(err)
	}
	s := n.svc.Load()
	rounds := func(want uint64) func() error {
		return func() error {
			if got := s.checks.Load(); got < want {
				return fmt.Errorf("%d rounds, want %d", got, want)
			}
			return nil
		}
	}
	testutil.Eventually(t, 20*time.Second, "a round of health checks", rounds(1))
	syncs, checks := s.syncs.Load(), s.checks.Load()
	testutil.Eventually(t, 20*time.Second, "three more rounds of health checks", rounds(checks+3))
	if got := s.syncs.Load(); got != syncs {
		t.Errorf("%d rebuilds of the services while nothing changed (3 health check rounds), want 0", got-syncs)
	}
	if si, err := n.Service(ctx, "blue", "web"); err != nil || len(si.Backends) != 1 || si.Backends[0].State != "active" {
		t.Fatalf("service web: %+v, %v; want its backend active", si, err)
	}
	// A change the balancer sees (web's one backend is on this node's own
	// address, which the balancer leaves out: a change of it alone is
	// not one; a new service is).
	if _, err := n.CreateService(ctx, api.CreateService{Name: "api", Ports: []string{"81/tcp"}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "a rebuild after a change", func() error {
		if got := s.syncs.Load(); got <= syncs {
			return fmt.Errorf("%d rebuilds, want more than %d", got, syncs)
		}
		return nil
	})
}
