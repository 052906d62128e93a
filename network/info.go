package network

import (
	"net/netip"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/ipam"
)

// Info describes a network as this node sees it.
type Info struct {
	Name    string
	CIDRs   []netip.Prefix // one per family, IPv4 first
	VNI     uint32
	Creator string         // the node that created it
	DNS     []netip.Addr   // the network's DNS address per CIDR (never handed out)
	Joined  bool           // this node is attached to it
	Addrs   []netip.Prefix // this node's address per CIDR, with prefix, when joined
	Members int            // nodes attached to it (live ones announcing a route); 0 unless joined
}

// info describes a network.
func (m *Manager) info(nw ipam.Network) Info {
	ni := Info{Name: nw.Name, CIDRs: nw.CIDRs, VNI: nw.VNI, Creator: nw.Creator, DNS: nw.DNS}
	m.mu.Lock()
	j, ok := m.joined[nw.Name]
	m.mu.Unlock()
	if ok {
		ni.Joined, ni.Addrs = true, j.Prefixes()
		// The lists of a network this node does not take part in are empty.
		for _, e := range m.g.List(catalog.TableRoutes, nw.Name) {
			if e.Key == e.Owner { // a node's own entry, not one of its endpoints'
				ni.Members++
			}
		}
	}
	return ni
}

// List lists the networks the cluster defines and, beside them, the
// joined networks whose definitions have not arrived yet (right after a
// restart, before gossip brought them): a joined network is never missing
// from the list.
func (m *Manager) List() []Info {
	out := []Info{}
	known := map[string]bool{}
	for _, nw := range m.ipam.Networks() {
		known[nw.Name] = true
		out = append(out, m.info(nw))
	}
	for _, j := range m.Joined() {
		if known[j.Name] {
			continue
		}
		if nw, err := ipam.Describe(j.Name, j.CIDRs, j.VNI); err == nil {
			out = append(out, m.info(nw))
		}
	}
	return out
}
