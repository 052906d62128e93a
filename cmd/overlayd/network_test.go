package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/node"
)

func TestNetworkUsage(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inStderr string
	}{
		{[]string{"network"}, 2, "say what to do"},
		{[]string{"network", "create", "blue"}, 2, "want: overlayd network create NAME CIDR"},
		{[]string{"network", "create", "blue", "10.1.0.0/24", "--vni", "x"}, 2, `--vni "x"`},
		{[]string{"network", "join"}, 2, "want: overlayd network join NAME"},
		{[]string{"network", "ls", "--vni", "3"}, 2, "--vni is for network create"},
		{[]string{"network", "frob"}, 2, `unknown network command "frob"`},
		{[]string{"network", "ls", "--control", "/nonexistent/ctl.sock"}, 1, "no overlayd is running"},
		{[]string{"peers", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"routes", "--control", "/nonexistent/ctl.sock"}, 1, "no overlayd is running"},
		{[]string{"run", "--gossip", "nope"}, 2, "--gossip: bad address"},
		{[]string{"run", "--join", "192.0.2.1:7946", "--addr", "10.1.1.1/16"}, 2, "seeds are given but gossip is off"},
		{[]string{"run", "--gossip", "127.0.0.1:0", "--gossip-profile", "fast"}, 2, `gossip.profile: "fast"`},
		{[]string{"run", "--gossip", "127.0.0.1:0", "--discover", "consul"}, 2, `gossip.discover: "consul" is not mdns`},
		{[]string{"run", "--discover", "mdns", "--addr", "10.1.1.1/16"}, 2, "gossip.discover: mdns is asked for but gossip is off"},
	}
	for _, tt := range tests {
		code, _, stderr := run(t, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.inStderr) {
			t.Errorf("overlayd %v: exit %d, stderr %q; want exit %d and %q", tt.args, code, stderr, tt.code, tt.inStderr)
		}
	}
}

// TestNetworkCommands runs the client commands against a gossip node.
func TestNetworkCommands(t *testing.T) {
	cfg := config.Default()
	cfg.Name = "cli"
	cfg.Mode = config.ModeNetstack
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Gossip.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Gossip.Profile = "test"
	cfg.Control = filepath.Join(t.TempDir(), "ctl.sock")
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.DNS.Listen = config.DNSOff
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctl := []string{"--control", cfg.Control}
	steps := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{[]string{"network", "create", "blue", "10.44.0.0/24", "--vni", "44"}, 0, "network blue created: 10.44.0.0/24, VNI 44, DNS address 10.44.0.1", ""},
		{[]string{"network", "create", "red", "10.44.0.128/25"}, 1, "", `overlaps network "blue"`},
		{[]string{"network", "create", "red", "10.45.0.0/24", "--vni", "44"}, 1, "", `VNI 44 is taken by network "blue"`},
		{[]string{"network", "create", "red", "10.46.0.5/24"}, 2, "", "CIDR 10.46.0.5/24 has host bits set; did you mean 10.46.0.0/24?"}, // the daemon's 400: a mistake
		{[]string{"network", "join", "green"}, 1, "", `unknown network "green"`},
		{[]string{"network", "leave", "blue"}, 1, "", `has not joined network "blue"`},
		{[]string{"network", "join", "blue"}, 0, "joined blue (VNI 44) with address 10.44.0.2/24", ""},
		{[]string{"network", "ls"}, 0, "blue  10.44.0.0/24  44", ""},
		{[]string{"peers"}, 0, "cli (self)  alive", ""},
		{[]string{"routes"}, 0, "10.44.0.2/24", ""},
		{[]string{"network", "leave", "blue"}, 0, "left blue", ""},
	}
	for _, s := range steps {
		code, stdout, stderr := run(t, append(s.args, ctl...)...)
		if code != s.code || !strings.Contains(stdout, s.inStdout) || !strings.Contains(stderr, s.inStderr) {
			t.Errorf("overlayd %v: exit %d\nstdout %q\nstderr %q\nwant exit %d, %q, %q", s.args, code, stdout, stderr, s.code, s.inStdout, s.inStderr)
		}
	}
	// status tells the VTEP the cluster is told, the one peers lists.
	var st api.Status
	var ps []api.Peer
	_, o1, _ := run(t, append([]string{"status", "--json"}, ctl...)...)
	_, o2, _ := run(t, append([]string{"peers", "--json"}, ctl...)...)
	if json.Unmarshal([]byte(o1), &st) != nil || json.Unmarshal([]byte(o2), &ps) != nil || len(ps) != 1 || st.VTEPAdvertised == "" || st.VTEPAdvertised != ps[0].VTEP {
		t.Errorf("status vtep_advertised %q, peers %+v; want the same VTEP", st.VTEPAdvertised, ps)
	}
	code, stdout, _ := run(t, append([]string{"routes", "--json"}, ctl...)...)
	var rs struct {
		Routes []any `json:"routes"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &rs) != nil {
		t.Errorf("routes --json: exit %d, %q", code, stdout)
	}
}
