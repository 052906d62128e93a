package node_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/node"
)

// Two rootless nodes in one program, in the manner of tsnet: one serves
// HTTP on its overlay address with Listen, the other reaches it through
// the overlay with Dial.
func Example() {
	newNode := func(name, addr string) *node.Node {
		cfg := config.Default()
		cfg.Name = name
		cfg.Mode = config.ModeNetstack                      // no root, no interface
		cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0") // the VTEP; port 0 picks one
		cfg.Addr = netip.MustParsePrefix(addr)              // the node's overlay address
		cfg.Control = ""                                    // no control socket
		cfg.DNS.Listen = config.DNSOff                      // no DNS server on the host
		n, err := node.New(cfg)
		if err != nil {
			panic(err)
		}
		return n
	}
	web, laptop := newNode("web", "10.97.2.1/16"), newNode("laptop", "10.97.1.1/16")
	defer web.Close()
	defer laptop.Close()
	// Each node's address lives at the other's VTEP (gossip would learn it).
	web.SetStaticRoutes([]config.Peer{{Prefix: netip.MustParsePrefix("10.97.1.1/32"), VTEP: laptop.VTEP()}})
	laptop.SetStaticRoutes([]config.Peer{{Prefix: netip.MustParsePrefix("10.97.2.1/32"), VTEP: web.VTEP()}})
	web.Start(context.Background())
	laptop.Start(context.Background())

	ln, err := web.Listen("tcp", ":80")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "hello %s", host)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	client := &http.Client{Transport: &http.Transport{DialContext: laptop.Dial}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://10.97.2.1/")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))
	// Output: hello 10.97.1.1
}
