package node

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/internal/testutil"
)

// On a dual-stack network an expose registers a backend at this node's
// address of each family (one door per address in netstack mode), so the
// program serves both VIPs.
func TestExposeDualStack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := clusterConfig(t, "solo")
	d, err := config.Decode(strings.NewReader("networks:\n  - {name: blue, cidr: [10.62.0.0/16, fd00:62::/64]}\nservices:\n  - {name: web, network: blue, ports: [80/tcp]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Networks, cfg.Services = d.Networks, d.Services
	e, err := config.ParseExpose("web:80/tcp=" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Exposes = []config.Expose{e}
	n := startNode(t, cfg)
	testutil.Eventually(t, 10*time.Second, "web's backends of both families", func() error {
		si, err := n.Service(context.Background(), "blue", "web")
		if err != nil {
			return err
		}
		var bs []string
		for _, b := range si.Backends {
			bs = append(bs, b.Addr)
		}
		slices.Sort(bs)
		if fmt.Sprint(si.VIPs, bs) != "[10.62.240.0 fd00:62::f000:0] [10.62.0.2:80 [fd00:62::2]:80]" {
			return fmt.Errorf("service %v, backends %v", si.VIPs, bs)
		}
		return nil
	})
}
