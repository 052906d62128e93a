package node_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/e2e"
	"github.com/overlayd/overlayd/node"
	"github.com/overlayd/overlayd/stack"
)

// In tun mode the doors dial through the host (the kernel routes overlay
// addresses into the TUN), and refuse destinations off the overlay.
func TestDoorsTUNModeDialThroughHost(t *testing.T) {
	if !stack.CanCreateTUN() {
		e2e.Unavailable(t, "CAP_NET_ADMIN and /dev/net/tun to create a TUN device (run as root)")
	}
	cfg := config.Default()
	cfg.Name = "tundoors"
	cfg.Mode = config.ModeTUN
	cfg.TUNName = "ovldoors0"
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Addr = netip.MustParsePrefix("10.213.1.1/16")
	cfg.Control = ""
	cfg.Doors.SOCKS5 = "127.0.0.1:0"
	n, err := node.New(cfg)
	if err != nil {
		t.Fatalf("tun mode, with a TUN device allowed here: %v", err)
	}
	defer n.Close()
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A host program on the node's overlay address, and one off the overlay.
	var lns []net.Listener
	for _, a := range []string{"10.213.1.1:0", "127.0.0.1:0"} {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "host says hi") })}
		go srv.Serve(ln)
		defer srv.Close()
		lns = append(lns, ln)
	}
	st, err := n.Status(context.Background())
	if err != nil || len(st.Doors) != 1 {
		t.Fatalf("Status = %+v, %v", st.Doors, err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(&url.URL{Scheme: "socks5", Host: st.Doors[0].Addr}), DisableKeepAlives: true,
	}}
	resp, err := client.Get("http://" + lns[0].Addr().String() + "/")
	if err != nil {
		t.Fatalf("GET through the door to the overlay address: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "host says hi" {
		t.Errorf("body %q", body)
	}
	_, err = client.Get("http://" + lns[1].Addr().String() + "/")
	if err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("GET through the door to 127.0.0.1 = %v, want refused by rule (SOCKS reply 2)", err)
	}
}
