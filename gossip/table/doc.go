// Package table implements the network-scoped replicated tables that
// package gossip carries: entries and their Lamport versions, tombstones,
// the merge rule, the checks of what peers send and the wire format it is
// sent in (deltas, bulk syncs, push/pull states), watches, and network
// participation. It knows nothing of memberlist and sends nothing itself:
// package gossip hands a Store every message a peer sends (Receive,
// MergeState) and every change of membership (SetUp), and sends what the
// Store has for its peers (the Queues, TakeDirect, Epidemic, Bulk, State,
// and the bulk syncs it asks for through Options.Sync).
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
// Queues (memberlist TransmitLimitedQueues): cluster-wide ones in
// memberlist's own broadcast queue, a network's in its own queue that
// package gossip sends every gossip interval to GossipNodes random
// participants (UDP, one packet; Epidemic); a node that learns something
// new from a delta queues it again (epidemic relay). An epidemic alone
// misses a node now and then, and a delta only goes to the participants
// its sender knows of at the time, so three more rules make every change
// reach every participant in about a gossip interval instead of at the
// next push/pull:
//
//   - a node sends its own new entries directly to every participant it
//     knows (every live node for network ""), at once (batched over a
//     twentieth of the gossip interval; TakeDirect), besides queueing them
//     for the epidemic;
//   - a node that learns of a new participant of a network it takes part
//     in sends it its own entries of the network (a bulk sync of only
//     those), so the newcomer gets every live owner's entries from their
//     writers;
//   - a bulk sync asked of a node that has not yet heard of the asker from
//     memberlist waits for it (package gossip parks it), and a bulk sync
//     of a network carries the network's participation entries, so the
//     receiver knows at once that the sender takes part.
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
// # Dead owners
//
// When membership says a node is down (SetUp), its entries are hidden —
// watchers see them deleted — but kept for DeadOwnerGrace. If it comes back
// with the same name, they are shown again. A restarted node learns its
// own entries from its peers: a version it did not write in this run is
// adopted as its own; a version that competes with one it did write in
// this run, at the same or a later Lamport time, comes from an earlier run
// (or is forged), and the node re-asserts its own version at a time above
// it. So no stale tombstone can hide a live entry (the NetworkDB bug where
// names stayed NXDOMAIN for hours).
//
// Tombstones are reaped TombstoneGrace after they were received; a node
// partitioned away for longer may bring a deleted entry back.
package table
