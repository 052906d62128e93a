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
	self   string                // this node's name
	own    map[string]netip.Addr // network → this node's address there
}

// zoneInput is the zone's input on this node now: nets served, of which
// joined are the gossip ones.
func (d *Service) zoneInput(nets []dns.Network, joined []Network) zoneInput {
	in := zoneInput{domain: d.domain, ttl: d.ttl, nets: nets, self: d.opts.Self, own: map[string]netip.Addr{}}
	if a := d.opts.Static; a.IsValid() {
		in.own[StaticNetwork] = a.Addr()
	}
	for _, j := range joined {
		in.own[j.Name] = j.Addr
	}
	return in
}

// buildZone builds the zone from one snapshot of the tables, and the name
// → address map that resolves overlay names for Dial and the front doors.
// A node is named by its route entry (the one its key names it by, in the
// network's CIDR); a service by its visible entry (its creator alive), and
// a service wins over a node of the same name. The static network holds
// this node alone.
func buildZone(in zoneInput, snap catalog.Snapshot) (dns.ZoneData, map[string]netip.Addr) {
	zd := dns.ZoneData{Domain: in.domain, Networks: in.nets, TTL: in.ttl}
	names := map[string]netip.Addr{}
	fqdn := func(name, network string) string {
		return strings.ToLower(name + "." + network + "." + strings.TrimSuffix(in.domain, ".") + ".")
	}
	addNode := func(name, network string, a netip.Addr) {
		k := fqdn(name, network)
		if _, dup := names[k]; dup {
			return
		}
		names[k] = a
		zd.Nodes = append(zd.Nodes, dns.NodeRecord{Name: name, Network: network, Addr: a})
	}
	for _, nw := range in.nets {
		if a, ok := in.own[nw.Name]; ok && nw.CIDR.Contains(a) {
			addNode(in.self, nw.Name, a)
		}
		tb := snap.Networks[nw.Name]
		for _, e := range tb.Routes {
			ep, ok := catalog.RouteName(e.Owner, e.Key)
			if !ok {
				continue
			}
			rt, err := catalog.ParseRoute(e.Value)
			if err != nil || !nw.CIDR.Contains(rt.Prefix.Addr()) {
				continue
			}
			name := e.Owner
			if ep != "" { // an endpoint: NAME.NET.overlay (of two entries naming one name, the first wins)
				name = ep
			}
			addNode(name, nw.Name, rt.Prefix.Addr())
		}
		for _, e := range tb.VisibleServices {
			v, err := catalog.ServiceEntry(e, nw.Name)
			if err != nil {
				continue
			}
			vip, err := netip.ParseAddr(v.VIP)
			if err != nil {
				continue
			}
			sr := dns.ServiceRecord{Name: v.Name, Network: nw.Name, VIP: vip.Unmap()}
			for _, p := range v.Ports {
				sr.Ports = append(sr.Ports, dns.Port{Port: p.Port, Proto: p.Proto})
			}
			zd.Services = append(zd.Services, sr)
			names[fqdn(v.Name, nw.Name)] = sr.VIP // a service wins over a node of the same name
		}
	}
	return zd, names
}
