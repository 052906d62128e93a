package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Network is a gossip network the node takes part in: created when the
// cluster does not know it yet (with CIDR, and VNI when given), then
// joined. Only Name is needed to join a network another node creates.
type Network struct {
	// Name of the network, e.g. blue.
	Name string `yaml:"name"`
	// CIDR of the network: one prefix (10.10.0.0/16, fd00:10::/64) or a
	// list of one IPv4 and one IPv6 prefix for a dual-stack network
	// ([10.10.0.0/16, fd00:10::/64]); empty: join only (the network is
	// created elsewhere).
	CIDR CIDRs `yaml:"cidr"`
	// VNI of the network; nil: picked when it is created.
	VNI *uint32 `yaml:"vni"`

	line  int            // of the entry; 0 from flags
	lines map[string]int // key → line
}

// CIDRs are a network's prefixes; in YAML one prefix or a list.
type CIDRs []string

// Service is a service VIP: created (with Ports) when its network does
// not have it, and this node's backends of it set to Backends.
type Service struct {
	// Name of the service, a DNS label (web → web.NETWORK.overlay).
	Name string `yaml:"name"`
	// Network of the service; empty: the node's only joined network.
	Network string `yaml:"network"`
	// VIP of the service; empty: one from the network's VIP range.
	VIP string `yaml:"vip"`
	// Ports of the service, PORT/PROTO such as 80/tcp or 53/udp; empty:
	// the service is created elsewhere, and only this node's backends
	// are set.
	Ports []string `yaml:"ports"`
	// Backends this node adds to the service. Without the key the node's
	// backends are left as they are; with it (even empty) the node's
	// backends of the service are made exactly these.
	Backends []Backend `yaml:"backends"`

	line  int
	lines map[string]int
}

// Backend is one backend of a service, on this node.
type Backend struct {
	// Addr is the backend's overlay IP:PORT, or :PORT for this node's own
	// address on the service's network.
	Addr string `yaml:"addr"`
	// Weight is the backend's share of new flows, 0-65535 (0 drains);
	// nil: 1.
	Weight *uint32 `yaml:"weight"`
	// Check is the health check from this node: tcp, udp or none.
	Check string `yaml:"check"`
	// ServicePort is the service port the backend serves (the number of
	// one of the service's ports); 0: the port with the backend's own
	// number or, for a service whose ports all have one number, that one.
	ServicePort uint16 `yaml:"service_port"`

	line  int
	lines map[string]int
}

func (nw *Network) setLines(n *yaml.Node) { nw.line, nw.lines = n.Line, keyLines(n) }
func (s *Service) setLines(n *yaml.Node)  { s.line, s.lines = n.Line, keyLines(n) }
func (b *Backend) setLines(n *yaml.Node)  { b.line, b.lines = n.Line, keyLines(n) }

// Line is the line of the network's entry in its file, 0 when unknown.
func (nw Network) Line() int { return nw.line }

// Line is the line of the service's entry in its file, 0 when unknown.
func (s Service) Line() int { return s.line }

// Line is the line of the backend's entry in its file, 0 when unknown.
func (b Backend) Line() int { return b.line }

// BackendsGiven reports whether the service says what its backends on
// this node are (the backends key is present, even empty).
func (s Service) BackendsGiven() bool {
	_, ok := s.lines["backends"]
	return ok || s.Backends != nil
}

// ValidateApply checks the networks and services sections, the part of a
// configuration that 'overlayd apply' reconciles; the node's own settings
// are not looked at.
func (c *Config) ValidateApply() error { return errors.Join(c.validateApply()...) }

// at returns the line of key in an entry, else the entry's own line.
func at(line int, lines map[string]int, key string) int {
	if l := lines[key]; l > 0 {
		return l
	}
	return line
}

// checkCIDRs says what is wrong with a network's CIDRs, "" when nothing:
// one or two prefixes, at most one per family, IPv4 from /8 to /26, IPv6
// from /48 to /122 (the network package's rule, which config does not
// import).
func checkCIDRs(cidrs CIDRs) string {
	if len(cidrs) > 2 {
		return fmt.Sprintf("%d prefixes: a network has at most two, one IPv4 and one IPv6", len(cidrs))
	}
	var fams [2]bool
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		switch {
		case err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6():
			return fmt.Sprintf("%q is not a prefix such as 10.10.0.0/16 or fd00:10::/64", c)
		case p != p.Masked():
			return fmt.Sprintf("%v has host bits set; did you mean %v?", p, p.Masked())
		case p.Addr().Is4() && (p.Bits() < 8 || p.Bits() > 26):
			return fmt.Sprintf("%v must be between /8 and /26", p)
		case p.Addr().Is6() && (p.Bits() < 48 || p.Bits() > 122):
			return fmt.Sprintf("IPv6 prefix %v must be between /48 and /122 (a /64 is usual)", p)
		}
		f := 0
		if p.Addr().Is6() {
			f = 1
		}
		if fams[f] {
			return fmt.Sprintf("%v: two prefixes of one family; give at most one IPv4 and one IPv6 prefix", p)
		}
		fams[f] = true
	}
	return ""
}

// validateApply returns the mistakes in the networks and services, each
// naming its line when the configuration came from a file.
func (c *Config) validateApply() []error {
	var errs []error
	bad := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s", atLine(line, fmt.Sprintf(format, args...))))
	}
	names := map[string]bool{}
	for i, nw := range c.Networks {
		what := fmt.Sprintf("networks[%d]", i)
		if !validNetworkName(nw.Name) {
			bad(at(nw.line, nw.lines, "name"), "%s.name: %q is not a network name: use 1 to 63 letters, digits, '-', '_' or '.'", what, nw.Name)
		} else if names[nw.Name] {
			bad(at(nw.line, nw.lines, "name"), "%s.name: network %q is given twice", what, nw.Name)
		}
		names[nw.Name] = true
		if len(nw.CIDR) > 0 {
			if msg := checkCIDRs(nw.CIDR); msg != "" {
				bad(at(nw.line, nw.lines, "cidr"), "%s.cidr: %s", what, msg)
			}
		} else if nw.VNI != nil {
			bad(at(nw.line, nw.lines, "vni"), "%s.vni: a VNI is only used to create the network; give cidr too", what)
		}
		if nw.VNI != nil && *nw.VNI > 1<<24-1 {
			bad(at(nw.line, nw.lines, "vni"), "%s.vni: %d is out of range (0-16777215)", what, *nw.VNI)
		}
	}
	type svcKey struct{ network, name string }
	seen := map[svcKey]bool{}
	for i, s := range c.Services {
		what := fmt.Sprintf("services[%d]", i)
		line := func(key string) int { return at(s.line, s.lines, key) }
		if !validLabel(s.Name) {
			bad(line("name"), "%s.name: %q is not a service name: a DNS label, 1 to 63 letters, digits or '-'", what, s.Name)
		} else if seen[svcKey{s.Network, s.Name}] {
			bad(line("name"), "%s.name: service %q is given twice", what, s.Name)
		}
		seen[svcKey{s.Network, s.Name}] = true
		if s.Network != "" && !validNetworkName(s.Network) {
			bad(line("network"), "%s.network: %q is not a network name", what, s.Network)
		}
		if s.VIP != "" {
			if a, err := netip.ParseAddr(s.VIP); err != nil || !a.Is4() {
				bad(line("vip"), "%s.vip: %q is not an IPv4 address", what, s.VIP)
			}
		}
		for j, p := range s.Ports {
			if err := CheckPort(p); err != nil {
				bad(line("ports"), "%s.ports[%d]: %v", what, j, err)
			}
		}
		addrs := map[string]bool{}
		for j, b := range s.Backends {
			bw := fmt.Sprintf("%s.backends[%d]", what, j)
			bl := func(key string) int { return at(b.line, b.lines, key) }
			if err := CheckBackendAddr(b.Addr); err != nil {
				bad(bl("addr"), "%s.addr: %v", bw, err)
			} else if addrs[b.Addr] {
				bad(bl("addr"), "%s.addr: %s is given twice", bw, b.Addr)
			}
			addrs[b.Addr] = true
			if b.Weight != nil && *b.Weight > 65535 {
				bad(bl("weight"), "%s.weight: %d is out of range (0-65535)", bw, *b.Weight)
			}
			switch b.Check {
			case "", "none", "tcp", "udp":
			default:
				bad(bl("check"), "%s.check: %q is not tcp, udp or none", bw, b.Check)
			}
			if b.ServicePort != 0 && len(s.Ports) > 0 && !servesPort(s.Ports, b.ServicePort) {
				bad(bl("service_port"), "%s.service_port: %d is not one of the service's ports %v", bw, b.ServicePort, s.Ports)
			}
		}
	}
	return append(errs, c.validateEndpoints()...)
}

// validateApplyNeedsGossip: networks and services live in the gossip
// tables.
func (c *Config) validateApplyNeedsGossip() []error {
	if c.Gossip.Enabled() || len(c.Networks)+len(c.Services)+len(c.Endpoints) == 0 {
		return nil
	}
	line := 0
	switch {
	case len(c.Networks) > 0:
		line = c.Networks[0].line
	case len(c.Services) > 0:
		line = c.Services[0].line
	default:
		line = c.Endpoints[0].line
	}
	return []error{fmt.Errorf("%s", atLine(line, "networks, services and endpoints need gossip: set gossip.listen (--gossip IP:PORT)"))}
}

// CheckPort checks a service port, PORT/PROTO such as 80/tcp or 53/udp
// (the protocol defaults to tcp).
func CheckPort(s string) error {
	ps, proto, _ := strings.Cut(s, "/")
	if p, err := strconv.ParseUint(ps, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("port %q: want PORT/PROTO such as 80/tcp or 53/udp", s)
	}
	switch strings.ToLower(proto) {
	case "", "tcp", "udp":
		return nil
	}
	return fmt.Errorf("port %q: the protocol must be tcp or udp", s)
}

// CheckBackendAddr checks a backend's address: an overlay IPv4 IP:PORT,
// :PORT for this node's own address, or NAME:PORT for one of its
// endpoints.
func CheckBackendAddr(s string) error {
	if rest, ok := strings.CutPrefix(s, ":"); ok {
		if p, err := strconv.ParseUint(rest, 10, 16); err == nil && p > 0 {
			return nil
		}
	} else if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Is4() && ap.Port() != 0 {
		return nil
	} else if name, port, ok := strings.Cut(s, ":"); ok && validLabel(name) && !strings.Contains(port, ":") {
		if p, err := strconv.ParseUint(port, 10, 16); err == nil && p > 0 {
			return nil
		}
	}
	return fmt.Errorf("%q: want an overlay IPv4 IP:PORT such as 10.10.0.2:8080, :PORT for this node's own address, or ENDPOINT:PORT", s)
}

// validNetworkName: letters, digits, '-', '_' and '.', 1 to 63 bytes, not
// starting with '.' or '-' (as the node checks it).
func validNetworkName(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// validLabel: a DNS label of letters, digits and '-'.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// servesPort reports whether one of ports (80/tcp, ...) has the number p.
func servesPort(ports []string, p uint16) bool {
	for _, pp := range ports {
		num, _, _ := strings.Cut(pp, "/")
		if num == strconv.Itoa(int(p)) {
			return true
		}
	}
	return false
}
