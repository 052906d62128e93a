package node

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/overlayd/overlayd/config"
)

func dnsTestConfig(listen string) config.Config {
	cfg := config.Default()
	cfg.Name = "dnsnode"
	cfg.Mode = config.ModeNetstack
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Addr = netip.MustParsePrefix("10.96.1.1/16")
	cfg.Control = ""
	cfg.DNS.Listen = listen
	cfg.DNS.Upstreams = []string{"127.0.0.1:9"} // never asked here
	return cfg
}

// A host listener address that is taken fails Start with one sentence
// that says what to do.
func TestDNSListenerTaken(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	n, err := New(dnsTestConfig(pc.LocalAddr().String()))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	err = n.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "give --dns another address (port 0 picks one) or --dns off") {
		t.Fatalf("Start with the DNS port taken = %v, want a refusal that names --dns", err)
	}
}

func TestDNSOffAndOn(t *testing.T) {
	n, err := New(dnsTestConfig(config.DNSOff))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, _ := n.Status(context.Background())
	if st.DNS != nil || n.DNSAddr().IsValid() {
		t.Errorf("DNS off: status DNS = %+v, DNSAddr %v; want none", st.DNS, n.DNSAddr())
	}
	n.Close()

	n, err = New(dnsTestConfig("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, _ = n.Status(context.Background())
	// The static network's DNS address is the node's own (10.96.0.1 may
	// be another host's).
	if st.DNS == nil || st.DNS.Listen != n.DNSAddr().String() || len(st.DNS.Addrs) != 1 || st.DNS.Addrs[0] != "10.96.1.1" {
		t.Errorf("DNS on: status DNS = %+v, want the host listener %v and 10.96.1.1 served", st.DNS, n.DNSAddr())
	}
	// The upstreams never include the node itself.
	for _, up := range []string{n.DNSAddr().String(), "10.96.1.1:53"} {
		if !n.dns.isOwn(netip.MustParseAddrPort(up)) {
			t.Errorf("isOwn(%s) = false, want true", up)
		}
	}
	if n.dns.isOwn(netip.MustParseAddrPort("127.0.0.53:53")) {
		t.Error("isOwn(127.0.0.53:53) = true, want false")
	}
}

// On a static network (no IPAM) the node claims no address but its own:
// its DNS address is its own address and the attachment gets no other
// (issue 9 item 1: host2 took host1's 10.201.0.1 as its DNS address).
func TestDNSStaticAddressIsOwn(t *testing.T) {
	for _, addr := range []string{"10.201.0.2/24", "10.201.0.1/24", "10.200.2.1/16"} {
		cfg := dnsTestConfig("127.0.0.1:0")
		cfg.Addr = netip.MustParsePrefix(addr)
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		nets := n.dnsNetworks()
		if len(nets) != 1 || nets[0].Name != staticNetworkName || nets[0].DNSAddr != cfg.Addr.Addr() || nets[0].CIDR != cfg.Addr.Masked() {
			t.Errorf("--addr %s: dnsNetworks() = %+v, want the static network with DNS address %v", addr, nets, cfg.Addr.Addr())
		}
		if p := n.dnsPrefixes(); len(p) != 0 {
			t.Errorf("--addr %s: dnsPrefixes() = %v, want none (the own address is there already)", addr, p)
		}
		n.Close()
	}
}

// Who may ask: the host listener only loopback sources; sockets only the
// overlay reaches, sources in the networks' CIDRs.
func TestDNSAccess(t *testing.T) {
	n, err := New(dnsTestConfig("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.dns.sync(n.snapshot())
	for _, tt := range []struct {
		src               string
		loopback, overlay bool
	}{
		{"127.0.0.1", true, false},
		{"127.3.2.1", true, false},
		{"::1", true, false},
		{"::ffff:127.0.0.1", true, false},
		{"10.96.7.9", false, true},
		{"::ffff:10.96.7.9", false, true},
		{"10.97.0.1", false, false},
		{"198.18.0.3", false, false},
	} {
		a := netip.MustParseAddr(tt.src)
		if got := fromLoopback(a); got != tt.loopback {
			t.Errorf("host listener allows %s = %v, want %v", a, got, tt.loopback)
		}
		if got := n.dns.fromOverlay(a); got != tt.overlay {
			t.Errorf("overlay sockets allow %s = %v, want %v", a, got, tt.overlay)
		}
		if got := n.dns.fromOverlayOrLoopback(a); got != (tt.loopback || tt.overlay) {
			t.Errorf("unbound sockets allow %s = %v, want %v", a, got, tt.loopback || tt.overlay)
		}
	}
}
