package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/internal/testutil"
)

// TestExpose: a local HTTP server on 127.0.0.1, exposed by node 0 as the
// backend of service web (--expose web:80/tcp=127.0.0.1:PORT), is reached
// by a client on node 1 through the VIP, byte-exact both ways. Networks,
// service and expose all come from the nodes' configurations.
func TestExpose(t *testing.T) { OnEachNet(t, testExpose) }

func testExpose(t *testing.T, over Net) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body) // echo
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	defer func() { srv.Close(); <-done }()

	c := NewGossipCluster(t, 2, GossipOptions{Edit: func(i int, cfg *config.Config) {
		if i == 0 {
			d, err := config.Decode(strings.NewReader(`networks:
  - {name: blue, cidr: 10.61.0.0/16}
services:
  - {name: web, network: blue, ports: [80/tcp]}
`))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Networks, cfg.Services = d.Networks, d.Services
			e, err := config.ParseExpose("web:80/tcp=" + ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			cfg.Exposes = []config.Expose{e}
			return
		}
		cfg.Networks = []config.Network{{Name: "blue"}}
	}, Net: over})
	defer func() {
		for _, i := range c.Live() {
			c.Node(i).Close()
		}
	}()
	ctx := context.Background()
	var vip string
	testutil.Eventually(t, 20*time.Second, "node 1 balances web over node 0's exposed backend", func() error {
		si, err := c.Node(1).Service(ctx, "blue", "web")
		if err != nil {
			return err
		}
		if len(si.Backends) != 1 || !si.Backends[0].InTable {
			return fmt.Errorf("service %+v", si)
		}
		vip = si.VIP
		return nil
	})
	si, _ := c.Node(0).Service(ctx, "blue", "web")
	t.Logf("service web: VIP %s, backend %s (owner %s)", si.VIP, si.Backends[0].Addr, si.Backends[0].Owner)
	if be := netip.MustParseAddrPort(si.Backends[0].Addr); be.Port() != 80 || si.Backends[0].Owner != c.Name(0) {
		t.Errorf("backend %s owned by %s, want node 0's overlay address at port 80", si.Backends[0].Addr, si.Backends[0].Owner)
	}

	body := make([]byte, 1<<20)
	rand.Read(body)
	hc := &http.Client{Transport: &http.Transport{DialContext: c.Node(1).Dial}, Timeout: 20 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post("http://"+net.JoinHostPort(vip, "80")+"/", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST through the VIP: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("echo through the VIP: %d bytes, err %v; want the %d bytes sent", len(got), err, len(body))
	}

	// Apply leaves the expose's backend alone, even when the file says
	// the node has no backends of web.
	res, err := c.Node(0).Apply(ctx, api.Apply{Services: []api.ApplyService{{Name: "web", Network: "blue", Backends: []api.ApplyBackend{}}}})
	if err != nil || len(res.Changes) != 0 {
		t.Errorf("Apply(web without backends) = %v, %v; want no changes (the expose's backend stays)", res.Changes, err)
	}
}
