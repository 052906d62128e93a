// Command embed shows overlayd's embedding API, in the manner of tsnet: a
// Go program creates overlay nodes with node.New, serves on one with
// Listen and reaches it from the other with Dial, without root, without
// an interface, without a daemon. It prints the answer and exits 0.
//
//	go run ./examples/embed
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/node"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

// newNode builds a rootless node: the embedded netstack, VXLAN on a free
// loopback port, no control socket.
func newNode(name, addr string) (*node.Node, error) {
	cfg := config.Default()
	cfg.Name = name
	cfg.Mode = config.ModeNetstack
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Addr = netip.MustParsePrefix(addr)
	cfg.Control = ""
	cfg.DNS.Listen = config.DNSOff // no DNS server on the host
	return node.New(cfg)
}

func run(ctx context.Context, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	web, err := newNode("web", "10.98.2.1/16")
	if err != nil {
		return err
	}
	defer web.Close()
	laptop, err := newNode("laptop", "10.98.1.1/16")
	if err != nil {
		return err
	}
	defer laptop.Close()

	// Static routes: each node's address lives at the other's VTEP. (With
	// gossip, nodes learn these by themselves.)
	if err := web.SetStaticRoutes([]config.Peer{{Prefix: netip.MustParsePrefix("10.98.1.1/32"), VTEP: laptop.VTEP()}}); err != nil {
		return err
	}
	if err := laptop.SetStaticRoutes([]config.Peer{{Prefix: netip.MustParsePrefix("10.98.2.1/32"), VTEP: web.VTEP()}}); err != nil {
		return err
	}
	for _, n := range []*node.Node{web, laptop} {
		if err := n.Start(ctx); err != nil {
			return err
		}
	}

	// The web node serves HTTP on its overlay address, port 80.
	ln, err := web.Listen("tcp", ":80")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "hello %s, this is the web node over the overlay\n", host)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	// The laptop node dials it through the overlay.
	client := &http.Client{Transport: &http.Transport{DialContext: laptop.Dial}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://10.98.2.1/", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s %s", resp.Status, body)
	return nil
}
