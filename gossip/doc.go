// Package gossip implements overlayd's control plane: memberlist (SWIM)
// membership with node metadata, and network-scoped replicated tables in the
// manner of Docker's NetworkDB, without its stale-tombstone failure.
//
// # Tables
//
// An entry is (table, network, key) → value, with an owner (a node name), a
// Lamport time and a tombstone flag. Versions of a key are ordered by
// (time, owner) — last writer wins — with ties (never produced by a correct
// owner) broken by the tombstone flag and then the value bytes, so the order
// is total and every node keeps the same winner whatever the order of
// arrival. Every node has one Lamport clock, advanced past the time of every
// entry it receives; a local write takes the next tick. Only the owner writes
// or deletes an entry through the API (Put fails with ErrNotOwner on another
// node's live key); remote versions are merged by the order above.
//
// # Networks
//
// Entries of network "" are cluster-wide and kept by every node. Any other
// network's entries are kept, and sent, only to the network's participants.
// Participation is itself a cluster-wide entry (table "gossip.net", key
// network+"\x00"+node, owned by node), so every node knows the participants of
// every network without storing the network's entries. Deltas are queued in
// memberlist TransmitLimitedQueues: cluster-wide ones in memberlist's own
// broadcast queue, a network's in its own queue that this package sends
// every gossip interval to GossipNodes random participants (UDP, one packet);
// a node that learns something new from a delta queues it again (epidemic
// relay). An epidemic alone misses a node now and then, and a delta only
// goes to the participants its sender knows of at the time, so three more
// rules make every change reach every participant in about a gossip
// interval instead of at the next push/pull:
//
//   - a node sends its own new entries directly to every participant it
//     knows (every live node for network ""), at once (batched over a
//     twentieth of the gossip interval), besides queueing them for the
//     epidemic;
//   - a node that learns of a new participant of a network it takes part
//     in sends it its own entries of the network (a bulk sync of only
//     those), so the newcomer gets every live owner's entries from their
//     writers;
//   - a bulk sync asked of a node that has not yet heard of the asker from
//     memberlist waits for it (it was lost), and a bulk sync of a network
//     carries the network's participation entries, so the receiver knows
//     at once that the sender takes part.
//
// An entry is hidden while memberlist has not reported its owner alive, and
// memberlist's broadcast of a node's arrival also misses a node now and
// then (push/pull repairs it, every 30 s, more above 32 nodes). So a node
// that joins exchanges state with 3 random members besides its seed, and
// sends every member it knows a hello (name and address); a node that has
// still not heard of it from memberlist three gossip rounds later
// exchanges state with it.
//
// An entry is visible (Get, List, Watch, Digest) when it is not a
// tombstone, its owner is alive or suspect, and (for a network entry) its
// owner participates in the network.
//
// # Anti-entropy
//
// memberlist's periodic push/pull carries this node's cluster-wide entries
// and one 64-bit digest per network it participates in (the XOR of a hash
// of every live version stored, hidden ones included). When the cluster-wide
// entries would make the state larger than MaxPushPullBytes they are left
// out (Stats.StateOverCap counts it) and only the digests travel. For every
// shared network whose digest differs (and for "" when its entries were left
// out), the node with the smaller name sends the peer all its versions of the
// network — tombstones included — in bulk messages of at most
// MaxPushPullBytes over memberlist's reliable (TCP) channel, asking for the
// peer's in reply. Bulk syncs also run when a node joins a network.
//
// # Dead nodes
//
// When memberlist declares a node dead (or it leaves), its entries are hidden
// on every survivor — watchers see them deleted — but kept for
// DeadOwnerGrace. If it comes back with the same name, they are shown again.
// A restarted node learns its own entries from its peers: a version it did
// not write in this run is adopted as its own; a version that competes with
// one it did write in this run, at the same or a later Lamport time, comes
// from an earlier run (or is forged), and the node re-asserts its own
// version at a time above it. So no stale tombstone can hide a live entry
// (the NetworkDB bug where names stayed NXDOMAIN for hours). Partitions heal
// because lost seeds and dead nodes are joined again every RejoinInterval.
//
// Tombstones are reaped TombstoneGrace after they were received; a node
// partitioned away for longer may bring a deleted entry back.
//
// # Security
//
// With Options.Keys, memberlist encrypts every packet and stream with
// AES-256-GCM and refuses anything else, so a node without the key cannot
// join or inject entries.
package gossip
