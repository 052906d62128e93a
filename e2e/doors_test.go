package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/internal/testutil"
)

// The promise, end to end: with overlay DNS on, a host program
// reaches a node and a service by name through the SOCKS5 door
// (curl --socks5-hostname), and a forward whose target is a name works.
// The doors listen on host ports either way; only the underlay and
// gossip change with the Net.
func TestDoorsByName(t *testing.T) {
	RequireTools(t, "curl")
	OnEachNet(t, testDoorsByName)
}

func testDoorsByName(t *testing.T, over Net) {
	const nw = "default"
	dnsOn := withDNS(fakeUpstream(t))
	c := NewGossipCluster(t, 2, GossipOptions{Edit: func(i int, cfg *config.Config) {
		dnsOn(i, cfg)
		if i == 0 {
			cfg.Doors = config.Doors{
				SOCKS5:    "127.0.0.1:0",
				HTTPProxy: "127.0.0.1:0",
				Forwards:  []config.Forward{{Listen: "127.0.0.1:0", Target: "gnode1." + nw + ".overlay:80"}},
			}
		}
	}, Net: over})
	ctx := context.Background()
	if _, err := c.Node(0).CreateNetwork(ctx, api.CreateNetwork{Name: nw, CIDR: "10.62.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	addrs := make([]netip.Prefix, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { addrs[i] = c.Join(i, nw) })
	}
	wg.Wait()

	ln, err := c.Node(1).Listen("tcp", netip.AddrPortFrom(addrs[1].Addr(), 80).String())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "gnode1 serving "+r.Host+"\n")
	})}
	wg.Go(func() { srv.Serve(ln) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })

	svc, err := c.Node(0).CreateService(ctx, api.CreateService{Name: "web", Network: nw, Ports: []string{"80/tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the service reaches gnode1", c.knowsService(1, nw, "web"))
	backend := netip.AddrPortFrom(addrs[1].Addr(), 80).String()
	if _, err := c.Node(1).AddBackend(ctx, api.AddBackend{Service: "web", Network: nw, Addr: backend, Weight: 1}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "routes, names and the backend reach gnode0", func() error {
		if rs := c.RoutesOf(0); len(rs) != 1 {
			return fmt.Errorf("gnode0 routes %v", rs)
		}
		if err := c.tableHolds(0, true, "web", backend); err != nil {
			return err
		}
		for _, name := range []string{"gnode1." + nw + ".overlay", "web." + nw + ".overlay"} {
			if m, err := askHost(c.Node(0), name, 1); err != nil || len(m.Answer) == 0 {
				return fmt.Errorf("%s: %v %v", name, m, err)
			}
		}
		return nil
	})

	st, err := c.Node(0).Status(ctx)
	if err != nil || len(st.Doors) != 3 {
		t.Fatalf("Status doors = %+v, %v", st.Doors, err)
	}
	socks, httpProxy, fwd := st.Doors[0].Addr, st.Doors[1].Addr, st.Doors[2].Addr
	curl := func(args ...string) string {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(cctx, "curl", append([]string{"-sS", "--max-time", "15"}, args...)...).CombinedOutput()
		if err != nil {
			t.Errorf("curl %q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--socks5-hostname", socks, "http://gnode1." + nw + ".overlay/"}, "gnode1 serving gnode1." + nw + ".overlay\n"},
		{[]string{"--socks5-hostname", socks, "http://web." + nw + ".overlay/"}, "gnode1 serving web." + nw + ".overlay\n"},
		{[]string{"--proxytunnel", "--proxy", "http://" + httpProxy, "http://web." + nw + ".overlay/"}, "gnode1 serving web." + nw + ".overlay\n"},
		{[]string{"http://" + fwd + "/"}, "gnode1 serving " + fwd + "\n"},
	} {
		if got := curl(tt.args...); got != tt.want {
			t.Errorf("curl %q = %q, want %q", tt.args, got, tt.want)
		}
	}
	t.Logf("service web: VIP %s; doors: socks5 %s, http %s, forward %s", svc.VIP, socks, httpProxy, fwd)
}
