package nodetest

import (
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/node"
	"github.com/overlayd/overlayd/node/internal/seam"
	"github.com/overlayd/overlayd/router"
)

// Crash stops n like Close but without telling the cluster, as a crash
// would: peers withdraw its routes when failure detection declares it
// dead. Safe twice, and after Close (then it does nothing).
func Crash(n *node.Node) error { return seam.Of(n).Crash() }

// Router is n's forwarding core.
func Router(n *node.Node) *router.Router { return seam.Of(n).Router }

// Gossip is n's gossip instance, nil in static mode.
func Gossip(n *node.Node) *gossip.Gossip { return seam.Of(n).Gossip }

// Balancer is n's service load balancer, nil in static mode.
func Balancer(n *node.Node) *lb.Balancer { return seam.Of(n).Balancer }
