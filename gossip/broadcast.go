package gossip

// This file holds deltas out and messages in: the queues the tables hand
// their deltas to, gossipLoop, which sends the rounds the tables make (own
// deltas directly to every peer, the rest epidemically), and handle, which
// takes every message a peer sends.

import (
	"slices"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/overlayd/overlayd/gossip/table"
)

// kickDirect wakes gossipLoop to send the fresh own entries (the Store's
// Fresh hook).
func (g *Gossip) kickDirect() {
	select {
	case g.directKick <- struct{}{}:
	default:
	}
}

// queue is a memberlist TransmitLimitedQueue as the Store's Queue.
type queue struct {
	*memberlist.TransmitLimitedQueue
}

var _ table.Queue = queue{}

// Queue queues msg as a broadcast named name.
func (q queue) Queue(name string, msg []byte) { q.QueueBroadcast(&broadcast{name: name, msg: msg}) }

// broadcast is a delta in a TransmitLimitedQueue; a newer version of the
// same key replaces it.
type broadcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*broadcast)(nil)

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	nb, ok := o.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.name
}
func (b *broadcast) Name() string    { return b.name }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

// gossipLoop sends the networks' queued deltas to random participants
// every gossip interval.
func (g *Gossip) gossipLoop() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.gossipInterval)
	defer t.Stop()
	limit := g.cfg.ml.UDPBufferSize - 128 // encryption, label, compression and framing
	// Own writes go out at once (the Store kicks), batched over
	// minDirectGap, at most one round of them per gap.
	minDirectGap := g.cfg.gossipInterval / 20
	var lastDirect time.Time
	for {
		epidemic := true
		select {
		case <-g.stop:
			return
		case <-t.C:
		case <-g.directKick:
			epidemic = false
			wait := max(minDirectGap-time.Since(lastDirect), time.Millisecond)
			select {
			case <-g.stop:
				return
			case <-time.After(wait):
			}
		}
		g.mu.Lock()
		g.unparkLocked(time.Now())
		if len(g.intros) > 0 {
			if due := g.introsDueLocked(time.Now()); len(due) > 0 {
				select {
				case g.introCh <- due:
					for name, in := range g.intros {
						if slices.Contains(due, in.addr.String()) {
							delete(g.intros, name)
						}
					}
				default: // maintLoop is busy: next round
				}
			}
		}
		g.mu.Unlock()
		directs := g.store.TakeDirect(limit)
		if len(directs) > 0 {
			lastDirect = time.Now()
		}
		var jobs []table.Epidemic
		if epidemic {
			jobs = g.store.Epidemic(g.cfg.gossipNodes)
		}
		if len(jobs) == 0 && len(directs) == 0 {
			continue
		}
		nodes := g.nodeMap()
		for _, d := range directs {
			for _, name := range d.Targets {
				n := nodes[name]
				if n == nil {
					continue
				}
				for _, b := range d.Packets {
					if err := g.ml.SendBestEffort(n, b); err != nil {
						g.stats.drop("send_failed")
						continue
					}
					g.stats.msgsOut.Add(1)
					g.stats.bytesOut.Add(uint64(len(b)))
				}
			}
		}
		for _, j := range jobs {
			for _, name := range j.Targets {
				n := nodes[name]
				if n == nil {
					continue // gone since: spend no transmit on it
				}
				msgs := j.Queue.GetBroadcasts(0, limit)
				if len(msgs) == 0 {
					break
				}
				b := table.PackDeltas(msgs)
				if err := g.ml.SendBestEffort(n, b); err != nil {
					g.stats.drop("send_failed")
					continue
				}
				g.stats.msgsOut.Add(1)
				g.stats.bytesOut.Add(uint64(len(b)))
			}
		}
	}
}

// handle processes one received message (a copy the caller gave up): the
// tables take it, and give back a hello, which is membership's.
func (g *Gossip) handle(b []byte) {
	h, ok := g.store.Receive(b)
	if !ok {
		return
	}
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	if _, known := g.mlNodes[h.Sender]; !known && h.Sender != g.name {
		if _, ok := g.intros[h.Sender]; !ok && len(g.intros) < maxIntros && g.intros != nil {
			g.intros[h.Sender] = intro{addr: h.Addr, since: now}
		}
	}
}
