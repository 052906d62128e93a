package dns_test

import (
	"context"
	"log"
	"net/netip"
	"time"

	"github.com/overlayd/overlayd/dns"
)

// How node wires the package: the forwarder's upstreams from config or the
// host's resolv.conf, the zone rebuilt from the gossip tables on every
// change, a host listener for laptops, and each network's DNS address
// served through the netstack with ServePacket/ServeListener on gonet conns.
func Example() {
	upstreams, err := dns.ReadResolvConf("/etc/resolv.conf")
	if err != nil {
		log.Fatal(err)
	}
	fwd, err := dns.NewForwarder(dns.ForwarderOptions{Upstreams: upstreams})
	if err != nil {
		log.Fatal(err)
	}
	overlay := netip.MustParsePrefix("10.200.0.0/16")
	srv, err := dns.New(dns.Options{
		Addr:      dns.DefaultAddr,
		Forwarder: fwd,
		Allowed:   func(a netip.Addr) bool { return a.IsLoopback() || overlay.Contains(a) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	// On every gossip watch event: the whole zone, swapped atomically.
	err = srv.SetZone(dns.ZoneData{
		Networks: []dns.Network{{Name: "default", CIDR: overlay, DNSAddr: netip.MustParseAddr("10.200.0.1")}},
		Nodes:    []dns.NodeRecord{{Name: "laptop", Network: "default", Addr: netip.MustParseAddr("10.200.1.1")}},
		Services: []dns.ServiceRecord{{Name: "web", Network: "default", VIP: netip.MustParseAddr("10.200.255.10"),
			Ports: []dns.Port{{Port: 80, Proto: "tcp"}}}},
		TTL: 5 * time.Second,
	})
	if err != nil {
		log.Printf("dns zone: %v", err) // bad records are left out; the rest is served
	}

	// Netstack: go srv.ServePacket(udpConn); go srv.ServeListener(tcpListener)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := srv.Serve(ctx); err != nil {
		log.Fatal(err)
	}
}
