package table

// This file holds deltas out and messages in: the queueing of own and
// relayed deltas, the rounds package gossip sends (own ones directly to
// every peer, TakeDirect; the rest epidemically, Epidemic), and Receive,
// which takes every message a peer sends.

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"time"
)

// maxDirectPackets bounds the packets of own deltas sent to each peer of a
// network per gossip round; the rest wait for the next round.
const maxDirectPackets = 8

// announceLocked queues one of this node's own entries: sent directly to
// every peer of its network at once (TakeDirect), and to the epidemic
// queue (which also reaches the nodes this one does not know of yet).
// Epidemic broadcast alone misses a node now and then (each node passes a
// delta on a bounded number of times, to random peers, and the nodes that
// got it another way, by a bulk sync, pass it on to nobody), and what it
// misses waited for push/pull, 30 s.
func (s *Store) announceLocked(ns *netState, e *Entry) {
	s.broadcastLocked(ns, e)
	k := ekey{e.Table, e.Key}
	if ns.isFresh == nil {
		ns.isFresh = map[ekey]bool{}
	}
	if !ns.isFresh[k] {
		ns.isFresh[k] = true
		ns.fresh = append(ns.fresh, k)
	}
	s.kickDirect()
}

// broadcastLocked queues e for gossip: cluster-wide entries go to the
// global queue (memberlist's own broadcasts, to every node), a network's
// entries to the network's queue, which Epidemic hands out for the
// network's participants only.
func (s *Store) broadcastLocked(ns *netState, e *Entry) {
	name := e.Table + "\x00" + e.Network + "\x00" + e.Key
	if e.Network == "" {
		s.opts.Global.Queue(name, EncodeDeltas([]Entry{*e}))
		return
	}
	ns.q.Queue(name, appendEntry(nil, e))
}

// Epidemic is one network's queue of deltas and the participants to send
// them to in this round.
type Epidemic struct {
	Queue   Queue
	Targets []string
}

// Epidemic returns the networks' epidemic round: for every network with
// queued deltas, up to fanout random live participants. The queue of a
// network that has no participant left and that this node left is reset.
// The sender takes each target's messages with Queue.GetBroadcasts and
// frames them with PackDeltas.
func (s *Store) Epidemic(fanout int) []Epidemic {
	s.mu.Lock()
	defer s.mu.Unlock()
	var jobs []Epidemic
	for n, ns := range s.nets {
		if n == "" || ns.q.NumQueued() == 0 {
			continue
		}
		ps := s.participantsLocked(n)
		if len(ps) == 0 {
			if !s.joined[n] {
				ns.q.Reset()
			}
			continue
		}
		rand.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		jobs = append(jobs, Epidemic{ns.q, ps[:min(len(ps), fanout)]})
	}
	return jobs
}

// Direct is one round of a network's own deltas for all its peers.
type Direct struct {
	Packets [][]byte // deltas messages
	Targets []string // the network's participants, or every live node for ""
}

// TakeDirect takes the own entries written since the last call, at most
// maxDirectPackets packets of at most limit bytes per network, and returns
// them packed for every peer. When some are left for the next round it
// calls Options.Fresh again.
func (s *Store) TakeDirect(limit int) []Direct {
	s.mu.Lock()
	defer s.mu.Unlock()
	var directs []Direct
	for n, ns := range s.nets {
		if len(ns.fresh) > 0 {
			if d := s.directLocked(n, ns, limit); len(d.Targets) > 0 {
				directs = append(directs, d)
			}
			if len(ns.fresh) > 0 {
				s.kickDirect() // more than one round's worth
			}
		}
	}
	return directs
}

// directLocked takes the fresh own entries of a network (at most
// maxDirectPackets packets of them, the rest wait) and returns them packed
// for every peer: the network's participants, or every live node for "".
func (s *Store) directLocked(network string, ns *netState, limit int) Direct {
	var d Direct
	if network == "" {
		for p := range s.up {
			if p != s.name {
				d.Targets = append(d.Targets, p)
			}
		}
	} else {
		d.Targets = s.participantsLocked(network)
	}
	var batch []Entry
	size, taken := 3, 0
	flush := func() {
		if len(batch) > 0 {
			d.Packets = append(d.Packets, EncodeDeltas(batch))
			batch, size = nil, 3
		}
	}
	for _, k := range ns.fresh {
		if len(d.Packets) == maxDirectPackets {
			break
		}
		taken++
		delete(ns.isFresh, k)
		r := ns.entries[k]
		if r == nil || r.Owner != s.name {
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

// Hello is a hello message: a node that just joined the cluster tells a
// member its name and memberlist address (package gossip's catching up).
type Hello struct {
	Sender string
	Addr   netip.AddrPort
}

// Receive takes one message a peer sent (b is not retained): deltas and
// bulk syncs are merged, news relayed; a hello, which is membership's, is
// returned to the caller (ok). A message that does not decode is a
// counted drop.
func (s *Store) Receive(b []byte) (h Hello, ok bool) {
	s.stats.bytesIn.Add(uint64(len(b)))
	m, err := decodeMessage(b)
	if err != nil {
		s.stats.drop(dropReason(err))
		return Hello{}, false
	}
	s.stats.msgsIn.Add(1)
	if m.Type == msgHello {
		return Hello{Sender: m.Sender, Addr: m.Addr}, true
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Hello{}, false
	}
	switch m.Type {
	case msgDeltas:
		for _, e := range m.Entries {
			if s.mergeLocked(e, now) {
				s.broadcastLocked(s.nets[e.Network], &e) // relay news
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
			} else if s.mergeLocked(e, now) {
				s.broadcastLocked(s.nets[""], &e)
			}
		}
		m.Entries = rest
		if m.Network != "" && !s.joined[m.Network] {
			s.stats.drop("not_participating")
			return Hello{}, false
		}
		for _, e := range m.Entries {
			s.mergeLocked(e, now)
		}
		if m.Flags&bulkReply != 0 && m.Sender != s.name {
			s.queueSyncLocked(SyncTask{Node: m.Sender, Network: m.Network})
		}
	default:
		s.stats.drop("unexpected_type")
	}
	return Hello{}, false
}
