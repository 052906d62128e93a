package node

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/overlayd/overlayd/metrics"
)

// MetricsRegistry returns a registry holding the node's collector, for
// programs that embed a node and serve metrics their own way. Each call
// returns a new registry.
func (n *Node) MetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(n.metricsSources()))
	return reg
}

// metricsSources are the node's parts, for the collector to read at
// scrape time; the parts this node lacks are left out.
func (n *Node) metricsSources() metrics.Sources {
	s := metrics.Sources{
		Info:         metrics.Info{Node: n.cfg.Name, Version: Version, Mode: n.mode},
		Router:       n.rt,
		NetworkNames: n.networkNames,
		Doors:        n.metricsDoors,
	}
	// A nil pointer in an interface field would not be a nil field.
	if g := n.gossip(); g != nil {
		s.Gossip, s.RoutesRefused = g, n.ctl.refusedRoutes
	}
	if n.lb != nil {
		s.Balancer = n.lb
	}
	if n.dns != nil {
		s.DNS = n.dns
	}
	return s
}

// networkNames names the node's networks by VNI, the static one
// staticNetworkName as in DNS.
func (n *Node) networkNames() map[uint32]string {
	names := make(map[uint32]string)
	for _, nw := range n.networks() {
		names[nw.VNI] = nw.Name
		if nw.Name == "" {
			names[nw.VNI] = staticNetworkName
		}
	}
	return names
}

// metricsDoors are the front doors open now.
func (n *Node) metricsDoors() []metrics.Door {
	n.fd.mu.Lock()
	defer n.fd.mu.Unlock()
	out := make([]metrics.Door, 0, len(n.fd.doors))
	for _, sd := range n.fd.doors {
		out = append(out, metrics.Door{Kind: sd.kind, Listen: sd.listen, Door: sd.door})
	}
	return out
}

// startMetrics opens the Prometheus endpoint when the configuration names
// an address.
func (n *Node) startMetrics() error {
	if n.cfg.Metrics == "" {
		return nil
	}
	m, err := metrics.Listen(n.cfg.Metrics, n.MetricsRegistry(), n.log)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.fd.mu.Lock()
	n.fd.metrics = m
	n.fd.mu.Unlock()
	return nil
}

// closeMetrics closes the metrics server; each of its errors reads
// "node: metrics on ADDR: ...".
func closeMetrics(m *metrics.Server) []error {
	err := m.Close()
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, fmt.Errorf("node: %w", e))
		}
	}
	return out
}
