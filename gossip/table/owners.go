package table

// This file holds the owners' liveness, as membership reports it, and
// reaping: tombstones and the entries of long-dead owners.

import "time"

// SetUp records that node (never this one) is up (alive or suspect) or
// down (dead or left), as membership reports it. Its entries become
// visible or hidden: watchers see them put or deleted. A node that comes
// (back) up is sent a bulk sync of every network both take part in.
func (s *Store) SetUp(node string, up bool, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wasUp := s.up[node]
	if up {
		s.up[node] = true
		delete(s.down, node)
	} else {
		delete(s.up, node)
		s.down[node] = now
	}
	if wasUp == up {
		return
	}
	s.nUp.Store(int32(len(s.up)))
	for network, ns := range s.nets {
		if network != "" {
			n := 0
			for q := range s.parts[network] {
				if q != s.name && s.up[q] {
					n++
				}
			}
			ns.nparts.Store(int32(n))
		}
		s.revisitLocked(ns, node)
	}
	if up {
		// A node (back) up: exchange the networks we share with it now.
		// A restarted node's own push/pull at join time reached us while
		// we still held it dead, so its sync had nowhere to go; without
		// this it would wait for the next push/pull (30 s at the default
		// profile).
		for network := range s.joined {
			if s.parts[network][node] {
				s.queueSyncLocked(SyncTask{Node: node, Network: network, Reply: true})
			}
		}
	}
}

// Reap removes the tombstones received more than TombstoneGrace ago and
// the entries of owners down for more than DeadOwnerGrace, drops the
// networks left with nothing stored or queued, and forgets those owners:
// it returns them (membership forgets them too).
func (s *Store) Reap(now time.Time) (forgotten []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for network, ns := range s.nets {
		for k, r := range ns.entries {
			since, dead := s.down[r.Owner]
			if r.Deleted && now.Sub(r.recv) > s.opts.TombstoneGrace ||
				!s.up[r.Owner] && dead && now.Sub(since) > s.opts.DeadOwnerGrace {
				s.setVisibleLocked(r, false)
				s.removeLocked(ns, k, r)
				if r.Table == tableNet && network == "" && !r.Deleted {
					tomb := r.Entry
					tomb.Deleted = true
					s.participationLocked(&tomb)
				}
				s.stats.reaped.Add(1)
			}
		}
		if network != "" && !s.joined[network] && len(ns.entries) == 0 && ns.q.NumQueued() == 0 {
			delete(s.nets, network)
		}
	}
	for o, since := range s.down {
		if now.Sub(since) > s.opts.DeadOwnerGrace {
			delete(s.down, o)
			forgotten = append(forgotten, o)
		}
	}
	return forgotten
}
