package gossip

// This file holds bulk syncs: a network's whole state (or a node's own
// entries) sent to one node over TCP, queued, parked until the node is
// known, and sent by syncLoop.

import (
	"strings"
	"time"
)

type syncTask struct {
	node    string
	network string
	reply   bool // the receiver answers with its own versions of the network
	own     bool // only this node's own entries: a new participant catching up
}

// maxParked bounds the bulk syncs waiting for their node to be known.
const maxParked = 1024

// queueSyncLocked asks syncLoop to send a network's state to a node.
func (g *Gossip) queueSyncLocked(t syncTask) {
	if g.pending[t] {
		return
	}
	if t.own {
		full := syncTask{node: t.node, network: t.network}
		if g.pending[full] {
			return // a full sync carries our own entries too
		}
		if full.reply = true; g.pending[full] {
			return
		}
	}
	select {
	case g.syncCh <- t:
		g.pending[t] = true
	default:
		g.stats.drop("sync_queue_full")
	}
}

// syncLoop sends bulk syncs: all stored versions of a network (tombstones
// and hidden entries included), or only this node's own ones, in messages
// of at most MaxPushPullBytes. The first message carries the network's
// participation entries (cluster-wide), so the receiver knows at once whom
// the entries belong to and that the sender takes part. A sync to a node
// not yet known alive here waits for it (parkLocked).
func (g *Gossip) syncLoop() {
	defer g.wg.Done()
	for {
		var t syncTask
		select {
		case <-g.stop:
			return
		case t = <-g.syncCh:
		}
		g.mu.Lock()
		delete(g.pending, t)
		mn, known := g.mlNodes[t.node]
		if !known {
			g.parkLocked(t, time.Now())
			g.mu.Unlock()
			continue
		}
		es := g.syncEntriesLocked(t)
		g.mu.Unlock()
		n := &mn
		var flags byte
		if t.reply {
			flags = bulkReply
		}
		maxBytes := max(g.cfg.MaxPushPullBytes, 4096) - 64 - 2*MaxNameLen
		for first := true; first || len(es) > 0; first = false {
			size, i := 0, 0
			for ; i < len(es); i++ {
				l := entryLen(&es[i])
				if size+l > maxBytes && i > 0 {
					break
				}
				size += l
			}
			b := encodeBulk(g.name, t.network, flags, es[:i])
			es = es[i:]
			flags = 0
			if err := g.ml.SendReliable(n, b); err != nil {
				g.stats.drop("send_failed")
				break
			}
			g.stats.msgsOut.Add(1)
			g.stats.bytesOut.Add(uint64(len(b)))
		}
		g.stats.bulkSyncs.Add(1)
	}
}

// syncEntriesLocked returns what a bulk sync sends: the participation
// entries of the network first (all of them, or only this node's for an
// own-entries sync), then the network's stored versions.
func (g *Gossip) syncEntriesLocked(t syncTask) []Entry {
	var es []Entry
	if t.network != "" && !g.joined[t.network] {
		return nil
	}
	if t.network != "" {
		prefix := t.network + "\x00"
		for k, r := range g.nets[""].entries {
			if k.table == tableNet && strings.HasPrefix(k.key, prefix) && (!t.own || r.Owner == g.name) {
				es = append(es, r.Entry)
			}
		}
	}
	if ns := g.nets[t.network]; ns != nil {
		for _, r := range ns.entries {
			if !t.own || r.Owner == g.name {
				es = append(es, r.Entry)
			}
		}
	}
	return es
}

// parkLocked keeps a bulk sync to a node that memberlist has not yet
// reported alive here: a node that just joined the cluster asks its
// network's participants for their state before all of them have heard of
// it, and the answer would otherwise be lost. gossipLoop sends it as soon
// as the node is known, or drops it after a push/pull interval (by then
// anti-entropy has taken over).
func (g *Gossip) parkLocked(t syncTask, now time.Time) {
	if _, ok := g.parked[t]; ok {
		return
	}
	if len(g.parked) >= maxParked {
		g.stats.drop("sync_parked_full")
		return
	}
	g.parked[t] = now
}

// unparkLocked queues the parked syncs whose node is now known.
func (g *Gossip) unparkLocked(now time.Time) {
	for t, since := range g.parked {
		if _, ok := g.mlNodes[t.node]; ok {
			delete(g.parked, t)
			g.queueSyncLocked(t)
		} else if now.Sub(since) > g.cfg.PushPullInterval {
			delete(g.parked, t)
			g.stats.drop("sync_node_unknown")
		}
	}
}
