package config

import (
	"fmt"
	"net/netip"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Expose makes a program on this host a backend of an overlay service,
// reachable from the whole overlay. Written on the command line
// SERVICE[.NETWORK]:PORT[/tcp]=IP:PORT, e.g. web:80/tcp=127.0.0.1:3000.
type Expose struct {
	// Service is the overlay service, NAME or NAME.NETWORK; without a
	// network: the network of the service's entry under services, else
	// the node's only joined network.
	Service string `yaml:"service"`
	// Port is the service's port, PORT/tcp (only TCP is exposed). In
	// netstack mode the node listens on its overlay address at this port.
	Port string `yaml:"port"`
	// Target is the local program's host address, IP:PORT.
	Target string `yaml:"target"`

	line  int
	lines map[string]int
}

func (e *Expose) setLines(n *yaml.Node) { e.line, e.lines = n.Line, keyLines(n) }

// ParseExpose parses SERVICE[.NETWORK]:PORT[/tcp]=IP:PORT.
func ParseExpose(s string) (Expose, error) {
	svc, target, ok := strings.Cut(s, "=")
	name, port, ok2 := strings.Cut(svc, ":")
	if !ok || !ok2 {
		return Expose{}, fmt.Errorf("expose %q: want SERVICE:PORT/tcp=IP:PORT, e.g. web:80/tcp=127.0.0.1:3000", s)
	}
	e := Expose{Service: name, Port: port, Target: target}
	if err := e.check(); err != nil {
		return Expose{}, fmt.Errorf("expose %q: %v", s, err)
	}
	return e, nil
}

func (e Expose) String() string { return e.Service + ":" + e.Port + "=" + e.Target }

// ServiceNetwork splits Service into the service's name and network (""
// when not given).
func (e Expose) ServiceNetwork() (name, network string) {
	name, network, _ = strings.Cut(e.Service, ".")
	return name, network
}

// PortNumber is the service port (Port without its protocol).
func (e Expose) PortNumber() uint16 {
	var p uint16
	fmt.Sscanf(e.Port, "%d", &p)
	return p
}

func (e Expose) check() error { return e.checkKey("") }

// checkKey returns the first mistake, only in key when key is not empty.
func (e Expose) checkKey(key string) error {
	if key == "" || key == "service" {
		name, network := e.ServiceNetwork()
		if !validLabel(name) || (strings.Contains(e.Service, ".") && !validNetworkName(network)) {
			return fmt.Errorf("service: %q is not SERVICE or SERVICE.NETWORK, e.g. web or web.blue", e.Service)
		}
	}
	if key == "" || key == "port" {
		if err := CheckPort(e.Port); err != nil {
			return fmt.Errorf("port: %v", err)
		}
		if _, proto, _ := strings.Cut(e.Port, "/"); proto != "" && strings.ToLower(proto) != "tcp" {
			return fmt.Errorf("port: %q: only TCP ports are exposed", e.Port)
		}
	}
	if key == "" || key == "target" {
		if ap, err := netip.ParseAddrPort(e.Target); err != nil || ap.Port() == 0 {
			return fmt.Errorf("target: %q: want the local program's IP:PORT, e.g. 127.0.0.1:3000", e.Target)
		}
	}
	return nil
}

// validateExposes returns the mistakes in the exposes, naming their lines.
func (c *Config) validateExposes() []error {
	var errs []error
	if len(c.Exposes) > 0 && !c.Gossip.Enabled() {
		errs = append(errs, fmt.Errorf("%s", atLine(c.Exposes[0].line, "exposes: services need gossip: set gossip.listen (--gossip IP:PORT)")))
	}
	for i, e := range c.Exposes {
		for _, key := range []string{"service", "port", "target"} {
			if err := e.checkKey(key); err != nil {
				errs = append(errs, fmt.Errorf("%s", atLine(at(e.line, e.lines, key), fmt.Sprintf("exposes[%d].%v", i, err))))
			}
		}
	}
	return errs
}
