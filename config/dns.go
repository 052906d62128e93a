package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DNSOff is the DNS.Listen value that turns the node's DNS off.
const DNSOff = "off"

// DNS configures the node's DNS server: the overlay's names
// (NAME.NETWORK.DOMAIN) and a caching forwarder for the rest, served on
// each joined network's DNS address inside the overlay and on a host
// address for local programs.
type DNS struct {
	// Listen is the host address of the DNS listener (UDP and TCP), e.g.
	// 127.0.0.1:5353; port 0 picks one. "off" turns DNS off altogether,
	// also on the networks' DNS addresses.
	Listen string `yaml:"listen"`
	// Upstreams are the resolvers other names are forwarded to, IP or
	// IP:PORT (port 53 if left out). Empty: the nameservers of
	// /etc/resolv.conf, leaving out this node's own listener.
	Upstreams []string `yaml:"upstreams"`
	// Domain is the overlay's domain, "overlay." by default.
	Domain string `yaml:"domain"`
	// TTL of overlay records and of negative answers, whole seconds.
	TTL time.Duration `yaml:"ttl"`

	lines map[string]int // key → line in the file; nil from flags
}

// DefaultDNS is the DNS configuration of Default().
func DefaultDNS() DNS {
	return DNS{Listen: "127.0.0.1:5353", Domain: "overlay.", TTL: 5 * time.Second}
}

// Enabled reports whether DNS is on.
func (d DNS) Enabled() bool { return d.Listen != DNSOff }

// UpstreamAddrs parses Upstreams (already validated).
func (d DNS) UpstreamAddrs() ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, s := range d.Upstreams {
		ap, err := ParseUpstream(s)
		if err != nil {
			return nil, err
		}
		out = append(out, ap)
	}
	return out, nil
}

func (d *DNS) setLines(n *yaml.Node) { d.lines = keyLines(n) }

// CheckDNSListen checks the DNS host listener: IP:PORT (port 0 picks one)
// or "off".
func CheckDNSListen(s string) error {
	if s == DNSOff {
		return nil
	}
	if CheckListen("dns", s) != nil {
		return fmt.Errorf("%q: want IP:PORT, e.g. 127.0.0.1:5353 (port 0 picks one), or off", s)
	}
	return nil
}

// ParseUpstream parses a resolver's address, IP or IP:PORT (port 53 if
// left out).
func ParseUpstream(s string) (netip.AddrPort, error) {
	ap, err := ParseAddrPort(s, 53)
	if err != nil || ap.Port() == 0 || ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("%q is not a resolver's address: want IP or IP:PORT, e.g. 192.0.2.53 or 127.0.0.1:5300", s)
	}
	return ap, nil
}

// validateDNS returns the mistakes in the DNS section, each naming its line
// when the configuration came from a file.
func (c *Config) validateDNS() []error {
	var errs []error
	d := c.DNS
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s", atLine(d.lines[key], "dns."+key+": "+fmt.Sprintf(format, args...))))
	}
	if err := CheckDNSListen(d.Listen); err != nil {
		bad("listen", "%v", err)
	}
	for i, s := range d.Upstreams {
		if _, err := ParseUpstream(s); err != nil {
			bad("upstreams", "[%d]: %v", i, err)
		}
	}
	dom := strings.TrimSuffix(d.Domain, ".")
	if dom == "" || !validHostname(dom) {
		bad("domain", "%q is not a domain name, e.g. overlay.", d.Domain)
	}
	if d.TTL < time.Second || d.TTL > 24*time.Hour || d.TTL%time.Second != 0 {
		bad("ttl", "%v must be whole seconds from 1s to 24h", d.TTL)
	}
	return errs
}
