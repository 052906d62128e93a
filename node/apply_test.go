package node_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/internal/testutil"
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
	var ss []api.ServiceInfo
	testutil.Eventually(t, 10*time.Second, "web with one backend", func() error {
		var err error
		if ss, err = n.Services(ctx); err != nil || len(ss) != 1 || len(ss[0].Backends) != 1 {
			return fmt.Errorf("Services() = %+v, %v", ss, err)
		}
		return nil
	})
	if ss[0].Name != "web" || ss[0].Network != "blue" || !strings.HasSuffix(ss[0].Backends[0].Addr, ":8080") {
		t.Fatalf("Services() = %+v", ss)
	}
	if a := netip.MustParseAddrPort(ss[0].Backends[0].Addr).Addr(); !netip.MustParsePrefix("10.10.0.0/16").Contains(a) {
		t.Errorf("backend %v is not on blue", a)
	}
	res, err := n.Apply(ctx, node.ApplyRequest(cfg))
	if err != nil || len(res.Changes) != 0 {
		t.Errorf("Apply(the same configuration) = %v, %v; want no changes", res.Changes, err)
	}
}

// A backend of a service with ports of two numbers says in the file which
// one it serves (service_port); without it, apply refuses to guess, and a
// changed service_port is applied as a change.
func TestApplyServicePort(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const head = `name: n0
mode: netstack
listen: 127.0.0.1:0
gossip: {listen: 127.0.0.1:0, profile: test}
control: ""
dns: {listen: "off"}
networks:
  - {name: blue, cidr: 10.10.0.0/16}
services:
  - name: perf
    ports: [5201/tcp, 8002/tcp]
    backends:
`
	decode := func(backends string) config.Config {
		t.Helper()
		cfg, err := config.Decode(strings.NewReader(head + backends))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	n, err := node.New(decode("      - {addr: \":9000\", service_port: 8002}\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ports := func() []string {
		ss, err := n.Services(ctx)
		if err != nil || len(ss) != 1 || len(ss[0].Backends) != 1 {
			return nil
		}
		return ss[0].Backends[0].Ports
	}
	testutil.Eventually(t, 10*time.Second, "backend :9000 to serve [8002/tcp]", func() error {
		if p := ports(); len(p) != 1 || p[0] != "8002/tcp" {
			return fmt.Errorf("it serves %v", p)
		}
		return nil
	})
	res, err := n.Apply(ctx, node.ApplyRequest(decode("      - {addr: \":9000\", service_port: 5201}\n")))
	if err != nil || len(res.Changes) != 1 || !strings.Contains(res.Changes[0], "serves port 5201 (was 8002)") {
		t.Fatalf("Apply(service_port 5201) = %q, %v; want one change to port 5201", res.Changes, err)
	}
	if p := ports(); len(p) != 1 || p[0] != "5201/tcp" {
		t.Errorf("after the change the backend serves %v, want [5201/tcp]", p)
	}
	if _, err := n.Apply(ctx, node.ApplyRequest(decode("      - {addr: \":9001\"}\n"))); err == nil || !strings.Contains(err.Error(), "service-port") {
		t.Errorf("Apply(a backend on :9001 without service_port) = %v, want the error asking for the service port", err)
	}
}
