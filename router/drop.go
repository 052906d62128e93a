package router

import (
	"errors"
	"strconv"
	"sync/atomic"

	"github.com/overlayd/overlayd/vxlan"
)

// DropReason says why the router dropped a packet. It is the one
// vocabulary of drops for the whole data path, inbound (underlay →
// attachment) and outbound (attachment → underlay), owned here because
// the router decides them all: what vxlan.Decap refuses (ErrShort,
// ErrFlags) it maps to DropShort and DropFlags, what the load balancer
// refuses to DropLBReset and DropLBRefused. Each reason's String is its
// name in metrics, in the API and in overlayd status ("unknown_vni").
type DropReason uint8

const (
	// DropNone means the packet was not dropped.
	DropNone DropReason = iota
	// DropShort: inbound, the datagram is shorter than the VXLAN and
	// Ethernet headers (vxlan.ErrShort).
	DropShort
	// DropFlags: inbound, the VXLAN I flag is clear (vxlan.ErrFlags).
	DropFlags
	// DropUnknownVNI: inbound, the VNI is not one of a network this node
	// has joined.
	DropUnknownVNI
	// DropNotPeer: inbound, the datagram's source is not a member VTEP of
	// the network.
	DropNotPeer
	// DropNotForUs: inbound, the inner destination (IP or MAC, or the ARP
	// target or sender, or the address an NDP message speaks for) is not
	// an address this node hosts or may accept.
	DropNotForUs
	// DropMalformed: a packet fails parsing: an inner frame or IP packet
	// inbound, an IP packet or frame from the attachment outbound, an ARP
	// packet that is not Ethernet/IPv4, an NDP message that fails RFC
	// 4861's checks (vxlan.NDP.IsValid).
	DropMalformed
	// DropUnsupported: a well-formed packet of a kind the router does not
	// forward (an EtherType or IP version it does not handle in this mode).
	DropUnsupported
	// DropNoRoute: outbound, no route (or no VTEP) for the destination;
	// also inbound when a reply has nowhere to go.
	DropNoRoute
	// DropTooBig: the packet exceeds the path MTU (outbound, answered
	// with ICMP "fragmentation needed" when DF is set) or the attachment MTU.
	DropTooBig
	// DropARPUnresolved: outbound, the packet waited for an ARP answer
	// (or, for IPv6, a neighbour advertisement) that did not come in time.
	DropARPUnresolved
	// DropQueueFull: a bounded queue (ARP wait queue, a batch, a reply
	// buffer) had no room.
	DropQueueFull
	// DropWriteError: the underlay or the attachment refused the write.
	DropWriteError
	// DropLBReset: outbound, a packet to a service VIP whose backend is
	// gone (or that has none): not forwarded, the client is answered with
	// a TCP RST or ICMP port unreachable.
	DropLBReset
	// DropLBRefused: the load balancer refused the packet (a fragment to
	// a VIP, a connection table full of established flows, a stray
	// packet for a flow it does not know).
	DropLBRefused
	// DropNotOwner: inbound, the inner source (IP, or ARP sender) is an
	// address of the network whose route names another VTEP than the
	// one the datagram came from, or none: a stray or forged frame,
	// which must not re-point the address's MAC.
	DropNotOwner
	// DropKernelRcvbuf: inbound, datagrams the kernel dropped at the
	// underlay socket before the router could read them, nearly always
	// because its receive buffer was full (a flood, or a router that fell
	// behind). Never counted by the router: it is the socket's own count,
	// reported beside the router's (a coalesced GRO batch dropped whole
	// counts once).
	DropKernelRcvbuf
	// DropSpoofedSource: outbound, a packet from an endpoint's device
	// whose source is not the endpoint's own address.
	DropSpoofedSource
	// DropOtherNetwork: outbound, a packet from an endpoint to an address
	// on another network than the endpoint's (another VNI's endpoint,
	// node address or route): networks are isolated per endpoint.
	DropOtherNetwork
	// DropExtHeaders: an IPv6 packet whose extension header chain the
	// packet view refuses: more than packet.MaxExtHeaders headers, a
	// hop-by-hop header that is not first, or a header cut short.
	DropExtHeaders

	// NumDropReasons is the number of reasons, for arrays indexed by
	// DropReason.
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	DropNone:          "none",
	DropShort:         "short",
	DropFlags:         "flags",
	DropUnknownVNI:    "unknown_vni",
	DropNotPeer:       "not_peer",
	DropNotForUs:      "not_for_us",
	DropMalformed:     "malformed",
	DropUnsupported:   "unsupported",
	DropNoRoute:       "no_route",
	DropTooBig:        "too_big",
	DropARPUnresolved: "arp_unresolved",
	DropQueueFull:     "queue_full",
	DropWriteError:    "write_error",
	DropLBReset:       "lb_reset",
	DropLBRefused:     "lb_refused",
	DropNotOwner:      "not_owner",
	DropKernelRcvbuf:  "kernel_rcvbuf",
	DropSpoofedSource: "spoofed_source",
	DropOtherNetwork:  "other_network",
	DropExtHeaders:    "ext_headers",
}

// String returns the reason's snake_case name, or "drop_reason_N" for a
// value out of range.
func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "drop_reason_" + strconv.Itoa(int(r))
}

// DropCounters counts drops per reason. The zero value is ready; it is safe
// for concurrent use and must not be copied after first use.
type DropCounters struct {
	c [NumDropReasons]atomic.Uint64
}

// Add counts one drop for reason. A reason out of range is a programmer
// error and panics.
func (d *DropCounters) Add(reason DropReason) { d.c[reason].Add(1) }

// AddN counts n drops for reason (a batch that failed as a whole).
func (d *DropCounters) AddN(reason DropReason, n uint64) { d.c[reason].Add(n) }

// Load returns the count for reason.
func (d *DropCounters) Load(reason DropReason) uint64 { return d.c[reason].Load() }

// Snapshot returns the non-zero counts by reason name (it allocates; it is
// for metrics and the API, not the data path).
func (d *DropCounters) Snapshot() map[string]uint64 {
	m := make(map[string]uint64)
	for r := range NumDropReasons {
		if n := d.c[r].Load(); n != 0 {
			m[r.String()] = n
		}
	}
	return m
}

// decapDrop is the drop reason for a datagram vxlan.Decap refused.
func decapDrop(err error) DropReason {
	switch {
	case errors.Is(err, vxlan.ErrShort):
		return DropShort
	case errors.Is(err, vxlan.ErrFlags):
		return DropFlags
	}
	return DropMalformed
}
