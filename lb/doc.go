// Package lb balances connections to service VIPs over their backends, in
// the packet path of the node the client runs on: Maglev backend selection,
// connection tracking and NAT with incremental checksum updates.
//
// A [Balancer] holds an immutable snapshot of the services (replaced whole
// by [Balancer.Set], which leaves out a bad or conflicting service alone
// and publishes the rest) and a sharded connection-tracking table. The router
// parses each IPv4 packet once into a [packet.IPv4] view and calls
// [Balancer.OutboundIP] for every packet a local client sends, before
// the route lookup, and [Balancer.InboundIP] for every packet it is about
// to deliver to a local client ([Balancer.Outbound] and [Balancer.Inbound]
// parse raw bytes first, for callers that hold no view); conntrack is keyed
// by [packet.Tuple]. Both rewrite the packet in place
// and return a [Verdict]; for established flows they allocate nothing.
//
// New flows pick a backend from the Maglev table ([maglev.Table]) of their
// VIP port, which holds only the backends that serve that port
// ([Backend.Ports]), keyed by a per-process keyed hash of the 5-tuple; the choice is then
// pinned in the connection-tracking table, so flows never move when the
// backend set changes. A flow whose backend is removed is answered with
// [Reset] so that the router can send the client a TCP RST
// ([packet.BuildTCPReset]) or an ICMP port unreachable
// ([packet.BuildICMPPortUnreachable]) instead of blackholing it.
//
// The backend sees the client's real overlay address (destination NAT
// only); replies are reverse-NATed from backend to VIP at the client's node.
// IPv4 only; fragments to a VIP are dropped and counted.
package lb
