package seam

import (
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/router"
)

// Parts are a node's parts as tests reach them.
type Parts struct {
	// Crash stops the node like Close but without telling the cluster.
	Crash    func() error
	Router   *router.Router
	Gossip   *gossip.Gossip // nil in static mode
	Balancer *lb.Balancer   // nil in static mode
}

// Of returns the parts of n, a *node.Node; package node sets it at init.
var Of func(n any) Parts
