package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

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
	// IP is the address to take; empty: one from the network's IPAM.
	IP string `yaml:"ip"`
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
		if e.IP != "" {
			if a, err := netip.ParseAddr(e.IP); err != nil || !a.Is4() {
				bad(line("ip"), "%s.ip: %q is not an IPv4 address", what, e.IP)
			}
		}
		if len(e.IfName) > 15 || strings.ContainsAny(e.IfName, "/ \t\n:") {
			bad(line("ifname"), "%s.ifname: %q: at most 15 characters, no '/', ':' or spaces", what, e.IfName)
		}
	}
	return errs
}
