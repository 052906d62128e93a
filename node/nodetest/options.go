package nodetest

import (
	"github.com/hashicorp/memberlist"

	"github.com/overlayd/overlayd/node"
	"github.com/overlayd/overlayd/node/internal/seam"
	"github.com/overlayd/overlayd/stack"
)

// Underlay is what a node needs of its underlay socket: router.Underlay
// (its LocalAddr is the node's VTEP), Offload and Close. *udp.Conn and
// *udptest.Conn implement it.
type Underlay = seam.Underlay

// A part given by the options below belongs to the node once New has
// accepted its configuration: Close closes it, and so does a New that
// fails.

// WithUnderlay makes the node send and receive VXLAN on u instead of a
// UDP socket bound to cfg.Listen.
func WithUnderlay(u Underlay) node.Option {
	return with(func(o *seam.Options) { o.Underlay = u })
}

// WithTransport makes the node's gossip talk over t instead of sockets
// on cfg.Gossip.Listen, which must still be set: it turns gossip on.
func WithTransport(t memberlist.Transport) node.Option {
	return with(func(o *seam.Options) { o.Transport = t })
}

// WithDevice makes d the node's attachment instead of the one cfg.Mode
// names; a *stack.Netstack also serves the node's Dial and Listen.
func WithDevice(d stack.Device) node.Option {
	return with(func(o *seam.Options) { o.Device = d })
}

func with(edit func(*seam.Options)) node.Option { return seam.With(edit).(node.Option) }
