package node

import (
	"net/netip"

	"github.com/overlayd/overlayd/metrics"
	"github.com/overlayd/overlayd/node/internal/nodedns"
)

// staticNetworkName names the static network (--addr) as DNS does:
// NODE.static.overlay.
const staticNetworkName = nodedns.StaticNetwork

var _ metrics.DNS = (*nodedns.Service)(nil) // the collector reads its Stats

// newDNS builds the node's overlay DNS (node/internal/nodedns) once the
// mode and the control plane are known; nil when DNS is off. It serves
// the networks' DNS addresses through the netstack or the TUN opened
// after it.
func newDNS(n *Node) (*nodedns.Service, error) {
	if !n.cfg.DNS.Enabled() {
		return nil, nil
	}
	opts := nodedns.Options{
		DNS: n.cfg.DNS, Self: n.cfg.Name, Mode: n.mode, Log: n.log,
		Netstack: func() nodedns.Netstack {
			if n.ns == nil { // a nil *Netstack in the interface would not be nil
				return nil
			}
			return n.ns
		},
		Device: func() string { return n.dev.Name() },
	}
	if static := n.cfg.Addrs(); len(static) > 0 {
		opts.Static = static[0]
		if len(static) > 1 {
			opts.Static6 = static[1]
		}
	}
	if c := n.ctl; c != nil {
		opts.Self = c.g.Name()
		opts.Joined = func() []nodedns.Network {
			var out []nodedns.Network
			for _, j := range c.joinedList() {
				out = append(out, nodedns.Network{Name: j.Name, CIDRs: j.CIDRs, Addrs: j.Addrs})
			}
			return out
		}
	}
	return nodedns.New(opts)
}

// dnsPrefixes are the networks' DNS addresses the attachment holds besides
// the node's own; none when DNS is off.
func (n *Node) dnsPrefixes() []netip.Prefix {
	if n.dns == nil {
		return nil
	}
	return n.dns.Prefixes()
}

// DNSAddr is the host address the node's DNS listener is bound to; zero
// when DNS is off or the node has not started.
func (n *Node) DNSAddr() netip.AddrPort {
	if n.dns == nil {
		return netip.AddrPort{}
	}
	return n.dns.HostAddr()
}
