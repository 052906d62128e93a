package gossip

// This file holds the sending of bulk syncs (package table's Bulk: a
// network's whole state, or this node's own entries, to one node over
// TCP): queued, parked until the node is known, and sent by syncLoop.

import (
	"sync"
	"time"

	"github.com/overlayd/overlayd/gossip/table"
)

// maxParked bounds the bulk syncs waiting for their node to be known.
const maxParked = 1024

// syncQueue holds the bulk syncs to send. Its lock is taken last: the
// Store asks for syncs with its own lock held, nodeEvent and gossipLoop
// with Gossip.mu held.
type syncQueue struct {
	ch chan table.SyncTask

	mu      sync.Mutex                   // guards the fields below
	pending map[table.SyncTask]bool      // queued, to drop duplicates
	parked  map[table.SyncTask]time.Time // to nodes not yet known alive, since when
}

func (q *syncQueue) init() {
	q.ch = make(chan table.SyncTask, 256)
	q.pending = map[table.SyncTask]bool{}
	q.parked = map[table.SyncTask]time.Time{}
}

// queueSync asks syncLoop to send a network's state to a node (the
// Store's Sync hook). It never blocks.
func (g *Gossip) queueSync(t table.SyncTask) {
	g.syncs.mu.Lock()
	defer g.syncs.mu.Unlock()
	g.queueSyncLocked(t)
}

// queueSyncLocked is queueSync with g.syncs.mu held.
func (g *Gossip) queueSyncLocked(t table.SyncTask) {
	q := &g.syncs
	if q.pending[t] {
		return
	}
	if t.Own {
		full := table.SyncTask{Node: t.Node, Network: t.Network}
		if q.pending[full] {
			return // a full sync carries our own entries too
		}
		if full.Reply = true; q.pending[full] {
			return
		}
	}
	select {
	case q.ch <- t:
		q.pending[t] = true
	default:
		g.stats.drop("sync_queue_full")
	}
}

// syncLoop sends bulk syncs, each in the messages the Store packs
// (Bulk). A sync to a node not yet known alive here waits for it
// (parkLocked).
func (g *Gossip) syncLoop() {
	defer g.wg.Done()
	for {
		var t table.SyncTask
		select {
		case <-g.stop:
			return
		case t = <-g.syncs.ch:
		}
		g.mu.Lock()
		g.syncs.mu.Lock()
		delete(g.syncs.pending, t)
		mn, known := g.mlNodes[t.Node]
		if !known {
			g.parkLocked(t, time.Now())
		}
		g.syncs.mu.Unlock()
		g.mu.Unlock()
		if !known {
			continue
		}
		n := &mn
		for b := range g.store.Bulk(t) {
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

// parkLocked keeps a bulk sync to a node that memberlist has not yet
// reported alive here: a node that just joined the cluster asks its
// network's participants for their state before all of them have heard of
// it, and the answer would otherwise be lost. gossipLoop sends it as soon
// as the node is known, or drops it after a push/pull interval (by then
// anti-entropy has taken over). g.syncs.mu is held.
func (g *Gossip) parkLocked(t table.SyncTask, now time.Time) {
	q := &g.syncs
	if _, ok := q.parked[t]; ok {
		return
	}
	if len(q.parked) >= maxParked {
		g.stats.drop("sync_parked_full")
		return
	}
	q.parked[t] = now
}

// unparkLocked queues the parked syncs whose node is now known. g.mu is
// held.
func (g *Gossip) unparkLocked(now time.Time) {
	q := &g.syncs
	q.mu.Lock()
	defer q.mu.Unlock()
	for t, since := range q.parked {
		if _, ok := g.mlNodes[t.Node]; ok {
			delete(q.parked, t)
			g.queueSyncLocked(t)
		} else if now.Sub(since) > g.cfg.PushPullInterval {
			delete(q.parked, t)
			g.stats.drop("sync_node_unknown")
		}
	}
}
