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
}
