package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/node"
)

// gossipNode starts a one-node gossip cluster (netstack, no root) with a
// control socket and returns the socket's path.
func gossipNode(t *testing.T) string {
	t.Helper()
	ctl := filepath.Join(t.TempDir(), "ctl.sock")
	cfg := config.Default()
	cfg.Name = "n0"
	cfg.Mode = config.ModeNetstack
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Gossip.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Gossip.Profile = "test"
	cfg.DNS.Listen = config.DNSOff
	cfg.Control = ctl
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return ctl
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// apply reconciles a node to a file, prints what it changed, and changes
// nothing when run again.
func TestApply(t *testing.T) {
	ctl := gossipNode(t)
	f := writeFile(t, "app.yaml", `networks:
  - {name: blue, cidr: 10.10.0.0/16, vni: 5001}
services:
  - name: web
    network: blue
    ports: [80/tcp]
    vip: 10.10.240.7
    backends:
      - {addr: ":8080", weight: 2}
      - {addr: 10.10.0.9:80, check: tcp}
  - name: dns
    ports: [53/udp]
`)
	code, o, e := run(t, "apply", "-f", f, "--control", ctl)
	t.Logf("first apply:\n%s", o)
	wantLines := []string{
		`^network blue: created \(10\.10\.0\.0/16, VNI 5001\)$`,
		`^network blue: joined with address 10\.10\.\d+\.\d+/16$`,
		`^service web: created on network blue \(VIP 10\.10\.240\.7, ports 80/tcp\)$`,
		`^service web: backend 10\.10\.\d+\.\d+:8080 added \(weight 2, check none\)$`,
		`^service web: backend 10\.10\.0\.9:80 added \(weight 1, check tcp\)$`,
		`^service dns: created on network blue \(VIP 10\.10\.\d+\.\d+, ports 53/udp\)$`,
	}
	lines := strings.Split(strings.TrimSpace(o), "\n")
	if code != 0 || len(lines) != len(wantLines) {
		t.Fatalf("apply = %d, %d lines\nstdout: %s\nstderr: %s\nwant %d lines", code, len(lines), o, e, len(wantLines))
	}
	for i, re := range wantLines {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("line %d = %q, want it to match %s", i+1, lines[i], re)
		}
	}
	for i := range 2 {
		if code, o, e := run(t, "apply", "-f", f, "--control", ctl); code != 0 || o != "no changes\n" {
			t.Errorf("apply again (%d) = %d\nstdout: %s\nstderr: %s\nwant \"no changes\"", i+1, code, o, e)
		}
	}

	// Reweight one backend, drop the other, leave dns alone (no backends
	// key) and say nothing of the network.
	f2 := writeFile(t, "app2.yaml", `services:
  - name: web
    network: blue
    ports: [80/tcp]
    backends:
      - {addr: ":8080", weight: 3, check: tcp}
`)
	code, o, e = run(t, "apply", "-f", f2, "--control", ctl)
	if code != 0 || !regexp.MustCompile(`(?m)^service web: backend 10\.10\.\d+\.\d+:8080 weight 2 → 3, check none → tcp\nservice web: backend 10\.10\.0\.9:80 removed\n$`).MatchString(o) {
		t.Errorf("apply (reweight) = %d\nstdout: %s\nstderr: %s", code, o, e)
	}
	if code, o, e := run(t, "apply", "-f", f2, "--control", ctl); code != 0 || o != "no changes\n" {
		t.Errorf("apply (reweight) again = %d\nstdout: %s\nstderr: %s\nwant \"no changes\"", code, o, e)
	}
	code, o, _ = run(t, "services", "--control", ctl)
	if code != 0 || !strings.Contains(o, "web") || !strings.Contains(o, "dns") {
		t.Errorf("overlayd services = %d\n%s", code, o)
	}
	code, o, _ = run(t, "networks", "--control", ctl)
	if code != 0 || !strings.Contains(o, "blue") || !strings.Contains(o, "5001") {
		t.Errorf("overlayd networks = %d\n%s", code, o)
	}

	// Mistakes name the file and the line.
	tests := []struct {
		name, text string
		code       int
		inStderr   string
	}{
		{"vip.yaml", "services:\n  - name: web\n    network: blue\n    vip: 10.10.240.8\n    ports: [80/tcp]\n", 1,
			"vip.yaml: line 2: service web: exists with VIP 10.10.240.7, not 10.10.240.8"},
		{"cidr.yaml", "networks:\n  - {name: blue, cidr: 10.11.0.0/16}\n", 1,
			"cidr.yaml: line 2: network blue: exists with CIDR 10.10.0.0/16, not 10.11.0.0/16"},
		{"port.yaml", "services:\n  - name: web\n    ports: [80/sctp]\n", 2, "line 3: services[0].ports[0]: port \"80/sctp\": the protocol must be tcp or udp"},
		{"key.yaml", "services:\n  - name: web\n    port: [80/tcp]\n", 2, `line 3: unknown key "port" in service`},
		{"addr.yaml", "services:\n  - name: web\n    ports: [80]\n    backends:\n      - addr: 10.10.0.9\n", 2, "line 5: services[0].backends[0].addr"},
		{"nosvc.yaml", "services:\n  - name: api\n    backends: []\n", 1, `nosvc.yaml: line 2: service api: no service "api" on network "blue" (yet); give its ports`},
		{"nonet.yaml", "networks:\n  - {name: green}\n", 1, `nonet.yaml: line 2: network green: unknown network "green"`},
	}
	for _, tt := range tests {
		code, o, e := run(t, "apply", "-f", writeFile(t, tt.name, tt.text), "--control", ctl)
		if code != tt.code || !strings.Contains(e, tt.inStderr) {
			t.Errorf("apply %s = %d\nstdout: %s\nstderr: %s\nwant %d, stderr containing %q", tt.name, code, o, e, tt.code, tt.inStderr)
		}
	}
	if code, _, e := run(t, "apply", "--control", ctl); code != 2 || !strings.Contains(e, "-f FILE") {
		t.Errorf("apply without -f = %d, %s", code, e)
	}
}

func TestExposeFlag(t *testing.T) {
	code, o, e := run(t, "run", "--gossip", "127.0.0.1:0", "--mode", "netstack", "--expose", "web:80/tcp=127.0.0.1:3000", "--expose", "api.blue:9000=127.0.0.1:4000", "--check")
	if code != 0 || !strings.Contains(o, "configuration is valid") {
		t.Errorf("run --expose ... --check = %d\n%s%s", code, o, e)
	}
	code, _, e = run(t, "run", "--gossip", "127.0.0.1:0", "--expose", "web:53/udp=127.0.0.1:53", "--check")
	if code != 2 || !strings.Contains(e, "only TCP ports are exposed") {
		t.Errorf("run --expose udp --check = %d\n%s", code, e)
	}
}
