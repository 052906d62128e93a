// Package ipam allocates overlay addresses without conflicts by
// construction, on gossip's replicated tables, in the manner of Weave Net's
// ring of owned ranges.
//
// # Networks and pools
//
// A network (name, CIDRs, VNI) is a cluster-wide entry (table
// "ipam.networks", network "", key the name, value "CIDR[,CIDR6]\x00" and
// the VNI as a uvarint) owned by the node that created it. It has one CIDR
// per family: IPv4, IPv6, or one of each (dual-stack), IPv4 first. Each
// family is laid out alone, with its own pools, ranges and leases, by the
// same construction; a caller that wants an address of each family
// allocates once per family (Allocate's Family).
//
// Offsets below are from a CIDR's first address: offset 0 is the network
// address, offset 1 the network's DNS address of that family (never
// allocated), the top 1/16 of the offset space (at least 16 addresses, the
// broadcast address of an IPv4 CIDR excluded) is the VIP pool for services
// (AllocateVIP), and the rest is the node pool (Allocate). The offset
// space is the CIDR's host part, bounded to its low 32 bits: an IPv4 CIDR
// has 6 to 32 host bits; an IPv6 CIDR is a /48 to a /122, and of a /64's 64
// host bits only the low 32 are handed out (fd00:10::2 to
// fd00:10::efff:ffff to nodes and endpoints, fd00:10::f000:0 and up to
// services), so offsets stay uint64 arithmetic and a range split is as
// cheap as for IPv4. Addresses of the CIDR beyond the offset space are
// never leased (Lookup knows none of them).
//
// # Ranges
//
// Each pool (a node and a VIP pool per family: 'n', 'v' for IPv4, 'N',
// 'V' for IPv6) is split into ranges [start, end) of offsets, each owned
// by exactly one node. A node allocates only from ranges it owns, so two nodes
// can never hand out the same address. Ranges are entries of the network's
// table "ipam.ranges", key pool/start/writer, value (start, end, owner,
// version), written by the node that last changed the range. For one pool
// and start the version with the highest (version, writer) wins, so every
// node derives the same ring. Only a range's current owner changes it:
//
//   - the creator of a network owns both pools whole (version 1, written
//     by CreateNetwork before the network entry, so no other node can
//     have seen the network without its ring);
//   - an owner gives part of a range to another node by splitting it: it
//     first shrinks its range to [start, mid) at version+1, then writes
//     [mid, end) owned by the other node. mid is above every lease the owner
//     holds in the range, so no lease ever lands in someone else's range.
//     A range of one free address is handed over whole (version+1);
//   - a node that is granted a range writes its own copy of the grant, so
//     the range outlives the granting node's entries.
//
// A node that needs addresses and owns none free writes a request (table
// "ipam.requests", key pool/node). The node that owns the most free
// addresses in the pool (ties: smallest name), as each node sees it,
// answers by splitting; if a request stays unanswered for RequestTimeout,
// any owner with free space answers. A node may so receive two grants;
// that wastes nothing, as both are its to use. Allocate gives up with a
// clear error when the pool, as the node sees it, has no free address.
//
// Leases are entries of "ipam.leases" (key the address, value the caller's
// owner string), written by the node that owns the range.
//
// # Dead nodes and restarts
//
// Ranges and leases of a dead node stay owned and reserved (ipam reads them
// with gossip.ListAll, which includes hidden entries) until the node comes
// back, or until gossip reaps them after DeadOwnerGrace; space reaped that
// way is lost to the pool, never given twice. A node persists Export(network)
// (its ranges and leases, checksummed) under its state directory after every
// change (Options.OnChange says when) and calls Import on restart before
// allocating. Gossip also gives a restarted node back its own entries from
// its peers, but only a node that imported its state is sure to know all of
// its ranges before its first Allocate.
//
// The one case that is not conflict-free by construction is two nodes
// creating the same network name within the gossip delay: the creation
// entry with the higher (Lamport time, node) wins, and ranges derived from
// the losing creation are ignored everywhere (every range carries its
// creator), so the loser's leases stop being valid (Lookup no longer
// returns them) instead of silently duplicating addresses.
package ipam
