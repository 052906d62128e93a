package network

import (
	"maps"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/ipam"
)

// Route is a route learned from a joined network's routes table: Prefix
// (one address) is reached at VTEP, on the network of VNI, and was
// announced by the node Owner.
type Route struct {
	Prefix netip.Prefix
	VTEP   netip.AddrPort
	VNI    uint32
	Owner  string
}

// Reasons a route entry is refused (the keys of Refused, shown in status).
const (
	RefuseKey       = "key_not_owner"   // the key is neither its writer's name nor one of its endpoints' (catalog.RouteName)
	RefuseMalformed = "malformed"       // the value does not parse
	RefuseOutside   = "outside_network" // not one address of the network's CIDR (of its family)
	RefuseLease     = "lease_elsewhere" // another node holds the address's lease
	RefuseNoLease   = "no_lease"        // nobody holds the address's lease (yet)
	RefuseVTEP      = "vtep_mismatch"   // not the VTEP its writer advertises
)

// refuseGrace is how long an entry may be refused for a reason that can be
// the gossip's ordering (its lease, its range or its writer's metadata not
// here yet) before the refusal is counted and logged.
const refuseGrace = 3 * time.Second

// refusalKey is one version of a refused entry.
type refusalKey struct {
	network, owner, key string
	time                uint64
	reason              string
}

// refusal is what the log says of a refused entry.
type refusal struct{ value, holder string }

// Learned returns the routes learned from the joined networks' route
// entries in snap (a joined network snap does not hold gives none). A
// route is accepted only from the node that holds the IPAM lease of its
// address under the entry's key (the node's name for its own address,
// "NODE/NAME" for an endpoint's; ipam is replicated, so every node checks
// the same), for that
// one address, at the VTEP its writer advertises (snap's members); every
// other entry is refused and counted (Refused), once per entry version.
// Two entries never compete for one prefix: only the lease holder's
// passes. This node's own entries are left out.
//
// The check trusts gossip's word for who wrote an entry: a member that
// forges another's name (or its lease) is not caught here; per-node
// identity for gossip entries is later work.
func (m *Manager) Learned(snap catalog.Snapshot) []Route {
	var out []Route
	vteps := map[string]netip.AddrPort{}
	for _, mb := range snap.Members {
		vteps[mb.Name] = mb.Meta.VTEP
	}
	refusedNow := map[refusalKey]refusal{}
	for _, j := range m.Joined() {
		tables, ok := snap.Networks[j.Name]
		if !ok {
			continue
		}
		holders := m.ipam.Holders(j.Name)
		for _, e := range tables.Routes {
			if e.Owner == m.self {
				continue
			}
			rt, err := catalog.ParseRoute(e.Value)
			reason, holder := "", ""
			_, named := catalog.RouteName(e.Owner, e.Key)
			switch {
			case !named:
				reason = RefuseKey
			case err != nil:
				reason = RefuseMalformed
			default:
				reason, holder = m.checkRoute(j, rt, e.Owner, e.Key, holders, vteps)
			}
			if reason != "" {
				v := e.Value[:min(len(e.Value), 80)] // what a forger wrote: keep the log line short
				refusedNow[refusalKey{j.Name, e.Owner, e.Key, e.Time, reason}] = refusal{value: string(v), holder: holder}
				continue
			}
			for _, pfx := range rt.Prefixes {
				out = append(out, Route{Prefix: pfx, VTEP: rt.VTEP, VNI: j.VNI, Owner: e.Owner})
			}
		}
	}
	m.noteRefused(refusedNow, time.Now())
	return out
}

// checkRoute says why route entry rt of j's network, written by owner
// under key, is refused (and who holds the lease it lacks), or "" when
// each of its prefixes is one address of the network's CIDR of its family
// leased by owner under key, at the VTEP owner advertises.
func (m *Manager) checkRoute(j Joined, rt catalog.Route, owner, key string, holders map[netip.Addr]ipam.Lease, vteps map[string]netip.AddrPort) (reason, holder string) {
	for _, pfx := range rt.Prefixes {
		if pfx.Bits() != pfx.Addr().BitLen() || !ipam.Contains(j.CIDRs, pfx.Addr()) {
			return RefuseOutside, ""
		}
	}
	for _, pfx := range rt.Prefixes {
		ls, held := holders[pfx.Addr()]
		switch {
		case !held:
			return RefuseNoLease, ""
		case ls.Node != owner || ls.Owner != key:
			return RefuseLease, ls.Node
		}
	}
	if vteps[owner] != rt.VTEP {
		return RefuseVTEP, ""
	}
	return "", ""
}

// noteRefused counts (once per entry version) and logs the refused route
// entries seen at t; those refused for a reason that can be transient
// only once they have been refused for refuseGrace.
func (m *Manager) noteRefused(now map[refusalKey]refusal, t time.Time) {
	m.refMu.Lock()
	defer m.refMu.Unlock()
	for k, since := range m.pending {
		if _, still := now[k]; !still {
			delete(m.pending, k)
		} else if since.IsZero() {
			delete(now, k) // counted already
		}
	}
	for k, r := range now {
		since, ok := m.pending[k]
		if !ok {
			since = t
			m.pending[k] = t
		}
		if (k.reason == RefuseNoLease || k.reason == RefuseVTEP) && t.Sub(since) < refuseGrace {
			continue
		}
		m.pending[k] = time.Time{} // counted
		m.refused[k.reason]++
		m.log.Warn("route refused", zap.String("network", k.network), zap.String("owner", k.owner),
			zap.String("route", r.value), zap.String("reason", k.reason), zap.String("lease_holder", r.holder))
	}
}

// Refused is a copy of the refusal counters, by reason (the Refuse
// constants); nil when none was refused.
func (m *Manager) Refused() map[string]uint64 {
	m.refMu.Lock()
	defer m.refMu.Unlock()
	if len(m.refused) == 0 {
		return nil
	}
	return maps.Clone(m.refused)
}
