package seam

import (
	"github.com/hashicorp/memberlist"

	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/router"
	"github.com/overlayd/overlayd/stack"
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

// Underlay is what a node needs of its underlay socket: the router's
// batch methods (router.Underlay, whose LocalAddr is the node's VTEP),
// the offloads its status reports, and Close, which the node calls when
// it closes (after it, ReadBatch and WriteBatch return net.ErrClosed).
// *udp.Conn and the fake *udptest.Conn implement it.
type Underlay interface {
	router.Underlay
	Offload() (gso, gro bool)
	Close() error
}

// Options are a node's unexported options. A nil field means the real
// part, built from the configuration. A part given here belongs to the
// node once New has accepted the configuration: Close closes it, and so
// does a New that fails.
type Options struct {
	// Underlay replaces the UDP socket bound to cfg.Listen.
	Underlay Underlay
	// Transport replaces gossip's sockets on cfg.Gossip.Listen, which
	// must still be set: it is what turns gossip on.
	Transport memberlist.Transport
	// Device replaces the attachment cfg.Mode names (a *stack.Netstack
	// also serves Dial and Listen).
	Device stack.Device
}

// With returns a node.Option (as any: this package cannot name the type)
// that applies edit to the node's Options; package node sets it at init.
var With func(edit func(*Options)) any
