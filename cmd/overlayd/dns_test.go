package main

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
)

func TestPrintDNS(t *testing.T) {
	var b bytes.Buffer
	printDNS(&b, api.Status{DNS: &api.DNSStatus{
		Domain: "overlay.", Listen: "127.0.0.1:5353", Addrs: []string{"10.210.0.1"}, Upstreams: []string{"127.0.0.1:5300"},
		Queries: map[string]uint64{"A": 4, "SRV": 1}, Responses: map[string]uint64{"NOERROR": 3, "REFUSED": 2},
		CacheHits: 7, CacheMisses: 1, UpstreamErrors: 2,
	}})
	for _, want := range []string{
		"dns: overlay. on 127.0.0.1:5353, 10.210.0.1:53; upstreams 127.0.0.1:5300\n",
		"  responses: NOERROR 3, REFUSED 2\n",
		"  queries: A 4, SRV 1\n",
		"  cache: 7 hits, 1 misses, 0 entries; upstream errors 2, busy 0, dropped 0\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("printDNS output lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	printDNS(&b, api.Status{})
	if b.Len() != 0 {
		t.Errorf("printDNS with DNS off = %q, want nothing", b.String())
	}
}

func TestDNSFlags(t *testing.T) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	apply := dnsFlags(fs)
	if err := fs.Parse([]string{"--dns", "127.0.0.1:0", "--dns-upstream", "127.0.0.1:5300", "--dns-upstream", "192.0.2.53", "--dns-domain", "corp.", "--dns-ttl", "30s"}); err != nil {
		t.Fatal(err)
	}
	c := config.Default()
	fs.Visit(func(f *flag.Flag) {
		if err := apply(f.Name, &c); err != nil {
			t.Errorf("apply %s: %v", f.Name, err)
		}
	})
	if c.DNS.Listen != "127.0.0.1:0" || c.DNS.Domain != "corp." || c.DNS.TTL != 30*time.Second ||
		strings.Join(c.DNS.Upstreams, ",") != "127.0.0.1:5300,192.0.2.53" {
		t.Errorf("DNS after flags = %+v", c.DNS)
	}
	if err := fs.Parse([]string{"--dns-upstream", "nope"}); err == nil || !strings.Contains(err.Error(), "is not a resolver's address") {
		t.Errorf("--dns-upstream nope: %v, want a refusal", err)
	}
}
