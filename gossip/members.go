package gossip

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
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
	w := newWatcher(g.cfg.WatchBuffer, MemberEvent{Type: MemberResync})
	g.mu.Lock()
	if g.closed {
		w.close()
	} else {
		g.mwatch[w] = struct{}{}
	}
	g.mu.Unlock()
	return w.ch, func() {
		g.mu.Lock()
		delete(g.mwatch, w)
		w.close()
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

// watcher is a bounded, non-blocking event queue: send never blocks; on
// overflow the queued events are discarded and replaced by one resync event.
// Its methods are called with Gossip.mu held.
type watcher[T any] struct {
	ch     chan T
	resync T
	closed bool
}

func newWatcher[T any](n int, resync T) *watcher[T] {
	return &watcher[T]{ch: make(chan T, n), resync: resync}
}

func (w *watcher[T]) send(v T) {
	if w.closed {
		return
	}
	select {
	case w.ch <- v:
		return
	default:
	}
	for drained := false; !drained; {
		select {
		case <-w.ch:
		default:
			drained = true
		}
	}
	select {
	case w.ch <- w.resync:
	default:
	}
}

func (w *watcher[T]) close() {
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
}

// delegate receives memberlist's callbacks. None of them blocks: they
// update tables under Gossip.mu, queue work for the loops and return.
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

func (d *delegate) LocalState(join bool) []byte { return d.g.localState() }

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	d.g.mergeRemoteState(append([]byte(nil), buf...))
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
	if m.Name != g.name {
		wasUp := g.up[m.Name]
		switch t {
		case MemberJoin:
			g.up[m.Name] = true
			delete(g.down, m.Name)
		case MemberLeave:
			delete(g.up, m.Name)
			g.down[m.Name] = time.Now()
		}
		if wasUp != g.up[m.Name] {
			g.nUp.Store(int32(len(g.up)))
			for network, ns := range g.nets {
				if network != "" {
					n := 0
					for q := range g.parts[network] {
						if q != g.name && g.up[q] {
							n++
						}
					}
					ns.nparts.Store(int32(n))
				}
				g.revisitLocked(ns, m.Name)
			}
			if t == MemberJoin {
				// A node (back) up: exchange the networks we share with
				// it now. A restarted node's own push/pull at join time
				// reached us while we still held it dead, so its sync
				// had nowhere to go; without this it would wait for the
				// next push/pull (30 s at the default profile).
				for network := range g.joined {
					if g.parts[network][m.Name] {
						g.queueSyncLocked(syncTask{node: m.Name, network: network, reply: true})
					}
				}
			}
		}
	}
	for w := range g.mwatch {
		w.send(MemberEvent{Type: t, Member: m})
	}
}
