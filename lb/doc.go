// Package lb balances connections to service VIPs over their backends, in
// the packet path of the node the client runs on: Maglev backend selection,
// connection tracking and NAT with incremental checksum updates.
//
// A [Balancer] holds an immutable snapshot of the services (replaced whole
// by [Balancer.Set], which leaves out a bad or conflicting service alone
// and publishes the rest) and a sharded connection-tracking table. The router
// parses each packet once into a [packet.IP] view and calls
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
// [Reset] so that the router can send the client a TCP RST or an ICMP
// (ICMPv6) port unreachable ([packet.BuildAnswer] with
// [packet.AnswerReset]) instead of blackholing it.
//
// The backend sees the client's real overlay address (destination NAT
// only); replies are reverse-NATed from backend to VIP at the client's node.
// IPv4 and IPv6 alike (NAT66: IPv6 has no header checksum, the transport
// and ICMPv6 checksums cover the addresses in their pseudo-header), never
// between them: a service's VIP and its backends are of one family, and
// a dual-stack service is two services. Fragments to a VIP are dropped and
// counted, never half-NATed; so are IPv6 packets to a VIP whose routing
// header has segments left (their checksums cover another destination).
// ICMP and ICMPv6 echo to a VIP is not balanced (Pass).
package lb
