package ipam

// This file holds leases: allocating an address from an own range (or
// asking for a range), releasing, claiming and looking leases up.

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Allocate returns a free address of family f in network's node pool,
// leased to owner (a free-form id such as a container name). If this node
// owns no free address it asks the cluster for a range and waits, until
// ctx ends. It fails with an error wrapping ErrExhausted when no node has
// a free address. A dual-stack network's callers allocate once per
// family, with the same owner.
func (p *IPAM) Allocate(ctx context.Context, network, owner string, f Family) (netip.Addr, error) {
	return p.allocate(ctx, network, owner, f, false)
}

// AllocateVIP is Allocate from the network's VIP pool of family f, for
// services.
func (p *IPAM) AllocateVIP(ctx context.Context, network, owner string, f Family) (netip.Addr, error) {
	return p.allocate(ctx, network, owner, f, true)
}

func (p *IPAM) allocate(ctx context.Context, network, owner string, f Family, vip bool) (netip.Addr, error) {
	t := time.NewTicker(p.opts.Interval)
	defer t.Stop()
	for {
		a, err := p.tryAllocate(network, owner, f, vip)
		if err != nil || a.IsValid() {
			if a.IsValid() {
				p.changed(network)
			}
			return a, err
		}
		select {
		case <-ctx.Done():
			return netip.Addr{}, fmt.Errorf("ipam: network %q: waiting for an address range: %w", network, ctx.Err())
		case <-t.C:
		}
	}
}

// tryAllocate allocates from an own range, or files a request and returns
// the zero address.
func (p *IPAM) tryAllocate(network, owner string, fam Family, vip bool) (netip.Addr, error) {
	l, err := p.layout(network)
	if err != nil {
		return netip.Addr{}, err
	}
	pool, err := l.poolOf(fam, vip)
	if err != nil {
		return netip.Addr{}, err
	}
	v6 := fam == IPv6
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.joinLocked(network); err != nil {
		return netip.Addr{}, err
	}
	ring := p.ringLocked(l)
	leases := p.leasesLocked(l)
	free, covered := uint64(0), uint64(0)
	for _, r := range ring {
		if r.Pool != pool {
			continue
		}
		f := r.free(leases)
		free += f
		covered += r.End - r.Start
		if r.Owner != p.name || f == 0 {
			continue
		}
		for off := r.Start; off < r.End; off++ {
			if _, used := leases[slot{v6, off}]; used {
				continue
			}
			a := l.addr(v6, off)
			if err := p.t.Put(tableLeases, network, a.String(), []byte(owner)); err != nil {
				return netip.Addr{}, fmt.Errorf("ipam: network %q: lease %v: %w", network, a, err)
			}
			rk := requestKey(pool, p.name)
			if _, ok := p.reqSeq[rk]; ok {
				delete(p.reqSeq, rk)
				p.t.Delete(tableRequests, network, rk)
			}
			return a, nil
		}
	}
	if lo, hi, _ := l.pool(pool); free == 0 && covered == hi-lo {
		// The whole pool is known (no range missing, as while syncing
		// or while a dead node's ranges are reaped) and full.
		what := ""
		if len(l.fams) > 1 {
			what = " " + fam.String()
		}
		if vip {
			return netip.Addr{}, fmt.Errorf("ipam: network %s has %w in its%s VIP range", l, ErrExhausted, what)
		}
		if what != "" {
			return netip.Addr{}, fmt.Errorf("ipam: network %s has %w of family%s", l, ErrExhausted, what)
		}
		return netip.Addr{}, fmt.Errorf("ipam: network %s has %w", l, ErrExhausted)
	}
	rk := requestKey(pool, p.name)
	if _, ok := p.reqSeq[rk]; !ok {
		p.reqSeq[rk] = uint64(time.Now().UnixNano())
		if err := p.t.Put(tableRequests, network, rk, binary.AppendUvarint(nil, p.reqSeq[rk])); err != nil {
			return netip.Addr{}, fmt.Errorf("ipam: network %q: request a range: %w", network, err)
		}
	}
	return netip.Addr{}, nil
}

// Release frees an address this node leased.
func (p *IPAM) Release(network string, a netip.Addr) error {
	p.mu.Lock()
	err := p.t.Delete(tableLeases, network, a.String())
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("ipam: release %v in %q: %w", a, network, err)
	}
	p.changed(network)
	return nil
}

// Lookup returns the lease of an address, if it is leased by the node
// that owns its range (leases of dead nodes included).
func (p *IPAM) Lookup(network string, a netip.Addr) (Lease, bool) {
	l, err := p.layout(network)
	if err != nil {
		return Lease{}, false
	}
	s, ok := l.slot(a)
	if !ok {
		return Lease{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	leases := p.leasesLocked(l)
	ls, ok := leases[s]
	if !ok {
		return Lease{}, false
	}
	for _, r := range p.ringLocked(l) {
		if r.holds(s) {
			if r.Owner != ls.Node {
				return Lease{}, false
			}
			return ls, true
		}
	}
	return Lease{}, false
}

// Holders returns the leases of network that Lookup would return (those
// leased by the node that owns the address's range), by address: one pass
// for callers that check many addresses, such as the route table.
func (p *IPAM) Holders(network string) map[netip.Addr]Lease {
	l, err := p.layout(network)
	if err != nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ring := p.ringLocked(l)
	out := map[netip.Addr]Lease{}
	for s, ls := range p.leasesLocked(l) {
		for _, r := range ring { // the first range holding s, as in Lookup
			if r.holds(s) {
				if r.Owner == ls.Node {
					out[ls.Addr] = ls
				}
				break
			}
		}
	}
	return out
}

// Claim leases address a of network to owner again, as Allocate would
// have, when a lies in a range this node owns and nobody else leases it:
// for a node that knows its address (from its other state) but lost the
// lease with its state file before the lease reached any peer. It fails
// when the range is not this node's (or not known yet) or another node
// leases a.
func (p *IPAM) Claim(network string, a netip.Addr, owner string) error {
	l, err := p.layout(network)
	if err != nil {
		return err
	}
	s, ok := l.slot(a)
	if !ok {
		return fmt.Errorf("ipam: %v is not in network %s", a, l)
	}
	p.mu.Lock()
	err = p.claimLocked(l, a, s, owner)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	p.changed(network)
	return nil
}

func (p *IPAM) claimLocked(l *layout, a netip.Addr, s slot, owner string) error {
	if ls, ok := p.leasesLocked(l)[s]; ok {
		if ls.Node == p.name && ls.Owner == owner {
			return nil
		}
		return fmt.Errorf("ipam: %v in %s is leased to %q on node %s", a, l, ls.Owner, ls.Node)
	}
	for _, r := range p.ringLocked(l) {
		if r.holds(s) {
			if r.Owner != p.name || r.Pool != poolNode && r.Pool != poolNode6 {
				return fmt.Errorf("ipam: %v in %s is in a range of node %s", a, l, r.Owner)
			}
			if err := p.t.Put(tableLeases, l.Name, a.String(), []byte(owner)); err != nil {
				return fmt.Errorf("ipam: network %q: lease %v: %w", l.Name, a, err)
			}
			return nil
		}
	}
	return fmt.Errorf("ipam: %v in %s: no range known holds it (yet)", a, l)
}

// Leases returns every lease of network that this node knows, sorted.
func (p *IPAM) Leases(network string) []Lease {
	l, err := p.layout(network)
	if err != nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var ls []Lease
	for _, x := range p.leasesLocked(l) {
		ls = append(ls, x)
	}
	slices.SortFunc(ls, func(a, b Lease) int { return a.Addr.Compare(b.Addr) })
	return ls
}

func (p *IPAM) leasesLocked(l *layout) map[slot]Lease {
	m := map[slot]Lease{}
	for _, e := range p.t.ListAll(tableLeases, l.Name) {
		a, err := netip.ParseAddr(e.Key)
		if err != nil || a.Is4In6() || a.Zone() != "" {
			continue
		}
		if s, ok := l.slot(a); ok {
			m[s] = Lease{Addr: a, Owner: string(e.Value), Node: e.Owner}
		}
	}
	return m
}
