package gossip

// This file holds discovery: Options.Discover announces this node on the
// LAN and finds the nodes of its cluster there, which discoverLoop joins.
// mdns.go is the real Discoverer (multicast DNS); gossiptest has a fake.

import (
	"net/netip"

	"go.uber.org/zap"
)

// Found is a node a Discoverer heard announce itself: its gossip name and
// the address its memberlist listens on.
type Found struct {
	Name string
	Addr netip.AddrPort
}

// A Discoverer announces this node and finds others without seeds (zero
// configuration on a LAN: package gossip/mdns). Gossip calls Start once, from New,
// after memberlist listens, and Close once, from Close.
type Discoverer interface {
	// Start announces self (this node's name and gossip address) and
	// calls found with every other node heard, from the Discoverer's own
	// goroutines, until Close; a node may be reported many times. found
	// does not block. Start returns an error only when nothing can be
	// announced (no interface holds self's address, a socket it cannot
	// open); it does not wait for any answer.
	Start(self Found, found func(Found)) error
	// Close stops announcing (saying goodbye where the protocol can) and
	// waits for the goroutines Start started: found is not called after
	// Close returns. Safe twice, and without Start.
	Close() error
}

// AnnounceOnly wraps d so that it announces this node but reports no one:
// a node given seeds (they win over discovery) still lets the nodes that
// have only discovery find the cluster through it.
func AnnounceOnly(d Discoverer) Discoverer { return announceOnly{d} }

type announceOnly struct{ d Discoverer }

var _ Discoverer = announceOnly{}

func (a announceOnly) Start(self Found, _ func(Found)) error {
	return a.d.Start(self, func(Found) {})
}

func (a announceOnly) Close() error { return a.d.Close() }

// foundBuffer is how many reports discoverLoop may fall behind by; more
// are dropped (the node is heard again at the next query).
const foundBuffer = 64

// startDiscovery starts opts.Discover, if set, and the loop that joins
// what it finds.
func (g *Gossip) startDiscovery() error {
	d := g.cfg.Discover
	if d == nil {
		return nil
	}
	self, err := netip.ParseAddrPort(g.addr)
	if err != nil {
		return err
	}
	ch := make(chan Found, foundBuffer)
	if err := d.Start(Found{Name: g.name, Addr: self}, func(f Found) {
		select {
		case ch <- f:
		default:
		}
	}); err != nil {
		return err
	}
	g.wg.Add(1)
	go g.discoverLoop(ch)
	return nil
}

// discoverLoop joins every node reported on ch that is not a live member.
// A node that cannot be joined (another gossip key: another cluster) is
// logged once per reason and tried again when it is heard again.
func (g *Gossip) discoverLoop(ch <-chan Found) {
	defer g.wg.Done()
	failed := map[netip.AddrPort]string{} // last error logged, by address
	for {
		var f Found
		select {
		case <-g.stop:
			return
		case f = <-ch:
		}
		addr := f.Addr.String()
		if f.Name == g.name || addr == g.addr || g.isLive(f) {
			continue
		}
		g.mu.Lock()
		done := g.closed || g.left
		g.mu.Unlock()
		if done {
			continue
		}
		n, err := g.ml.Join([]string{addr})
		if n == 0 {
			err = explainJoin([]string{addr}, err)
			g.mu.Lock()
			g.discoverErr = err.Error() // Stats.JoinError while this node is alone
			g.mu.Unlock()
			if failed[f.Addr] != err.Error() {
				failed[f.Addr] = err.Error()
				g.log.Warn("not joining a node found by discovery (a node with another gossip key is another cluster)",
					zap.String("found", f.Name), zap.String("addr", addr), zap.Error(err))
			}
			continue
		}
		delete(failed, f.Addr)
		g.log.Info("joined a node found by discovery", zap.String("found", f.Name), zap.String("addr", addr))
		g.introduce([]string{addr})
		g.hello()
		g.store.SyncJoined()
	}
}

// isLive reports whether f is a live member, by name or address.
func (g *Gossip) isLive(f Found) bool {
	for name, n := range g.nodeMap() {
		if name == f.Name || nodeAddr(n) == f.Addr {
			return true
		}
	}
	return false
}
