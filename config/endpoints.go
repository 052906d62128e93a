package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// IPs are an endpoint's addresses; in YAML one address or a list.
type IPs []string

// Endpoint is a network namespace attached to a network as an endpoint
// (as 'overlayd attach' does), at start and by 'overlayd apply' (gossip
// only). One attached already with the same namespace and network is
// left as it is.
type Endpoint struct {
	// Name of the endpoint, a DNS label (c1 → c1.NETWORK.overlay).
	Name string `yaml:"name"`
	// Netns is the namespace's path: /var/run/netns/NAME, /proc/PID/ns/net.
	Netns string `yaml:"netns"`
	// Network of the endpoint; empty: the node's only joined network.
	Network string `yaml:"network"`
	// IP is the address to take, IPv4 or IPv6, or a list of one of each
	// on a dual-stack network ([10.10.0.9, fd00:10::9]); empty: one from
	// the network's IPAM (for a family not given too).
	IP IPs `yaml:"ip"`
	// IfName is the interface's name in the namespace; empty: eth0.
	IfName string `yaml:"ifname"`
	// DefaultRoute also points the namespace's default route at it.
	DefaultRoute bool `yaml:"default_route"`

	line  int
	lines map[string]int
}

func (e *Endpoint) setLines(n *yaml.Node) { e.line, e.lines = n.Line, keyLines(n) }

// Line is the line of the endpoint's entry in its file, 0 when unknown.
func (e Endpoint) Line() int { return e.line }

// validateEndpoints returns the mistakes in the endpoints section.
func (c *Config) validateEndpoints() []error {
	var errs []error
	bad := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s", atLine(line, fmt.Sprintf(format, args...))))
	}
	names := map[string]bool{}
	for i, e := range c.Endpoints {
		what := fmt.Sprintf("endpoints[%d]", i)
		line := func(key string) int { return at(e.line, e.lines, key) }
		if !validLabel(e.Name) {
			bad(line("name"), "%s.name: %q is not an endpoint name: a DNS label, 1 to 63 letters, digits or '-'", what, e.Name)
		} else if names[e.Name] {
			bad(line("name"), "%s.name: endpoint %q is given twice", what, e.Name)
		}
		names[e.Name] = true
		if e.Netns == "" || !filepath.IsAbs(e.Netns) {
			bad(line("netns"), "%s.netns: %q: give the namespace's absolute path, such as /var/run/netns/NAME", what, e.Netns)
		}
		if e.Network != "" && !validNetworkName(e.Network) {
			bad(line("network"), "%s.network: %q is not a network name", what, e.Network)
		}
		var fams [2]bool
		for _, ip := range e.IP {
			a, err := netip.ParseAddr(ip)
			if err != nil || a.Zone() != "" {
				bad(line("ip"), "%s.ip: %q is not an IP address such as 10.10.0.9 or fd00:10::9", what, ip)
				break
			}
			f := 0
			if a.Unmap().Is6() {
				f = 1
			}
			if fams[f] {
				bad(line("ip"), "%s.ip: %v: two addresses of one family; give at most one IPv4 and one IPv6 address", what, a)
				break
			}
			fams[f] = true
		}
		if len(e.IfName) > 15 || strings.ContainsAny(e.IfName, "/ \t\n:") {
			bad(line("ifname"), "%s.ifname: %q: at most 15 characters, no '/', ':' or spaces", what, e.IfName)
		}
	}
	return errs
}
