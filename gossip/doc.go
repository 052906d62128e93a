// Package gossip implements overlayd's control plane: memberlist (SWIM)
// membership with node metadata, and network-scoped replicated tables in the
// manner of Docker's NetworkDB, without its stale-tombstone failure.
//
// # Tables
//
// An entry is (table, network, key) → value, with an owner (a node name), a
// Lamport time and a tombstone flag; the last writer wins, and only the
// owner writes or deletes an entry (Put fails with ErrNotOwner on another
// node's live key). Entries of network "" are cluster-wide and kept by
// every node; any other network's entries are kept, and sent, only to the
// network's participants (JoinNetwork). An entry is visible (Get, List,
// Watch, Digest) when it is not a tombstone, its owner is alive or
// suspect, and (for a network entry) its owner participates in the
// network.
//
// The tables themselves — versions and their merge, tombstones, the wire
// format, watches, participation, what a delta, a bulk sync and a
// push/pull state carry and when they are sent — are package table's
// Store, which knows nothing of memberlist. This package drives it: it
// hands it every message memberlist delivers and every change of
// membership, and sends what it has for the peers, epidemically (memberlist
// TransmitLimitedQueues, the network ones sent every gossip interval to
// GossipNodes random participants), directly to every peer (own new
// entries), and point to point over memberlist's reliable (TCP) channel
// (bulk syncs, in messages of at most MaxPushPullBytes). Package table's
// documentation says how every change reaches every live participant in
// about a gossip interval.
//
// # Joining
//
// An entry is hidden while memberlist has not reported its owner alive, and
// memberlist's broadcast of a node's arrival misses a node now and then
// (push/pull repairs it, every 30 s, more above 32 nodes). So a node that
// joins exchanges state with 3 random members besides its seed, and sends
// every member it knows a hello (name and address); a node that has still
// not heard of it from memberlist three gossip rounds later exchanges
// state with it. A bulk sync asked of a node that has not yet heard of the
// asker from memberlist waits for it (it was lost), for a push/pull
// interval at most.
//
// # Dead nodes
//
// When memberlist declares a node dead (or it leaves), its entries are hidden
// on every survivor — watchers see them deleted — but kept for
// DeadOwnerGrace. If it comes back with the same name, they are shown again,
// and a restarted node re-asserts its own entries over whatever an earlier
// run left (package table). Partitions heal because lost seeds and dead
// nodes are joined again every RejoinInterval.
//
// # Security
//
// With Options.Keys, memberlist encrypts every packet and stream with
// AES-256-GCM and refuses anything else, so a node without the key cannot
// join or inject entries.
package gossip
