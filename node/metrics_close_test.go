package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/overlayd/overlayd/config"
)

// A metrics endpoint that cannot shut down cleanly (a scrape still being
// received when the node closes) says so in Close's error; it used to be
// dropped.
func TestMetricsShutdownErrorReported(t *testing.T) {
	cfg := config.Default()
	cfg.Name = "m"
	cfg.Mode = config.ModeNetstack
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Addr = netip.MustParsePrefix("10.97.1.1/16")
	cfg.Control = ""
	cfg.DNS.Listen = config.DNSOff
	cfg.Metrics = "127.0.0.1:0"
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		n.Close()
		t.Fatal(err)
	}
	_, addr := n.doorStatus()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	defer c.Close()
	// Half a request: the connection is not idle (new, or active once its
	// first bytes are read), so Shutdown waits for it until its deadline.
	fmt.Fprint(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n")
	// The server tracks a connection in its accept loop, before it
	// accepts the next one: a scrape on a second connection that gets
	// its answer proves the first is tracked (else Shutdown would not
	// know it and return at once).
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		n.Close()
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	err = n.Close()
	if err == nil || !strings.Contains(err.Error(), "node: metrics on "+addr+": shutdown: context deadline exceeded") {
		t.Errorf("Close = %v, want the metrics server's shutdown error", err)
	}
}

// A metrics address in use fails Start with the address named, as the
// CLI shows it.
func TestMetricsAddressTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := config.Default()
	cfg.Name = "m"
	cfg.Mode = config.ModeNetstack
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Addr = netip.MustParsePrefix("10.97.1.1/16")
	cfg.Control = ""
	cfg.DNS.Listen = config.DNSOff
	cfg.Metrics = taken.Addr().String()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	err = n.Start(context.Background())
	if want := "node: metrics on " + cfg.Metrics + ": listen tcp " + cfg.Metrics + ": "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Start = %v, want %q...", err, want)
	}
}
