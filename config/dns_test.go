package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestDNSDefaultsValid(t *testing.T) {
	c := Default()
	c.Addr = netip.MustParsePrefix("10.200.1.1/16")
	if err := c.Validate(); err != nil {
		t.Fatalf("Default with addr: %v", err)
	}
	if !c.DNS.Enabled() || c.DNS.Listen != "127.0.0.1:5353" || c.DNS.TTL != 5*time.Second || c.DNS.Domain != "overlay." {
		t.Fatalf("DefaultDNS() = %+v", c.DNS)
	}
}

func TestDNSDecodeAndValidate(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want string // substring of the error; "" means valid
	}{
		{"addr: 10.200.1.1/16\ndns:\n  listen: off\n", ""},
		{"addr: 10.200.1.1/16\ndns:\n  listen: 127.0.0.1:0\n  upstreams: [127.0.0.1:5300, 192.0.2.53]\n  domain: corp.\n  ttl: 30s\n", ""},
		{"addr: 10.200.1.1/16\ndns:\n  listen: localhost\n", "line 3: dns.listen:"},
		{"addr: 10.200.1.1/16\ndns:\n  upstreams: [nowhere]\n", "line 3: dns.upstreams: [0]:"},
		{"addr: 10.200.1.1/16\ndns:\n  domain: \"bad domain\"\n", "line 3: dns.domain:"},
		{"addr: 10.200.1.1/16\ndns:\n\n  ttl: 1500ms\n", "line 4: dns.ttl: 1.5s must be whole seconds"},
		{"addr: 10.200.1.1/16\ndns:\n  tll: 5s\n", "line 3: unknown key \"tll\""},
	} {
		c, err := Decode(strings.NewReader(tc.yaml))
		if err == nil {
			err = c.Validate()
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Decode+Validate(%q) = %v, want valid", tc.yaml, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Decode+Validate(%q) = %v, want an error containing %q", tc.yaml, err, tc.want)
		}
	}
}
