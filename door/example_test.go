package door_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"

	"github.com/overlayd/overlayd/door"
	"github.com/overlayd/overlayd/node"
	"github.com/overlayd/overlayd/stack"
)

// The netstack and the node are the doors' Dialer and PacketListener.
var (
	_ door.Dialer         = (*stack.Netstack)(nil)
	_ door.PacketListener = (*stack.Netstack)(nil)
	_ door.Dialer         = door.DialerFunc((*node.Node)(nil).Dial)
	_ door.PacketListener = (*node.Node)(nil)
)

// A SOCKS5 door on the host into a netstack: a web server listens on
// the netstack's overlay address, and a host program reaches it by name
// through the door.
func Example() {
	ns, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{netip.MustParsePrefix("10.99.1.1/16")}})
	if err != nil {
		panic(err)
	}
	defer ns.Close()
	ln, err := ns.Listen("tcp", "10.99.1.1:80")
	if err != nil {
		panic(err)
	}
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.Host)
	})}
	go web.Serve(ln)
	defer web.Close()

	names := map[string]netip.Addr{"web.default.overlay": netip.MustParseAddr("10.99.1.1")}
	socks, err := door.NewSOCKS5("127.0.0.1:0", door.Options{
		Dialer:         ns,
		PacketListener: ns,
		Resolver: func(ctx context.Context, host string) ([]netip.Addr, error) {
			if a, ok := names[host]; ok {
				return []netip.Addr{a}, nil
			}
			return nil, fmt.Errorf("%s: no such host", host)
		},
	})
	if err != nil {
		panic(err)
	}
	if err := socks.Start(context.Background()); err != nil {
		panic(err)
	}
	defer socks.Close()

	// Like `curl --socks5-hostname 127.0.0.1:PORT http://web.default.overlay/`.
	client := &http.Client{Transport: &http.Transport{
		Proxy: http.ProxyURL(&url.URL{Scheme: "socks5", Host: socks.Addr().String()}),
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://web.default.overlay/")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))
	fmt.Println("connections:", socks.Stats().Accepted)
	// Output:
	// hello from web.default.overlay
	// connections: 1
}
