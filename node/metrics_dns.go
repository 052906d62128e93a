package node

import "github.com/overlayd/overlayd/dns"

// dnsStats returns the counters of the node's DNS server, for metrics;
// false when DNS is off.
func (n *Node) dnsStats() (dns.Stats, bool) {
	if n.dns == nil || n.dns.srv == nil {
		return dns.Stats{}, false
	}
	return n.dns.srv.Stats(), true
}
