// Package nodedns is a node's overlay DNS wiring: it chooses the
// upstreams (the configured ones, or /etc/resolv.conf's without the node
// itself), builds the dns.Server and its Forwarder, starts the host
// listener, builds the zone from each catalog.Snapshot and swaps it in,
// serves each network's DNS address inside the overlay (the netstack's
// sockets in netstack mode, host sockets bound to the TUN in tun mode;
// tap mode serves the host listener only), and resolves overlay names for
// the node's Dial and front doors.
//
// Who may ask (the forwarder is no open resolver, and a source address
// proves nothing by itself: an underlay neighbour can send a packet from
// any address to an address of this host):
//   - the host listener (--dns): loopback sources only. Linux drops a
//     packet with a loopback source or destination that comes in on any
//     other interface (unless route_localnet is set), so these are the
//     host's own programs.
//   - a DNS address in netstack mode: sources in the networks' CIDRs; only
//     the router (the overlay) and the node's own Dial reach the netstack.
//   - a DNS address in tun mode: two socket pairs, one bound to the TUN
//     (sources in the networks' CIDRs: packets that came through the
//     overlay) and one bound to the loopback device (the host's own
//     programs, any source). A packet that came in on the underlay matches
//     neither. Where sockets cannot be bound to a device (not Linux), one
//     unbound pair allows loopback and the CIDRs, and a warning says so.
//
// The networks served are the static one (--addr, named "static"), whose
// DNS address is the node's own address (it has no IPAM: any other address
// may be another host's), and the joined ones, whose DNS address is their
// first usable one.
//
// A Service is built by New, started by Start, fed by Sync on every pass
// of the node's reconciler, and stopped by Close. Its errors read "node:
// ..." as the node's own did.
package nodedns
