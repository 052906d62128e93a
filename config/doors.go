package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Doors are the node's front doors: host sockets through which local
// programs reach the overlay without an interface (rootless), available in
// every mode. Empty addresses mean the door is off.
type Doors struct {
	// SOCKS5 is the host address of a SOCKS5 proxy (CONNECT and UDP
	// ASSOCIATE) into the overlay, e.g. 127.0.0.1:1080; port 0 picks one.
	SOCKS5 string `yaml:"socks5"`
	// HTTPProxy is the host address of an HTTP CONNECT proxy into the
	// overlay, e.g. 127.0.0.1:8118; port 0 picks one.
	HTTPProxy string `yaml:"http_proxy"`
	// Forwards are host ports that reach one overlay address each.
	Forwards []Forward `yaml:"forwards"`

	lines map[string]int // key → line in the file; nil from flags
}

// Forward is a host port that reaches an overlay destination. Written on
// the command line LISTEN=TARGET[/udp].
type Forward struct {
	// Listen is the host address, e.g. 127.0.0.1:8080; port 0 picks one.
	Listen string `yaml:"listen"`
	// Target is the overlay destination HOST:PORT, HOST an overlay address
	// or a name (web.default.overlay).
	Target string `yaml:"target"`
	// Proto is tcp (the default) or udp.
	Proto string `yaml:"proto"`

	line  int            // of the forward's mapping; 0 from flags
	lines map[string]int // key → line
}

// Any reports whether a door is configured.
func (d Doors) Any() bool {
	return d.SOCKS5 != "" || d.HTTPProxy != "" || len(d.Forwards) > 0
}

// setLines records where d's keys are in the file, so that Validate can
// name the line of a mistake; decodeNode calls it.
func (d *Doors) setLines(n *yaml.Node) { d.lines = keyLines(n) }

func (f *Forward) setLines(n *yaml.Node) { f.line, f.lines = n.Line, keyLines(n) }

func keyLines(n *yaml.Node) map[string]int {
	m := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		m[n.Content[i].Value] = n.Content[i].Line
	}
	return m
}

// ParseForward parses LISTEN=TARGET[/udp], e.g.
// 127.0.0.1:8080=web.default.overlay:80 or 127.0.0.1:5300=10.99.2.1:53/udp.
func ParseForward(s string) (Forward, error) {
	listen, target, ok := strings.Cut(s, "=")
	if !ok {
		return Forward{}, fmt.Errorf("forward %q: want LISTEN=HOST:PORT[/udp], e.g. 127.0.0.1:8080=10.99.2.1:80", s)
	}
	f := Forward{Listen: listen, Target: target}
	if t, p, ok := strings.Cut(target, "/"); ok {
		f.Target, f.Proto = t, p
	}
	if err := f.check(); err != nil {
		return Forward{}, fmt.Errorf("forward %q: %v", s, err)
	}
	return f, nil
}

func (f Forward) String() string {
	s := f.Listen + "=" + f.Target
	if f.Proto != "" && f.Proto != "tcp" {
		s += "/" + f.Proto
	}
	return s
}

// check returns the first mistake in f.
func (f Forward) check() error {
	if err := CheckListen("forward", f.Listen); err != nil {
		return fmt.Errorf("listen: %v", err)
	}
	if err := checkTarget(f.Target); err != nil {
		return fmt.Errorf("target: %v", err)
	}
	switch f.Proto {
	case "", "tcp", "udp":
	default:
		return fmt.Errorf("proto: %q is not tcp or udp", f.Proto)
	}
	return nil
}

// CheckListen checks a host address for what, one of socks5, http_proxy,
// forward or metrics: IP:PORT (or localhost:PORT), port 0 picking one. Its
// messages give an example of what's own address.
func CheckListen(what, s string) error {
	ex := listenExample[what]
	if ex == "" {
		ex = "127.0.0.1:8080"
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q: want IP:PORT, e.g. %s", s, ex)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: the host must be an IP address (or localhost), e.g. %s", s, ex)
		}
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || (p == 0 && port != "0") {
		return fmt.Errorf("%q: port %q is not 0-65535", s, port)
	}
	return nil
}

// listenExample is the usual host address of each door, for messages.
var listenExample = map[string]string{
	"socks5": "127.0.0.1:1080", "http_proxy": "127.0.0.1:8118", "forward": "127.0.0.1:8080",
	"metrics": "127.0.0.1:9464", "dns": "127.0.0.1:5353",
}

// checkTarget checks an overlay destination HOST:PORT.
func checkTarget(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q: want HOST:PORT, e.g. 10.99.2.1:80 or web.default.overlay:80", s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%q: port %q is not 1-65535", s, port)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !validHostname(host) {
		return fmt.Errorf("%q: %q is neither an IP address nor a host name", s, host)
	}
	return nil
}

// validHostname reports whether h is a DNS name: dot-separated labels of
// letters, digits and hyphens, 1-63 bytes each, 253 in all.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// atLine prefixes "line N: " when the line is known.
func atLine(line int, msg string) string {
	if line > 0 {
		return fmt.Sprintf("line %d: %s", line, msg)
	}
	return msg
}

// validateDoors returns the mistakes in the doors and the metrics
// address, each naming its line when the configuration came from a file.
func (c *Config) validateDoors() []error {
	var errs []error
	d := c.Doors
	bad := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s", atLine(line, fmt.Sprintf(format, args...))))
	}
	// TCP host addresses in use, for conflicts: address → what uses it.
	tcpUsed := map[string]string{}
	claim := func(line int, addr, what string) {
		if strings.HasSuffix(addr, ":0") {
			return
		}
		if other, ok := tcpUsed[addr]; ok {
			bad(line, "%s: %s is also the address of %s", what, addr, other)
			return
		}
		tcpUsed[addr] = what
	}
	if d.SOCKS5 != "" {
		if err := CheckListen("socks5", d.SOCKS5); err != nil {
			bad(d.lines["socks5"], "doors.socks5: %v", err)
		} else {
			claim(d.lines["socks5"], d.SOCKS5, "doors.socks5")
		}
	}
	if d.HTTPProxy != "" {
		if err := CheckListen("http_proxy", d.HTTPProxy); err != nil {
			bad(d.lines["http_proxy"], "doors.http_proxy: %v", err)
		} else {
			claim(d.lines["http_proxy"], d.HTTPProxy, "doors.http_proxy")
		}
	}
	udpUsed := map[string]string{}
	for i, f := range d.Forwards {
		what := fmt.Sprintf("doors.forwards[%d]", i)
		line := func(key string) int {
			if l := f.lines[key]; l > 0 {
				return l
			}
			return f.line
		}
		if f.Listen == "" {
			bad(f.line, "%s.listen: a host address is required, e.g. 127.0.0.1:8080", what)
		} else if err := CheckListen("forward", f.Listen); err != nil {
			bad(line("listen"), "%s.listen: %v", what, err)
		} else if f.Proto == "udp" {
			if other, ok := udpUsed[f.Listen]; ok && !strings.HasSuffix(f.Listen, ":0") {
				bad(line("listen"), "%s.listen: %s is also the address of %s", what, f.Listen, other)
			}
			udpUsed[f.Listen] = what
		} else {
			claim(line("listen"), f.Listen, what+".listen")
		}
		if f.Target == "" {
			bad(f.line, "%s.target: an overlay HOST:PORT is required, e.g. 10.99.2.1:80", what)
		} else if err := checkTarget(f.Target); err != nil {
			bad(line("target"), "%s.target: %v", what, err)
		}
		switch f.Proto {
		case "", "tcp", "udp":
		default:
			bad(line("proto"), "%s.proto: %q is not tcp or udp", what, f.Proto)
		}
	}
	if c.Metrics != "" {
		if err := CheckListen("metrics", c.Metrics); err != nil {
			bad(c.lines["metrics"], "metrics: %v", err)
		} else {
			claim(c.lines["metrics"], c.Metrics, "metrics")
		}
	}
	return errs
}
