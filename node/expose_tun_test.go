package node_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/e2e"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/node"
	"github.com/overlayd/overlayd/stack"
)

// In tun mode an expose only registers the backend, at the program's own
// port on the node's overlay address (the host program is reachable there
// through the TUN already).
func TestExposeTUNModeRegistersTargetPort(t *testing.T) {
	if !stack.CanCreateTUN() {
		e2e.Unavailable(t, "CAP_NET_ADMIN and /dev/net/tun to create a TUN device (run as root)")
	}
	cfg, err := config.Decode(strings.NewReader(`name: tunexpose
mode: tun
tun_name: ovlexp0
listen: 127.0.0.1:0
gossip: {listen: 127.0.0.1:0, profile: test}
control: ""
dns: {listen: "off"}
networks: [{name: blue, cidr: 10.214.0.0/16}]
services: [{name: web, ports: [80/tcp]}]
exposes: [{service: web, port: 80/tcp, target: 127.0.0.1:3000}]
`))
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatalf("tun mode, with a TUN device allowed here: %v", err)
	}
	defer n.Close()
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var si api.ServiceInfo
	testutil.Eventually(t, 10*time.Second, "web with one backend", func() error {
		var err error
		if si, err = n.Service(context.Background(), "blue", "web"); err != nil || len(si.Backends) != 1 {
			return fmt.Errorf("Service(web) = %+v, %v", si, err)
		}
		return nil
	})
	be := netip.MustParseAddrPort(si.Backends[0].Addr)
	if be.Port() != 3000 || !netip.MustParsePrefix("10.214.0.0/16").Contains(be.Addr()) {
		t.Errorf("backend %v, want this node's address on blue at port 3000", be)
	}
}
