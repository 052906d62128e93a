// Package network keeps the networks a node is attached to: it creates
// networks cluster-wide (resolving two creations of one name made at the
// same moment), joins and leaves them (the node's address from ipam, its
// route entry announced), keeps the joined networks and the node's
// address leases in the state directory across restarts, recovering what
// a lost file held from the peers, and decides which route entries of the
// joined networks to accept (Learned: only the lease holder's, for its one
// address, at the VTEP it advertises; the others are refused and counted).
//
// A network has one CIDR per family (IPv4, IPv6, or both: ParseCIDRs);
// on a dual-stack network the node has an address of each family
// (Joined.Addrs, IPv4 first), leased separately from each family's pools
// and announced in one route entry that carries both host prefixes; an
// entry is accepted only when every one of its addresses is its writer's.
//
// A Manager is built by New and driven by its owner: Create, Join, Leave
// on request, Learned on every rebuild of the route table, and Maintain
// once in a while (a tick). It returns its own plain types and typed
// errors (internal/fault); it knows nothing of the router, the balancer,
// DNS or the API.
package network
