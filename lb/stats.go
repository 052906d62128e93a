package lb

import (
	"cmp"
	"net/netip"
	"slices"
	"time"
)

// FlowInfo describes one tracked flow, for `overlayd conntrack`.
type FlowInfo struct {
	Network   string
	Service   string
	Proto     Proto
	Client    netip.AddrPort
	VIP       netip.AddrPort
	Backend   netip.AddrPort
	BackendID string
	State     State
	Age       time.Duration // since the first packet
	Idle      time.Duration // since the last packet
}

// Flows returns every tracked flow, including expired ones not yet swept,
// ordered by client, VIP and protocol.
func (b *Balancer) Flows() []FlowInfo {
	now := b.nanos()
	var out []FlowInfo
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		for l := range s.lru {
			for e := s.lru[l].head; e != nil; e = e.next {
				out = append(out, FlowInfo{
					Network:   e.be.network,
					Service:   e.be.service,
					Proto:     Proto(e.orig.Proto),
					Client:    e.orig.SrcAddrPort(),
					VIP:       e.orig.DstAddrPort(),
					Backend:   netip.AddrPortFrom(netip.AddrFrom16(e.be.addr).Unmap(), e.backendPort()),
					BackendID: e.be.id,
					State:     e.state,
					Age:       time.Duration(max(0, now-e.created)),
					Idle:      time.Duration(max(0, now-e.last)),
				})
			}
		}
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b FlowInfo) int {
		return cmp.Or(a.Client.Compare(b.Client), a.VIP.Compare(b.VIP), cmp.Compare(a.Proto, b.Proto))
	})
	return out
}

// Stats are the Balancer's counters since New.
type Stats struct {
	Flows     int    // flows tracked now
	MaxFlows  int    // the table's limit
	NewFlows  uint64 // flows created
	Hits      uint64 // client packets of tracked flows
	ReplyHits uint64 // backend replies (and ICMP errors) reverse-NATed
	Evictions uint64 // live embryonic or closing flows evicted to make room
	Expired   uint64 // flows removed after their idle timeout
	Refused   uint64 // new flows dropped: the table is full of established flows
	Resets    uint64 // packets answered with Reset because their backend was removed
	NoService uint64 // new flows to a VIP port no service serves (Reset)
	NoBackend uint64 // new flows to a service without a backend of positive weight (Reset)
	Conflicts uint64 // new flows dropped: their reply tuple is another flow's
	Invalid   uint64 // RSTs to a VIP without a flow (Drop)
	Malformed uint64 // malformed packets to a VIP (Drop)
	Fragments uint64 // fragments to a VIP (Drop; not supported)
	Services  []ServiceStats
}

// ServiceStats are the counters of one service.
type ServiceStats struct {
	Network  string
	Name     string
	VIP      netip.Addr
	Ports    []PortProto
	Backends []BackendStats // ordered by ID
}

// BackendStats are the counters of one backend of a service.
type BackendStats struct {
	ID         string
	Addr       netip.AddrPort
	Ports      []PortProto // the service ports it serves
	Weight     uint32
	Selections uint64 // new flows that picked this backend, on any port
}

// Stats returns a copy of the counters.
func (b *Balancer) Stats() Stats {
	st := Stats{MaxFlows: b.opts.MaxFlows, Malformed: b.malformed.Load(), Fragments: b.fragments.Load()}
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		c := s.c
		st.Flows += s.n
		s.mu.Unlock()
		st.NewFlows += c.newFlows
		st.Hits += c.hits
		st.ReplyHits += c.replyHits
		st.Evictions += c.evictions
		st.Expired += c.expired
		st.Refused += c.refused
		st.Resets += c.resets
		st.NoService += c.noService
		st.NoBackend += c.noBackend
		st.Conflicts += c.conflicts
		st.Invalid += c.invalid
	}
	for _, svc := range b.snap.Load().order {
		ss := ServiceStats{Network: svc.id.network, Name: svc.id.name, VIP: netip.AddrFrom16(svc.vip).Unmap(), Ports: slices.Clone(svc.ports)}
		for i, be := range svc.backends {
			ss.Backends = append(ss.Backends, BackendStats{
				ID:         be.id,
				Addr:       netip.AddrPortFrom(netip.AddrFrom16(be.addr).Unmap(), be.port),
				Ports:      slices.Clone(be.ports),
				Weight:     svc.weights[i],
				Selections: be.selections.Load(),
			})
		}
		st.Services = append(st.Services, ss)
	}
	return st
}
