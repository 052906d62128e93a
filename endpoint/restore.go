package endpoint

import (
	"errors"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/internal/fault"
)

// restore brings back what endpoints.json holds: an attached endpoint's
// device is re-adopted, carried and announced again; an attach or detach
// that a crash cut short is undone (or finished); a record whose network
// this node left goes. Then the node's endpoint leases that nothing holds
// any more (a crash between a lease and its record) are released.
func (m *Manager) restore() {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	st := m.load()
	joined := map[string]Net{}
	for _, n := range m.o.Networks() {
		joined[n.Name] = n
	}
	for _, r := range st.Reservations {
		if nw, ok := joined[r.Network]; ok && slices.Contains(nw.CIDRs, r.CIDR.Masked()) {
			m.res[resKey{r.Network, r.Addr}] = Reservation{Network: r.Network, Addr: netipPrefix(r.Addr, r.CIDR), DNS: dnsAddr(r.CIDR)}
		}
	}
	for _, rec := range st.Endpoints {
		nw, on := joined[rec.Network]
		switch {
		case rec.Phase != phaseAttached:
			m.log.Info("undo an interrupted "+strings.TrimSuffix(rec.Phase, "ing")+"ing", zap.String("endpoint", rec.Name))
			m.undo(rec, nil)
		case !on || !slices.Equal(nw.CIDRs, rec.cidrs()) || nw.VNI != rec.VNI:
			m.log.Warn("endpoint's network is not joined as it was; detached", zap.String("endpoint", rec.Name), zap.String("network", rec.Network))
			m.undo(rec, nil)
		default:
			e := &endpoint{rec: rec}
			m.mu.Lock()
			m.eps[rec.Name] = e
			m.mu.Unlock()
			m.readopt(e)
		}
	}
	m.releaseOrphans(joined)
	if err := m.save(); err != nil {
		m.log.Warn("keep the endpoints", zap.Error(err))
	}
	m.changed()
}

// readopt re-opens e's persistent device and carries it again; a
// namespace or device gone detaches e, another error is kept in e (and
// retried by the checks). m.opMu is held.
func (m *Manager) readopt(e *endpoint) {
	rec := e.rec
	for _, a := range rec.addrs() {
		if ls, held := m.o.IPAM.Lookup(rec.Network, a); held && (ls.Node != m.o.Self || ls.Owner != m.key(rec.Name)) {
			m.log.Warn("endpoint's address is leased to another now; detached", zap.String("endpoint", rec.Name),
				zap.Stringer("addr", a), zap.String("holder", ls.Owner), zap.String("node", ls.Node))
			m.forget(rec)
			return
		} else if !held {
			if err := m.o.IPAM.Claim(rec.Network, a, m.key(rec.Name)); err != nil {
				m.setErr(e, "its lease is not back yet: "+err.Error()) // the ranges may still be coming back from the peers: retried
				return
			}
		}
	}
	dev, err := m.opener(rec).Adopt(rec.Netns, rec.IfName, m.log.With(zap.String("endpoint", rec.Name)))
	if errors.Is(err, fault.ErrNotFound) {
		m.log.Info("endpoint's namespace or device is gone; detached", zap.String("endpoint", rec.Name), zap.Error(err))
		m.forget(rec)
		return
	}
	if err == nil {
		err = m.carry(rec, dev)
		if err != nil {
			dev.Close() // persistent: it stays for the retry
		}
	}
	if err != nil {
		m.setErr(e, err.Error())
		m.log.Warn("re-adopt endpoint", zap.String("endpoint", rec.Name), zap.Error(err))
		return
	}
	m.mu.Lock()
	e.dev, e.err = dev, ""
	m.mu.Unlock()
	m.log.Info("re-adopted", zap.String("endpoint", rec.Name), zap.Stringers("addr", rec.addrs()))
}

// forget undoes rec and drops its endpoint. m.opMu is held.
func (m *Manager) forget(rec Record) {
	m.undo(rec, nil)
	m.mu.Lock()
	delete(m.eps, rec.Name)
	m.mu.Unlock()
}

func (m *Manager) setErr(e *endpoint, s string) {
	m.mu.Lock()
	e.err = s
	m.mu.Unlock()
}

// releaseOrphans releases the leases of joined that this node holds for
// an endpoint or reservation it does not have. m.opMu is held.
func (m *Manager) releaseOrphans(joined map[string]Net) {
	prefix := m.o.Self + "/"
	for name := range joined {
		for _, ls := range m.o.IPAM.Leases(name) {
			if ls.Node != m.o.Self || !strings.HasPrefix(ls.Owner, prefix) {
				continue
			}
			m.mu.Lock()
			_, reserved := m.res[resKey{name, ls.Addr}]
			held := false
			for _, e := range m.eps {
				held = held || (e.rec.Network == name && e.rec.hasAddr(ls.Addr) && m.key(e.rec.Name) == ls.Owner)
			}
			m.mu.Unlock()
			if (ls.Owner == m.reservedOwner() && reserved) || held {
				continue
			}
			m.log.Info("release an address no endpoint holds", zap.String("network", name), zap.Stringer("addr", ls.Addr), zap.String("owner", ls.Owner))
			if err := m.o.IPAM.Release(name, ls.Addr); err != nil {
				m.log.Warn("release address", zap.Stringer("addr", ls.Addr), zap.Error(err))
			}
		}
	}
}

// check detaches the endpoints whose namespace went away and retries the
// re-adoptions that failed.
func (m *Manager) check() {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	var gone []string
	var retry []*endpoint
	for _, e := range m.eps {
		switch {
		case e.dev != nil && e.dev.Gone():
			gone = append(gone, e.rec.Name)
		case e.dev == nil:
			retry = append(retry, e)
		}
	}
	m.mu.Unlock()
	for _, name := range gone {
		if err := m.detach(name, "namespace gone; detached"); err != nil {
			m.log.Warn("detach", zap.String("endpoint", name), zap.Error(err))
		}
	}
	changed := false
	for _, e := range retry {
		m.readopt(e)
		m.mu.Lock()
		changed = changed || e.dev != nil || m.eps[e.rec.Name] == nil
		m.mu.Unlock()
	}
	if changed {
		if err := m.save(); err != nil {
			m.log.Warn("keep the endpoints", zap.Error(err))
		}
		m.changed()
	}
}
