package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/ipam"
)

// JoinTimeout bounds how long a join waits for an address range (the
// node waits as long for a VIP).
const JoinTimeout = 15 * time.Second

// unknownWait is how long a join waits for a network it does not know yet.
const unknownWait = 2 * time.Second

// Join attaches the node to a network: an address from IPAM (the one it
// already holds, after a restart), Apply gives it to the owner's router
// and attachment, and the node's route is announced.
func (m *Manager) Join(ctx context.Context, name string) (Info, error) {
	// A network created on another node a moment ago may still be on its
	// way here: wait for it without holding opMu.
	if _, ok := m.ipam.Network(name); !ok {
		m.waitNetwork(ctx, name)
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	nw, ok := m.ipam.Network(name)
	if !ok {
		return Info{}, fault.NotFound("unknown network %q; create it with 'overlayd network create %s CIDR' (or wait for gossip to bring it)", name, name)
	}
	m.mu.Lock()
	_, already := m.joined[name]
	m.mu.Unlock()
	if already {
		return m.info(nw), nil
	}
	if len(m.opts.Static) > 0 && nw.VNI == m.opts.StaticVNI {
		return Info{}, fault.Conflict("network %q has VNI %d, which this node's static network (--vni) uses", name, nw.VNI)
	}
	for _, j := range m.Joined() {
		if j.VNI == nw.VNI || ipam.Overlaps(j.CIDRs, nw.CIDRs) {
			return Info{}, fault.Conflict("network %q clashes with joined network %q (same VNI or overlapping CIDR)", name, j.Name)
		}
	}
	addrs, err := m.allocate(ctx, nw)
	if err != nil {
		return Info{}, err
	}
	j := Joined{Name: name, CIDRs: nw.CIDRs, VNI: nw.VNI, Addrs: addrs}
	m.mu.Lock()
	m.joined[name] = j
	m.mu.Unlock()
	if err := m.apply(); err != nil {
		m.mu.Lock()
		delete(m.joined, name)
		m.mu.Unlock()
		m.apply()
		m.release(j)
		return Info{}, fmt.Errorf("node: join %q: %w", name, err)
	}
	if err := m.saveJoined(); err != nil {
		return Info{}, err
	}
	if err := m.announce(j); err != nil {
		return Info{}, err
	}
	m.log.Info("joined network", zap.String("network", name), zap.Uint32("vni", j.VNI), zap.Stringer("addr", j))
	m.kick()
	return m.info(nw), nil
}

// allocate returns the node's addresses on nw, one per family: the ones
// it holds already (after a restart), or new ones. On an error it
// releases what it allocated.
func (m *Manager) allocate(ctx context.Context, nw ipam.Network) ([]netip.Addr, error) {
	held := map[ipam.Family]netip.Addr{}
	for _, l := range m.ipam.Leases(nw.Name) {
		if f := ipam.FamilyOf(l.Addr); l.Node == m.self && l.Owner == m.self && !held[f].IsValid() {
			held[f] = l.Addr
		}
	}
	var addrs, fresh []netip.Addr
	for _, f := range ipam.Families(nw.CIDRs) {
		a := held[f]
		if !a.IsValid() {
			actx, cancel := context.WithTimeout(ctx, JoinTimeout)
			var err error
			a, err = m.ipam.Allocate(actx, nw.Name, m.self, f)
			cancel()
			if err != nil {
				for _, a := range fresh {
					m.ipam.Release(nw.Name, a)
				}
			}
			what := ""
			if len(nw.CIDRs) > 1 {
				what = " " + f.String()
			}
			switch {
			case errors.Is(err, ipam.ErrExhausted):
				return nil, fault.Conflict("network %q has no free%s address left", nw.Name, what)
			case err != nil:
				return nil, fault.Unavailable("network %q: no%s address yet (%v); is the node that owns its free addresses up?", nw.Name, what, err)
			}
			fresh = append(fresh, a)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// release releases j's addresses.
func (m *Manager) release(j Joined) {
	for _, a := range j.Addrs {
		if err := m.ipam.Release(j.Name, a); err != nil {
			m.log.Warn("release address", zap.String("network", j.Name), zap.Stringer("addr", a), zap.Error(err))
		}
	}
}

// apply is Options.Apply.
func (m *Manager) apply() error {
	if m.opts.Apply == nil {
		return nil
	}
	return m.opts.Apply()
}

// waitNetwork waits, at most unknownWait and while ctx lasts, for the
// definition of network name to arrive, woken by the networks table's
// changes.
func (m *Manager) waitNetwork(ctx context.Context, name string) {
	ch, cancel := ipam.WatchNetworks(m.g)
	defer cancel()
	t := time.NewTimer(unknownWait)
	defer t.Stop()
	if h := m.hooks.waitingNetwork; h != nil {
		h(name)
	}
	for {
		if _, ok := m.ipam.Network(name); ok {
			return
		}
		select {
		case _, open := <-ch:
			if !open {
				return // gossip closed
			}
		case <-t.C:
			return
		case <-ctx.Done():
			return
		case <-m.stop:
			return
		}
	}
}

// Leave detaches the node: its route is withdrawn, its address released.
// The node stays a gossip participant of the network so that the address
// ranges it owns stay served.
func (m *Manager) Leave(name string) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	j, ok := m.joined[name]
	m.mu.Unlock()
	if !ok {
		if _, known := m.ipam.Network(name); !known {
			return fault.NotFound("unknown network %q", name)
		}
		return fault.Conflict("this node has not joined network %q", name)
	}
	if err := m.g.Delete(catalog.TableRoutes, name, catalog.RouteKey(m.self)); err != nil && !errors.Is(err, gossip.ErrNotFound) {
		return fmt.Errorf("node: leave %q: %w", name, err)
	}
	m.mu.Lock()
	delete(m.joined, name)
	if cancel := m.watches[name]; cancel != nil {
		cancel()
		delete(m.watches, name)
	}
	m.mu.Unlock()
	if err := m.apply(); err != nil {
		return fmt.Errorf("node: leave %q: %w", name, err)
	}
	m.release(j)
	if err := m.saveJoined(); err != nil {
		return err
	}
	m.log.Info("left network", zap.String("network", name))
	m.kick()
	return nil
}

// announce makes the node a participant of j's network, writes its route
// entry and watches the network's routes.
func (m *Manager) announce(j Joined) error {
	if err := m.g.JoinNetwork(j.Name); err != nil {
		return fmt.Errorf("node: network %q: %w", j.Name, err)
	}
	rt := catalog.Route{Prefixes: j.Host(), VTEP: m.opts.VTEP}
	if err := m.g.Put(catalog.TableRoutes, j.Name, catalog.RouteKey(m.self), rt.Encode()); err != nil {
		return fmt.Errorf("node: network %q: announce route: %w", j.Name, err)
	}
	if m.opts.Kick == nil {
		return nil
	}
	// The routes, and the leases and ranges that say which of them to
	// accept (Learned): a lease arriving after its route must not wait
	// for the next tick.
	stop := catalog.Watch(m.g, j.Name, m.opts.Kick, append([]string{catalog.TableRoutes}, ipam.WatchTables()...)...)
	m.mu.Lock()
	if old := m.watches[j.Name]; old != nil {
		old()
	}
	m.watches[j.Name] = stop
	m.mu.Unlock()
	return nil
}
