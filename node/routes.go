package node

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/router"
)

// SetStaticRoutes replaces the node's static routes (config peers), which
// live on the static network (--addr, --vni) beside the learned ones.
func (n *Node) SetStaticRoutes(peers []config.Peer) error {
	if len(peers) > 0 && !n.cfg.Addr.IsValid() {
		return errors.New("node: static routes (--peer) need the static network: give --addr too")
	}
	for _, p := range peers {
		for _, a := range n.cfg.Addrs() {
			if p.Prefix.Contains(a.Addr()) {
				return fmt.Errorf("node: peer %v covers this node's own address", p)
			}
		}
	}
	n.staticMu.Lock()
	old := n.static
	n.static = append([]config.Peer(nil), peers...)
	n.staticMu.Unlock()
	if err := n.setRoutes(n.snapshot()); err != nil {
		n.staticMu.Lock()
		n.static = old
		n.staticMu.Unlock()
		return err
	}
	n.rec.poke() // the balancer follows the routes
	return nil
}

// snapshot reads the schema's tables of the joined networks (empty
// without gossip).
func (n *Node) snapshot() catalog.Snapshot {
	if n.ctl == nil {
		return catalog.Snapshot{}
	}
	return catalog.Read(n.ctl.g, joinedNames(n.ctl.joinedList()))
}

// setRoutes swaps the router's table for the static routes plus, with
// gossip, the ones learned from snap and the live members' VTEPs as
// peers. Static routes win over learned ones for the same prefix.
func (n *Node) setRoutes(snap catalog.Snapshot) error {
	n.syncMu.Lock()
	defer n.syncMu.Unlock()
	n.staticMu.Lock()
	static := n.static
	n.staticMu.Unlock()
	routes := make([]router.Route, 0, len(static))
	taken := make(map[netip.Prefix]bool)
	for _, p := range static {
		routes = append(routes, router.Route{Prefix: p.Prefix, VTEP: p.VTEP, VNI: n.cfg.VNI, Owner: "static"})
		taken[p.Prefix.Masked()] = true
	}
	var peers []netip.AddrPort
	if n.ctl != nil {
		// Only networks the router has: a join or leave in progress
		// changes both under syncMu, so this sees either side of it.
		on := make(map[uint32]bool)
		for _, nw := range n.rt.Networks() {
			on[nw.VNI] = true
		}
		for _, r := range n.ctl.learned(snap, taken) {
			if on[r.VNI] {
				routes = append(routes, r)
			}
		}
		peers = n.ctl.peers()
	}
	return n.rt.SetRoutes(routes, peers)
}
