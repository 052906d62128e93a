package gossip

// This file holds deltas out and messages in: the queueing of own and
// relayed deltas, gossipLoop, which sends them (own ones directly to every
// peer, the rest epidemically), and handle, which takes every message a
// peer sends.

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// maxDirectPackets bounds the packets of own deltas sent to each peer of a
// network per gossip round; the rest wait for the next round.
const maxDirectPackets = 8

// announceLocked queues one of this node's own entries: sent directly to
// every peer of its network at once (gossipLoop), and to the epidemic
// queue (which also reaches the nodes this one does not know of yet).
// Epidemic broadcast alone misses a node now and then (each node passes a
// delta on a bounded number of times, to random peers, and the nodes that
// got it another way, by a bulk sync, pass it on to nobody), and what it
// misses waited for push/pull, 30 s.
func (g *Gossip) announceLocked(ns *netState, e *Entry) {
	g.broadcastLocked(ns, e)
	k := ekey{e.Table, e.Key}
	if ns.isFresh == nil {
		ns.isFresh = map[ekey]bool{}
	}
	if !ns.isFresh[k] {
		ns.isFresh[k] = true
		ns.fresh = append(ns.fresh, k)
	}
	g.kickDirect()
}

// kickDirect wakes gossipLoop to send the fresh own entries.
func (g *Gossip) kickDirect() {
	select {
	case g.directKick <- struct{}{}:
	default:
	}
}

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

// broadcastLocked queues e for gossip: cluster-wide entries ride
// memberlist's own broadcasts (to every node), a network's entries go to a
// queue that gossipLoop sends to the network's participants only.
func (g *Gossip) broadcastLocked(ns *netState, e *Entry) {
	name := e.Table + "\x00" + e.Network + "\x00" + e.Key
	if e.Network == "" {
		g.globalQ.QueueBroadcast(&broadcast{name: name, msg: encodeDeltas([]Entry{*e})})
		return
	}
	ns.q.QueueBroadcast(&broadcast{name: name, msg: appendEntry(nil, e)})
}

// gossipLoop sends the networks' queued deltas to random participants
// every gossip interval.
func (g *Gossip) gossipLoop() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.gossipInterval)
	defer t.Stop()
	limit := g.cfg.ml.UDPBufferSize - 128 // encryption, label, compression and framing
	// Own writes go out at once (announceLocked kicks), batched over
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
		type job struct {
			q       *memberlist.TransmitLimitedQueue
			targets []string
		}
		var jobs []job
		var directs []direct
		g.mu.Lock()
		if len(g.parked) > 0 {
			g.unparkLocked(time.Now())
		}
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
		for n, ns := range g.nets {
			if len(ns.fresh) > 0 {
				if d := g.directLocked(n, ns, limit); len(d.targets) > 0 {
					directs = append(directs, d)
				}
				if len(ns.fresh) > 0 {
					g.kickDirect() // more than one round's worth
				}
			}
		}
		if len(directs) > 0 {
			lastDirect = time.Now()
		}
		for n, ns := range g.nets {
			if !epidemic {
				break
			}
			if n == "" || ns.q.NumQueued() == 0 {
				continue
			}
			ps := g.participantsLocked(n)
			if len(ps) == 0 {
				if !g.joined[n] {
					ns.q.Reset()
				}
				continue
			}
			rand.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
			jobs = append(jobs, job{ns.q, ps[:min(len(ps), g.cfg.gossipNodes)]})
		}
		g.mu.Unlock()
		if len(jobs) == 0 && len(directs) == 0 {
			continue
		}
		nodes := g.nodeMap()
		for _, d := range directs {
			for _, name := range d.targets {
				n := nodes[name]
				if n == nil {
					continue
				}
				for _, b := range d.packets {
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
			for _, name := range j.targets {
				n := nodes[name]
				if n == nil {
					continue // gone since: spend no transmit on it
				}
				msgs := j.q.GetBroadcasts(0, limit)
				if len(msgs) == 0 {
					break
				}
				b := appendHeader(nil, msgDeltas)
				b = binary.AppendUvarint(b, uint64(len(msgs)))
				for _, m := range msgs {
					b = append(b, m...)
				}
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

// direct is one round of a network's own deltas for all its peers.
type direct struct {
	packets [][]byte
	targets []string
}

// directLocked takes the fresh own entries of a network (at most
// maxDirectPackets packets of them, the rest wait) and returns them packed
// for every peer: the network's participants, or every live node for "".
func (g *Gossip) directLocked(network string, ns *netState, limit int) direct {
	var d direct
	if network == "" {
		for p := range g.up {
			if p != g.name {
				d.targets = append(d.targets, p)
			}
		}
	} else {
		d.targets = g.participantsLocked(network)
	}
	var batch []Entry
	size, taken := 3, 0
	flush := func() {
		if len(batch) > 0 {
			d.packets = append(d.packets, encodeDeltas(batch))
			batch, size = nil, 3
		}
	}
	for _, k := range ns.fresh {
		if len(d.packets) == maxDirectPackets {
			break
		}
		taken++
		delete(ns.isFresh, k)
		r := ns.entries[k]
		if r == nil || r.Owner != g.name {
			continue // reaped, or taken over (an earlier run's, adopted back)
		}
		if l := entryLen(&r.Entry); size+l+binary.MaxVarintLen16 > limit {
			flush()
		}
		batch = append(batch, r.Entry)
		size += entryLen(&r.Entry)
	}
	flush()
	ns.fresh = append(ns.fresh[:0], ns.fresh[taken:]...)
	return d
}

// handle processes one received message (a copy the caller gave up).
func (g *Gossip) handle(b []byte) {
	g.stats.bytesIn.Add(uint64(len(b)))
	m, err := decodeMessage(b)
	if err != nil {
		g.stats.drop(dropReason(err))
		return
	}
	g.stats.msgsIn.Add(1)
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	switch m.Type {
	case msgDeltas:
		for _, e := range m.Entries {
			if g.mergeLocked(e, now) {
				g.broadcastLocked(g.nets[e.Network], &e) // relay news
			}
		}
	case msgHello:
		if _, known := g.mlNodes[m.Sender]; !known && m.Sender != g.name {
			if _, ok := g.intros[m.Sender]; !ok && len(g.intros) < maxIntros && g.intros != nil {
				g.intros[m.Sender] = intro{addr: m.Addr, since: now}
			}
		}
	case msgBulk:
		// The participation entries a bulk sync of a network carries are
		// cluster-wide: kept whether or not this node takes part, and
		// relayed when new (their broadcast missed this node, and may have
		// missed others).
		rest := m.Entries[:0:0]
		for _, e := range m.Entries {
			if e.Network == m.Network {
				rest = append(rest, e)
			} else if g.mergeLocked(e, now) {
				g.broadcastLocked(g.nets[""], &e)
			}
		}
		m.Entries = rest
		if m.Network != "" && !g.joined[m.Network] {
			g.stats.drop("not_participating")
			return
		}
		for _, e := range m.Entries {
			g.mergeLocked(e, now)
		}
		if m.Flags&bulkReply != 0 && m.Sender != g.name {
			g.queueSyncLocked(syncTask{node: m.Sender, network: m.Network})
		}
	default:
		g.stats.drop("unexpected_type")
	}
}
