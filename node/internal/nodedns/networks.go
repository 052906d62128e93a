package nodedns

import (
	"net/netip"
	"slices"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/dns"
	"github.com/overlayd/overlayd/ipam"
)

// StaticNetwork names the static network (--addr) in the zone:
// NODE.static.overlay.
const StaticNetwork = "static"

// port is the port served on the networks' DNS addresses.
const port = 53

// joined is the gossip networks the node is on now.
func (d *Service) joined() []Network {
	if d.opts.Joined == nil {
		return nil
	}
	return d.opts.Joined()
}

// networks lists the networks the node serves DNS on: the joined ones
// (once per family: a dual-stack network has a DNS address of each) and
// the static one (named StaticNetwork, unless a joined one has its name).
// The static network (--addr, --peer) has no IPAM: any of its addresses,
// the first one too, may be another host's, so its DNS address is the
// node's own address.
func (d *Service) networks(joined []Network) []dns.Network {
	var out []dns.Network
	for _, j := range joined {
		for _, c := range j.CIDRs {
			out = append(out, dns.Network{Name: j.Name, CIDR: c.Masked(), DNSAddr: ipam.DNSAddr(c)})
		}
	}
	if !slices.ContainsFunc(out, func(nw dns.Network) bool { return nw.Name == StaticNetwork }) {
		for _, a := range []netip.Prefix{d.opts.Static, d.opts.Static6} {
			if a.IsValid() {
				out = append(out, dns.Network{Name: StaticNetwork, CIDR: a.Masked(), DNSAddr: a.Addr()})
			}
		}
	}
	return out
}

// Prefixes are the DNS addresses the attachment must hold besides the
// node's own (host-length prefixes: never a connection's source); none in
// tap mode. The node adds them to its device with its own addresses.
func (d *Service) Prefixes() []netip.Prefix {
	if d.opts.Mode == config.ModeTAP {
		return nil
	}
	var out []netip.Prefix
	for _, nw := range d.networks(d.joined()) {
		if nw.DNSAddr == d.opts.Static.Addr() || d.opts.Static6.IsValid() && nw.DNSAddr == d.opts.Static6.Addr() {
			continue // the static network's: the node's own address, there already
		}
		out = append(out, netip.PrefixFrom(nw.DNSAddr, nw.DNSAddr.BitLen()))
	}
	return out
}
