package node

import (
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/ipam"
)

// reconciler is the node's one loop from the replicated schema to the
// data plane. On every change signal and once a second it reads one
// catalog.Snapshot of the joined networks and builds from it, in this
// order, the router's route table, the balancer's services (whose backends
// count only while the new routes reach them) and the DNS zone, and swaps
// each of the three that changed. The signals coalesce into one pending
// pass: a watched table of a joined network (the network manager watches
// the routes and IPAM tables, the reconciler the service tables), a member
// that came, went or changed, a network defined, a join or leave, a write
// or health change of a service, new static routes.
type reconciler struct {
	n    *Node
	log  *zap.Logger
	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	watches map[string]func() // joined network → stop of its watch of the service tables (the loop's alone)
}

func newReconciler(n *Node) *reconciler {
	return &reconciler{n: n, log: n.log.Named("reconcile"), kick: make(chan struct{}, 1), stop: make(chan struct{}), watches: map[string]func(){}}
}

// poke asks for a pass; it never blocks.
func (r *reconciler) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// start runs a first pass, so that the node starts with its tables built,
// and then the loop, until close.
func (r *reconciler) start() {
	r.pass()
	if ctl := r.n.ctl; ctl != nil {
		mch, mcancel := ctl.g.WatchMembers()
		nch, ncancel := ipam.WatchNetworks(ctl.g)
		r.wg.Add(2)
		go func() { defer r.wg.Done(); forward(r, mch, mcancel) }()
		go func() { defer r.wg.Done(); forward(r, nch, ncancel) }()
	}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.loop() }()
}

// forward turns the events of a watch into pokes.
func forward[T any](r *reconciler, ch <-chan T, cancel func()) {
	defer cancel()
	for {
		select {
		case <-r.stop:
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			r.poke()
		}
	}
}

func (r *reconciler) loop() {
	defer r.unwatchAll()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-r.kick:
		case <-t.C:
		}
		r.pass()
	}
}

// pass builds and swaps the route table, the balancer's services and the
// DNS zone from one snapshot, then lets the network manager keep its
// state files and recoveries up to date.
func (r *reconciler) pass() {
	n := r.n
	var snap catalog.Snapshot
	if n.ctl != nil {
		joined := n.ctl.joinedList()
		r.rewatch(joined)
		snap = catalog.Read(n.ctl.g, joinedNames(joined))
		if err := n.setRoutes(snap); err != nil {
			r.log.Warn("route table", zap.Error(err))
		}
		if s := n.svc.Load(); s != nil {
			s.sync(snap)
		}
	}
	if n.dns != nil {
		n.dns.Sync(snap)
	}
	if n.ctl != nil {
		n.ctl.nets.Maintain()
	}
	if n.eps != nil {
		n.eps.Kick() // a re-adoption waiting for its lease to come back tries again
	}
}

// rewatch watches the service tables of every joined network, and stops
// watching the networks left.
func (r *reconciler) rewatch(joined []joinedNet) {
	want := map[string]bool{}
	for _, j := range joined {
		want[j.Name] = true
	}
	for nw, stop := range r.watches {
		if !want[nw] {
			stop()
			delete(r.watches, nw)
		}
	}
	for nw := range want {
		if r.watches[nw] == nil {
			r.watches[nw] = catalog.Watch(r.n.ctl.g, nw, r.kick, catalog.ServiceTables()...)
		}
	}
}

func (r *reconciler) unwatchAll() {
	for nw, stop := range r.watches {
		stop()
		delete(r.watches, nw)
	}
}

// close stops the loop and the watches and waits for them. Safe twice,
// and before start.
func (r *reconciler) close() {
	r.once.Do(func() { close(r.stop) })
	r.wg.Wait()
}

// joinedNames are the names of js.
func joinedNames(js []joinedNet) []string {
	out := make([]string, len(js))
	for i, j := range js {
		out[i] = j.Name
	}
	return out
}
