package catalog

import (
	"github.com/overlayd/overlayd/gossip"
)

// Reader is the part of gossip a snapshot is read from.
type Reader interface {
	List(table, network string) []gossip.Entry
	ListAll(table, network string) []gossip.Entry
	Members() []gossip.Member
}

var _ Reader = (*gossip.Gossip)(nil)

// Snapshot is what the schema holds for a set of networks, read once:
// the members and, per network, the entries of its tables. Whoever builds
// the route table, the balancer's services and the DNS zone builds all
// three from one Snapshot, so they never disagree about which entries
// exist. Entries are raw: readers parse them with ParseRoute,
// ServiceEntry and BackendEntry and decide what a malformed one costs.
type Snapshot struct {
	Members  []gossip.Member
	Networks map[string]Tables // network name → its tables
}

// Tables are one network's entries.
type Tables struct {
	Routes []gossip.Entry // live owners only (List)
	// Services includes the entries of a dead creator (ListAll): a
	// service outlives a crash of its creator for the gossip's dead-owner
	// grace. VisibleServices are those whose creator is alive and on the
	// network (List): the DNS zone names only these.
	Services        []gossip.Entry
	VisibleServices []gossip.Entry
	Backends        []gossip.Entry // live owners only: backends leave with their nodes
}

// Read takes a snapshot of networks' tables from r.
func Read(r Reader, networks []string) Snapshot {
	s := Snapshot{Members: r.Members(), Networks: make(map[string]Tables, len(networks))}
	for _, nw := range networks {
		s.Networks[nw] = Tables{
			Routes:          r.List(TableRoutes, nw),
			Services:        r.ListAll(TableServices, nw),
			VisibleServices: r.List(TableServices, nw),
			Backends:        r.List(TableBackends, nw),
		}
	}
	return s
}

// Live reports whether the member named name is alive or suspect (not yet
// declared dead) in the snapshot.
func (s Snapshot) Live(name string) bool {
	for _, m := range s.Members {
		if m.Name == name {
			return m.State == gossip.StateAlive || m.State == gossip.StateSuspect
		}
	}
	return false
}
