package gossip

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/overlayd/overlayd/gossip/table"
)

// MemberState is a node's state as this node sees it.
type MemberState uint8

// Member states.
const (
	StateAlive   MemberState = iota + 1 // answering probes
	StateSuspect                        // missed probes, not yet declared dead
	StateDead                           // declared dead by the failure detector
	StateLeft                           // left gracefully (Leave)
)

func (s MemberState) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return "unknown"
}

// Member is one node of the cluster.
type Member struct {
	Name  string
	Addr  netip.AddrPort // gossip address
	State MemberState
	Meta  Meta // VTEP and version; zero if the node's metadata did not decode
}

// MemberEventType says what happened to a member.
type MemberEventType uint8

// Member event types.
const (
	MemberJoin   MemberEventType = iota + 1 // alive (new, or back from dead or left)
	MemberLeave                             // dead or left; see Member.State
	MemberUpdate                            // metadata changed
	MemberResync                            // the watcher fell behind: call Members
)

// MemberEvent is one change of membership.
type MemberEvent struct {
	Type   MemberEventType
	Member Member
}

// Members returns every known node, self included, sorted by name; dead and
// left ones as last seen, until DeadOwnerGrace has passed. memberlist does
// not report suspicion to its delegates, so a suspect node shows as alive.
func (g *Gossip) Members() []Member {
	var ms []Member
	g.mu.Lock()
	for _, m := range g.members {
		ms = append(ms, *m)
	}
	g.mu.Unlock()
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return ms
}

// WatchMembers returns a channel of membership changes and a cancel
// function, with the same delivery rules as Watch (MemberResync on overflow).
func (g *Gossip) WatchMembers() (<-chan MemberEvent, func()) {
	w := table.NewWatcher(g.cfg.WatchBuffer, MemberEvent{Type: MemberResync})
	g.mu.Lock()
	if g.closed {
		w.Close()
	} else {
		g.mwatch[w] = struct{}{}
	}
	g.mu.Unlock()
	return w.C(), func() {
		g.mu.Lock()
		delete(g.mwatch, w)
		w.Close()
		g.mu.Unlock()
	}
}

func (g *Gossip) member(n *memberlist.Node) Member {
	m := Member{Name: n.Name, Addr: nodeAddr(n)}
	switch n.State {
	case memberlist.StateAlive:
		m.State = StateAlive
	case memberlist.StateSuspect:
		m.State = StateSuspect
	case memberlist.StateDead:
		m.State = StateDead
	case memberlist.StateLeft:
		m.State = StateLeft
	}
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		g.stats.drop("meta")
	}
	m.Meta = meta
	return m
}

// delegate receives memberlist's callbacks. None of them blocks: they
// update membership under Gossip.mu and the tables under the Store's lock,
// queue work for the loops and return.
// NotifyJoin and NotifyLeave run under memberlist's node lock, so they must
// not call back into memberlist.
type delegate struct{ g *Gossip }

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
)

func (d *delegate) NodeMeta(limit int) []byte {
	meta := d.g.cfg.Meta
	meta.leaving = d.g.leaving.Load()
	b := meta.encode()
	if len(b) > limit {
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg(b []byte) {
	if len(b) == 0 {
		return
	}
	d.g.handle(append([]byte(nil), b...))
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	bs := d.g.globalQ.GetBroadcasts(overhead, limit)
	for _, b := range bs {
		d.g.stats.msgsOut.Add(1)
		d.g.stats.bytesOut.Add(uint64(len(b)))
	}
	return bs
}

// LocalState is the tables' push/pull state (package table's State).
func (d *delegate) LocalState(join bool) []byte {
	b := d.g.store.State()
	d.g.stats.msgsOut.Add(1)
	d.g.stats.bytesOut.Add(uint64(len(b)))
	return b
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	d.g.store.MergeState(append([]byte(nil), buf...))
}

func (d *delegate) NotifyJoin(n *memberlist.Node) { d.g.nodeEvent(n, MemberJoin) }

func (d *delegate) NotifyLeave(n *memberlist.Node) { d.g.nodeEvent(n, MemberLeave) }

func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.g.nodeEvent(n, MemberUpdate) }

// nodeEvent records a membership change; entries of a node that goes down
// are hidden (watchers see them deleted) and shown again when it comes back.
func (g *Gossip) nodeEvent(n *memberlist.Node, t MemberEventType) {
	m := g.member(n)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	if t == MemberLeave {
		// memberlist does not say whether the node left or died; a
		// leaving node announces it in its metadata first (Leave).
		m.State = StateDead
		if m.Meta.leaving {
			m.State = StateLeft
		}
	}
	if t == MemberJoin && m.State != StateSuspect {
		m.State = StateAlive
	}
	g.members[m.Name] = &m
	if t == MemberLeave {
		delete(g.mlNodes, m.Name)
	} else {
		c := *n
		c.Meta = append([]byte(nil), n.Meta...)
		g.mlNodes[m.Name] = c
	}
	if m.Name != g.name && t != MemberUpdate {
		// Its entries are hidden, or shown again; a node (back) up is
		// sent the networks both take part in.
		g.store.SetUp(m.Name, t == MemberJoin, time.Now())
	}
	for w := range g.mwatch {
		w.Send(MemberEvent{Type: t, Member: m})
	}
}
