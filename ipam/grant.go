package ipam

// This file holds range requests and grants: the loop that answers other
// nodes' requests by splitting an own range, and keeps own copies of the
// ranges granted to this node.

import (
	"encoding/binary"
	"time"

	"go.uber.org/zap"
)

func requestKey(pool byte, node string) string { return string(pool) + "/" + node }

// loop answers requests and keeps own copies of granted ranges.
func (p *IPAM) loop() {
	defer p.wg.Done()
	t := time.NewTicker(p.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		var nets []string
		for n := range p.nets {
			nets = append(nets, n)
		}
		p.mu.Unlock()
		for _, n := range nets {
			if p.tick(n) {
				p.changed(n)
			}
		}
	}
}

// tick runs one round for a network; it reports whether own ranges changed.
func (p *IPAM) tick(network string) bool {
	l, err := p.layout(network)
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := false
	for _, e := range p.t.ListAll(tableRanges, network) {
		// This node's ranges of a creation that lost (another node created
		// the network under the same name at the same time, and its
		// definition won): they can never be used, so withdraw them.
		if r, ok := decodeRange(e.Value); ok && e.Owner == p.name && r.Creator != l.Creator {
			if p.t.Delete(tableRanges, network, e.Key) == nil {
				changed = true
			}
		}
	}
	ring := p.ringLocked(l)
	for _, r := range ring {
		if r.Owner == p.name && r.writer != p.name {
			if p.putRangeLocked(network, r) == nil { // own copy of a grant
				changed = true
			}
		}
	}
	leases := p.leasesLocked(l)
	now := time.Now()
	for _, e := range p.t.ListAll(tableRequests, network) {
		if e.Owner == p.name || e.Key == "" {
			continue
		}
		seq, _ := binary.Uvarint(e.Value)
		pool := e.Key[0]
		if p.granted[e.Key] == seq {
			continue
		}
		// Does the requester already own free space (a grant in flight)?
		freeBy := map[string]uint64{}
		for _, r := range ring {
			if r.Pool == pool {
				freeBy[r.Owner] += r.free(leases)
			}
		}
		if freeBy[e.Owner] > 0 || freeBy[p.name] == 0 {
			continue
		}
		first, ok := p.seen[e.Key]
		if !ok {
			first = now
			p.seen[e.Key] = now
		}
		best := p.name
		for o, f := range freeBy {
			if f > freeBy[best] || f == freeBy[best] && o < best {
				best = o
			}
		}
		if best != p.name && now.Sub(first) < p.opts.RequestTimeout {
			continue
		}
		if p.grantLocked(l, ring, leases, pool, e.Owner) {
			p.granted[e.Key] = seq
			delete(p.seen, e.Key)
			changed = true
			ring = p.ringLocked(l)
		}
	}
	return changed
}

// grantLocked splits one of this node's ranges of pool and gives the upper
// part, above every lease in it, to node.
func (p *IPAM) grantLocked(l *layout, ring []rng, leases map[slot]Lease, pool byte, node string) bool {
	var pick *rng
	var pickMid uint64
	for i := range ring {
		r := &ring[i]
		if r.Pool != pool || r.Owner != p.name {
			continue
		}
		top := r.Start // first offset above every lease
		for s := range leases {
			if r.holds(s) && s.off+1 > top {
				top = s.off + 1
			}
		}
		mid := max(top, r.Start+(r.End-r.Start)/2)
		if mid >= r.End {
			continue
		}
		if pick == nil || r.End-mid > pick.End-pickMid {
			pick, pickMid = r, mid
		}
	}
	if pick == nil {
		return false
	}
	if pickMid == pick.Start { // one free address, or all of an unleased range of 1
		g := *pick
		g.Owner, g.Version = node, pick.Version+1
		return p.putRangeLocked(l.Name, g) == nil
	}
	keep := *pick
	keep.End, keep.Version = pickMid, pick.Version+1
	if p.putRangeLocked(l.Name, keep) != nil {
		return false
	}
	g := rng{Pool: pool, Start: pickMid, End: pick.End, Owner: node, Version: 1, Creator: pick.Creator}
	for _, e := range p.t.ListAll(tableRanges, l.Name) { // above any earlier version at this start
		if r, ok := decodeRange(e.Value); ok && r.Pool == pool && r.Start == pickMid && r.Version >= g.Version {
			g.Version = r.Version + 1
		}
	}
	p.log.Debug("grant", zap.String("network", l.Name), zap.String("to", node), zap.Uint64("start", g.Start), zap.Uint64("end", g.End))
	return p.putRangeLocked(l.Name, g) == nil
}
