package node

import (
	"context"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/gossip"
)

// Status reports the node's state; it implements api.Backend.
func (n *Node) Status(context.Context) (api.Status, error) {
	n.mu.Lock()
	started := n.started
	n.mu.Unlock()
	gso, gro := n.ul.Offload()
	st := api.Status{
		Name:     n.cfg.Name,
		Version:  Version,
		Mode:     n.mode,
		Device:   n.dev.Name(),
		Started:  started,
		VTEP:     n.ul.LocalAddr().String(),
		MAC:      n.rt.MAC().String(),
		MTU:      n.dev.MTU(),
		PathMTU:  n.pathMTU,
		Networks: n.networks(),
		Underlay: api.Underlay{GSO: gso, GRO: gro, SourcePorts: max(n.cfg.Underlay.SourcePorts, 1)},
	}
	st.Routes = n.routes()
	st.Gossip = n.gossipStatus()
	if n.ctl != nil {
		st.RoutesRefused = n.ctl.refusedRoutes()
		st.VTEPAdvertised = n.ctl.vtep.String()
	}
	st.Services = n.servicesSummary()
	st.Endpoints = n.endpointInfos()
	if n.dns != nil {
		st.DNS = n.dns.Status()
	}
	st.Doors, st.Metrics = n.doorStatus()
	rs := n.rt.Stats()
	st.Traffic = api.Traffic{
		Outbound:   api.Counters(rs.Outbound),
		Inbound:    api.Counters(rs.Inbound),
		Local:      api.Counters(rs.Local),
		Drops:      rs.Drops,
		ARPAsked:   rs.ARPAsked,
		ARPAnswers: rs.ARPAnswers,
		ICMPSent:   rs.ICMPSent,
		Neighbors:  rs.Neighbors,
	}
	return st, nil
}

// gossipStatus counts the members by state; nil without gossip.
func (n *Node) gossipStatus() *api.GossipStatus {
	if n.ctl == nil {
		return nil
	}
	gs := &api.GossipStatus{}
	for _, m := range n.ctl.g.Members() {
		switch m.State {
		case gossip.StateAlive:
			gs.Alive++
		case gossip.StateSuspect:
			gs.Suspect++
		case gossip.StateDead:
			gs.Dead++
		case gossip.StateLeft:
			gs.Left++
		}
	}
	st := n.ctl.g.Stats()
	gs.JoinError = st.JoinError
	for _, r := range []string{"member_name", "member_addr", "member_meta", "member_version", "merge"} {
		if v := st.Drops[r]; v > 0 {
			if gs.Refused == nil {
				gs.Refused = map[string]uint64{}
			}
			gs.Refused[r] = v
		}
	}
	return gs
}

// networks lists the networks the node is on, the static one first.
func (n *Node) networks() []api.Network {
	out := []api.Network{}
	if static := n.cfg.Addrs(); len(static) > 0 {
		out = append(out, api.Network{VNI: n.cfg.VNI, Addr: static[0].String(), Addrs: strs(static)})
	}
	if n.ctl != nil {
		for _, j := range n.ctl.joinedList() {
			nw := api.Network{Name: j.Name, VNI: j.VNI, Addrs: strs(j.Prefixes())}
			nw.Addr = nw.Addrs[0]
			out = append(out, nw)
		}
	}
	return out
}

func (n *Node) routes() []api.Route {
	out := []api.Route{}
	for _, r := range n.rt.Routes() {
		out = append(out, api.Route{Prefix: r.Prefix.String(), VTEP: r.VTEP.String(), VNI: r.VNI, Owner: r.Owner})
	}
	return out
}

var _ api.ControlBackend = (*Node)(nil)

// Networks lists the cluster's networks; it implements api.ControlBackend.
func (n *Node) Networks(context.Context) ([]api.NetworkInfo, error) {
	if n.ctl == nil {
		return nil, errNoGossip
	}
	return n.ctl.networks(), nil
}

// CreateNetwork defines a network cluster-wide; it implements
// api.ControlBackend.
func (n *Node) CreateNetwork(ctx context.Context, req api.CreateNetwork) (api.NetworkInfo, error) {
	if n.ctl == nil {
		return api.NetworkInfo{}, errNoGossip
	}
	return n.ctl.createNetwork(ctx, req)
}

// JoinNetwork attaches the node to a network; it implements
// api.ControlBackend.
func (n *Node) JoinNetwork(ctx context.Context, name string) (api.NetworkInfo, error) {
	if n.ctl == nil {
		return api.NetworkInfo{}, errNoGossip
	}
	return n.ctl.joinNetwork(ctx, name)
}

// LeaveNetwork detaches the node from a network; it implements
// api.ControlBackend.
func (n *Node) LeaveNetwork(_ context.Context, name string) error {
	if n.ctl == nil {
		return errNoGossip
	}
	if err := n.refuseLeaveWithEndpoints(name); err != nil {
		return err
	}
	return n.ctl.leaveNetwork(name)
}

// Peers lists the cluster's members; it implements api.ControlBackend.
func (n *Node) Peers(context.Context) ([]api.Peer, error) {
	if n.ctl == nil {
		return nil, errNoGossip
	}
	return n.ctl.peerList(), nil
}

// Routes returns the routes in force, the node's own addresses and, with
// gossip, the digest of each joined network's state; it implements
// api.ControlBackend.
func (n *Node) Routes(context.Context) (api.Routes, error) {
	rs := api.Routes{Routes: n.routes(), Local: n.networks()}
	if n.ctl != nil {
		rs.Digests = map[string]string{}
		for _, j := range n.ctl.joinedList() {
			rs.Digests[j.Name] = n.ctl.g.Digest(j.Name)
		}
	}
	return rs, nil
}

// Digest is the digest of a network's replicated state ("" for the
// cluster-wide one); nodes that have converged return the same. Empty in
// static mode.
func (n *Node) Digest(network string) string {
	if n.ctl == nil {
		return ""
	}
	return n.ctl.g.Digest(network)
}

// gossip is the node's gossip instance, nil in static mode.
func (n *Node) gossip() *gossip.Gossip {
	if n.ctl == nil {
		return nil
	}
	return n.ctl.g
}
