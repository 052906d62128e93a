package node

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/internal/testutil"
)

func gossipNode(t testing.TB) *Node {
	t.Helper()
	cfg := config.Default()
	cfg.Name = "solo"
	cfg.Mode = config.ModeNetstack
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Control = ""
	cfg.Gossip.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Gossip.Profile = "test"
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.DNS.Listen = config.DNSOff
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.crash() })
	return n
}

func TestCreateJoinErrors(t *testing.T) {
	n := gossipNode(t)
	ctx := context.Background()
	vni := uint32(10)
	if _, err := n.CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.1.0.0/24", VNI: &vni}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		req  api.CreateNetwork
		code int
	}{
		{api.CreateNetwork{Name: "blue", CIDR: "10.9.0.0/24"}, 409},
		{api.CreateNetwork{Name: "b2", CIDR: "10.1.0.128/25"}, 409},
		{api.CreateNetwork{Name: "b3", CIDR: "10.3.0.0/24", VNI: &vni}, 409},
		{api.CreateNetwork{Name: "b4", CIDR: "10.3.0.1/24"}, 400},
		{api.CreateNetwork{Name: "b5", CIDR: "fd00::/124"}, 400},
		{api.CreateNetwork{Name: "b5", CIDRs: []string{"10.4.0.0/24", "10.5.0.0/24"}}, 400},
		{api.CreateNetwork{Name: "b5", CIDR: "10.4.0.0/24", CIDRs: []string{"fd00:1::/64", "fd00:2::/64"}}, 400},
		{api.CreateNetwork{Name: "b6", CIDR: "10.3.0.0/30"}, 400},
		{api.CreateNetwork{Name: "a/b", CIDR: "10.3.0.0/24"}, 400},
		{api.CreateNetwork{Name: "", CIDR: "10.3.0.0/24"}, 400},
	}
	for _, tt := range tests {
		_, err := n.CreateNetwork(ctx, tt.req)
		if api.StatusOf(err) != tt.code {
			t.Errorf("CreateNetwork(%+v) = %v, want status %d", tt.req, err, tt.code)
		}
	}
	if _, err := n.JoinNetwork(ctx, "nope"); err == nil {
		t.Error("join of an unknown network succeeded")
	}
	ni, err := n.JoinNetwork(ctx, "blue")
	if err != nil || ni.Addr != "10.1.0.2/24" {
		t.Fatalf("JoinNetwork = %+v, %v", ni, err)
	}
	if nets := n.rt.Networks(); len(nets) != 1 || nets[0].VNI != 10 {
		t.Errorf("router networks %+v", nets)
	}
	if _, err := n.Listen("tcp", "10.1.0.2:80"); err != nil {
		t.Errorf("listen on the joined address: %v", err)
	}
	if err := n.LeaveNetwork(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	if nets := n.rt.Networks(); len(nets) != 0 {
		t.Errorf("router networks after leave %+v", nets)
	}
	if _, err := n.Listen("tcp", "10.1.0.2:81"); err == nil {
		t.Error("listen on the address of a network left succeeded")
	}
}

// A node joining a dual-stack network gets an address of each family: the
// API, the router, the status and its route entry carry both.
func TestJoinDualStack(t *testing.T) {
	n := gossipNode(t)
	ctx := context.Background()
	ni, err := n.CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.1.0.0/24", CIDRs: []string{"fd00:10::/64"}})
	if err != nil || ni.CIDR != "10.1.0.0/24" || fmt.Sprint(ni.CIDRs, ni.DNSAddrs) != "[10.1.0.0/24 fd00:10::/64] [10.1.0.1 fd00:10::1]" {
		t.Fatalf("CreateNetwork(dual) = %+v, %v", ni, err)
	}
	ni, err = n.JoinNetwork(ctx, "blue")
	if err != nil || ni.Addr != "10.1.0.2/24" || fmt.Sprint(ni.Addrs) != "[10.1.0.2/24 fd00:10::2/64]" {
		t.Fatalf("JoinNetwork(dual) = %+v, %v", ni, err)
	}
	if nets := n.rt.Networks(); len(nets) != 1 || fmt.Sprint(nets[0].Addrs) != "[10.1.0.2/24 fd00:10::2/64]" || len(nets[0].Local) != 0 {
		t.Errorf("router networks %+v, want both addresses", nets)
	}
	st, err := n.Status(ctx)
	if err != nil || len(st.Networks) != 1 || fmt.Sprint(st.Networks[0].Addrs) != "[10.1.0.2/24 fd00:10::2/64]" {
		t.Errorf("status networks %+v, %v", st.Networks, err)
	}
	e, ok := n.ctl.g.Get(catalog.TableRoutes, "blue", catalog.RouteKey("solo"))
	if !ok || !strings.HasPrefix(string(e.Value), "10.1.0.2/32 fd00:10::2/128 ") {
		t.Errorf("route entry %q, want both host prefixes", e.Value)
	}
	nets, err := n.Networks(ctx)
	if err != nil || len(nets) != 1 || fmt.Sprint(nets[0].Addrs) != "[10.1.0.2/24 fd00:10::2/64]" {
		t.Errorf("Networks = %+v, %v", nets, err)
	}
	// A service there gets a VIP of each family from the VIP pools.
	si, err := n.CreateService(ctx, api.CreateService{Name: "web", Ports: []string{"80/tcp"}})
	if err != nil || si.VIP != "10.1.0.240" || fmt.Sprint(si.VIPs) != "[10.1.0.240 fd00:10::f000:0]" {
		t.Fatalf("CreateService(dual) = %+v, %v", si, err)
	}
	for _, a := range []string{"10.1.0.9:80", "[fd00:10::9]:80"} {
		if _, err := n.AddBackend(ctx, api.AddBackend{Service: "web", Addr: a, Weight: 1}); err != nil {
			t.Errorf("AddBackend(%s): %v", a, err)
		}
	}
	// The balancer has it as two services side by side, one per VIP.
	testutil.Eventually(t, 5*time.Second, "the balancer's web and web/6", func() error {
		var got []string
		for _, ss := range n.lb.Stats().Services {
			got = append(got, ss.Name+" "+ss.VIP.String())
		}
		if fmt.Sprint(got) != "[web 10.1.0.240 web/6 fd00:10::f000:0]" {
			return fmt.Errorf("balancer services %v", got)
		}
		return nil
	})
	if si, err := n.Service(ctx, "", "web"); err != nil || si.Error != "" {
		t.Errorf("Service(web) = %+v, %v; want it balanced", si, err)
	}
	if err := n.RemoveService(ctx, "", "web"); err != nil {
		t.Fatal(err)
	}
	if ls, ok := n.ctl.ipam.Lookup("blue", netip.MustParseAddr("fd00:10::f000:0")); ok {
		t.Errorf("the IPv6 VIP is still leased after the remove: %+v", ls)
	}
}

// FuzzCreateNetwork: whatever the request, the node answers with a status
// error (or success), never a panic or an unclassified error.
func FuzzCreateNetwork(f *testing.F) {
	f.Add("blue", "10.1.0.0/24", uint32(7), true)
	f.Add("x", "0.0.0.0/0", uint32(0), false)
	f.Add("..", "255.255.255.192/26", uint32(1<<24), true)
	f.Add("dual", "10.2.0.0/24 fd00:2::/64", uint32(8), false)
	f.Add("v6", "fd00:3::/120", uint32(9), true)
	n := gossipNode(f)
	f.Fuzz(func(t *testing.T, name, cidr string, vni uint32, withVNI bool) {
		c, more, _ := strings.Cut(cidr, " ") // a second CIDR after a space
		req := api.CreateNetwork{Name: name, CIDR: c}
		if more != "" {
			req.CIDRs = strings.Split(more, " ")
		}
		if withVNI {
			req.VNI = &vni
		}
		_, err := n.CreateNetwork(context.Background(), req)
		if err != nil && api.StatusOf(err) == 500 {
			t.Fatalf("CreateNetwork(%+v) = %v: not a status error", req, err)
		}
	})
}
