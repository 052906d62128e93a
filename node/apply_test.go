package node_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/node"
)

// The configuration's networks and services are applied at start.
func TestConfigAppliedAtStart(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg, err := config.Decode(strings.NewReader(`name: n0
mode: netstack
listen: 127.0.0.1:0
gossip: {listen: 127.0.0.1:0, profile: test}
control: ""
dns: {listen: "off"}
networks:
  - {name: blue, cidr: 10.10.0.0/16}
services:
  - name: web
    ports: [80/tcp]
    backends:
      - {addr: ":8080"}
`))
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); ; {
		ss, err := n.Services(ctx)
		if err == nil && len(ss) == 1 && len(ss[0].Backends) == 1 {
			if ss[0].Name != "web" || ss[0].Network != "blue" || !strings.HasSuffix(ss[0].Backends[0].Addr, ":8080") {
				t.Fatalf("Services() = %+v", ss)
			}
			if a := netip.MustParseAddrPort(ss[0].Backends[0].Addr).Addr(); !netip.MustParsePrefix("10.10.0.0/16").Contains(a) {
				t.Errorf("backend %v is not on blue", a)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Services() = %+v, %v; want web with one backend", ss, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	res, err := n.Apply(ctx, node.ApplyRequest(cfg))
	if err != nil || len(res.Changes) != 0 {
		t.Errorf("Apply(the same configuration) = %v, %v; want no changes", res.Changes, err)
	}
}
