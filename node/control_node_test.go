package node

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/vxlan"
)

// The path MTU leaves room for the outer header of the underlay the node
// listens on: 20 bytes more for IPv6 (issue 9 item 9).
func TestPathMTUByUnderlayFamily(t *testing.T) {
	for _, tc := range []struct {
		listen string
		want   int
	}{
		{"127.0.0.1:0", 1500 - vxlan.Overhead},
		{"[::1]:0", 1500 - vxlan.Overhead6},
	} {
		cfg := config.Default()
		cfg.Name = "mtu"
		cfg.Mode = config.ModeNetstack
		cfg.Listen = netip.MustParseAddrPort(tc.listen)
		cfg.Addr = netip.MustParsePrefix("10.99.0.1/24")
		cfg.Underlay.MTU = 1500
		cfg.Control = ""
		cfg.DNS.Listen = config.DNSOff
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if n.pathMTU != tc.want {
			t.Errorf("listen %s: path MTU %d, want %d", tc.listen, n.pathMTU, tc.want)
		}
		n.Close()
	}
	if vxlan.Overhead6 != 70 {
		t.Errorf("vxlan.Overhead6 = %d, want 40+8+8+14", vxlan.Overhead6)
	}
}

// A gossip node without --addr logs its networks at start, not the
// invalid static prefix.
func TestStartedLogWithoutAddr(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	cfg := config.Default()
	cfg.Name = "noaddr"
	cfg.Mode = config.ModeNetstack
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Control = ""
	cfg.Gossip.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Gossip.Profile = "test"
	cfg.DNS.Listen = config.DNSOff
	n, err := New(cfg, WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	defer n.crash()
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	started := logs.FilterMessage("node started").All()
	if len(started) != 1 {
		t.Fatalf("%d \"node started\" lines", len(started))
	}
	fields := started[0].ContextMap()
	for k, v := range fields {
		if s := fmt.Sprint(v); strings.Contains(s, "invalid") {
			t.Errorf("node started: %s=%q", k, s)
		}
	}
	if _, ok := fields["networks"]; !ok {
		t.Errorf("node started: no networks field in %v", fields)
	}
}
