// Package packet is the one vocabulary of the packet path: a view of an
// IPv4 or IPv6 packet and its 5-tuple, parsed once per packet (IP.Parse,
// IPv6 extension headers walked with a bound) and handed to the balancer,
// the flow hash and the ICMP decisions; the builders of the errors and
// resets we answer with (ICMP, ICMPv6, TCP RST over either family,
// BuildAnswer for the router that names the answer and not the family),
// and the one rule for when to answer (MayAnswer). It is written over
// gVisor's header package and the standard library alone, and allocates
// nothing per packet.
package packet
