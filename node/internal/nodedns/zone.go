package nodedns

import (
	"net/netip"
	"strings"
	"time"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/dns"
)

// zoneInput is what the DNS zone is built from besides the tables: the
// networks served and this node's own names there.
type zoneInput struct {
	domain string
	ttl    time.Duration
	nets   []dns.Network
	self   string                  // this node's name
	own    map[string][]netip.Addr // network → this node's addresses there
}

// zoneInput is the zone's input on this node now: nets served, of which
// joined are the gossip ones.
func (d *Service) zoneInput(nets []dns.Network, joined []Network) zoneInput {
	in := zoneInput{domain: d.domain, ttl: d.ttl, nets: nets, self: d.opts.Self, own: map[string][]netip.Addr{}}
	for _, a := range []netip.Prefix{d.opts.Static, d.opts.Static6} {
		if a.IsValid() {
			in.own[StaticNetwork] = append(in.own[StaticNetwork], a.Addr())
		}
	}
	for _, j := range joined {
		in.own[j.Name] = j.Addrs
	}
	return in
}

// buildZone builds the zone from one snapshot of the tables, and the name
// → addresses map that resolves overlay names for Dial and the front doors
// (a name with an address of each family resolves to both, IPv4 first).
// A node is named by its route entry (the one its key names it by, in the
// network's CIDR); a service by its visible entry (its creator alive), and
// a service wins over a node of the same name. The static network holds
// this node alone.
func buildZone(in zoneInput, snap catalog.Snapshot) (dns.ZoneData, map[string][]netip.Addr) {
	zd := dns.ZoneData{Domain: in.domain, Networks: in.nets, TTL: in.ttl}
	names := map[string][]netip.Addr{}
	fqdn := func(name, network string) string {
		return strings.ToLower(name + "." + network + "." + strings.TrimSuffix(in.domain, ".") + ".")
	}
	// The networks by name: a dual-stack one is listed once per family.
	var order []string
	cidrs := map[string][]netip.Prefix{}
	for _, nw := range in.nets {
		if _, ok := cidrs[nw.Name]; !ok {
			order = append(order, nw.Name)
		}
		cidrs[nw.Name] = append(cidrs[nw.Name], nw.CIDR)
	}
	inside := func(network string, a netip.Addr) bool {
		for _, c := range cidrs[network] {
			if c.Contains(a) {
				return true
			}
		}
		return false
	}
	taken := map[string]bool{} // names given addresses
	addNode := func(name, network string, addrs []netip.Addr) {
		k := fqdn(name, network)
		if taken[k] {
			return // of two entries naming one name, the first wins
		}
		for _, a := range addrs {
			if !inside(network, a.Unmap()) {
				continue
			}
			taken[k] = true
			names[k] = append(names[k], a.Unmap())
			zd.Nodes = append(zd.Nodes, dns.NodeRecord{Name: name, Network: network, Addr: a.Unmap()})
		}
	}
	for _, network := range order {
		addNode(in.self, network, in.own[network])
		tb := snap.Networks[network]
		for _, e := range tb.Routes {
			ep, ok := catalog.RouteName(e.Owner, e.Key)
			if !ok {
				continue
			}
			rt, err := catalog.ParseRoute(e.Value)
			if err != nil {
				continue
			}
			name := e.Owner
			if ep != "" { // an endpoint: NAME.NET.overlay
				name = ep
			}
			addrs := make([]netip.Addr, len(rt.Prefixes))
			for i, p := range rt.Prefixes {
				addrs[i] = p.Addr()
			}
			addNode(name, network, addrs)
		}
		for _, e := range tb.VisibleServices {
			v, err := catalog.ServiceEntry(e, network)
			if err != nil {
				continue
			}
			vips := v.VIPs()
			if len(vips) == 0 {
				continue
			}
			for _, vip := range vips {
				sr := dns.ServiceRecord{Name: v.Name, Network: network, VIP: vip}
				for _, p := range v.Ports {
					sr.Ports = append(sr.Ports, dns.Port{Port: p.Port, Proto: p.Proto})
				}
				zd.Services = append(zd.Services, sr)
			}
			names[fqdn(v.Name, network)] = vips // a service wins over a node of the same name
		}
	}
	return zd, names
}
