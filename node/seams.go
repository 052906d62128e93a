package node

import (
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/node/internal/seam"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/udp"
)

// The parts tests reach through node/nodetest (Crash, Router, Gossip,
// Balancer) and the unexported options they give (WithUnderlay,
// WithTransport, WithDevice), not through the public API.
func init() {
	seam.Of = func(x any) seam.Parts {
		n := x.(*Node)
		return seam.Parts{Crash: n.crash, Router: n.rt, Gossip: n.gossip(), Balancer: n.lb}
	}
	seam.With = func(edit func(*seam.Options)) any {
		return Option(func(n *Node) { edit(&n.seams) })
	}
}

var _ seam.Underlay = (*udp.Conn)(nil)

// listenUnderlay is the node's underlay socket: the one a test gave, or
// a UDP socket bound to cfg.Listen. It sets n.ul only on success (a nil
// *udp.Conn in the interface is not a nil interface).
func (n *Node) listenUnderlay(cfg config.Config) error {
	if u := n.seams.Underlay; u != nil {
		n.ul = u
		return nil
	}
	c, err := udp.Listen(cfg.Listen, udp.Options{
		DisableOffload: cfg.Underlay.DisableOffload,
		SourcePorts:    cfg.Underlay.SourcePorts,
	})
	if err != nil {
		return err
	}
	n.ul = c
	return nil
}

// adoptDevice takes the device a test gave, if any, and reports whether
// it did: then New opens no attachment.
func (n *Node) adoptDevice() bool {
	d := n.seams.Device
	if d == nil {
		return false
	}
	n.dev = d
	n.ns, _ = d.(*stack.Netstack)
	return true
}
