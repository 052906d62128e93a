package service

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/catalog"
)

// checkLoop probes this node's backends that have a check, every
// checkInterval, and gossips their health when it changes.
func (m *Manager) checkLoop() {
	t := time.NewTicker(checkInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		m.checkAll()
		if m.o.Checked != nil {
			m.o.Checked()
		}
	}
}

type probeTarget struct {
	network, key string
	v            catalog.Backend
}

// checkAll runs one round of health checks; the checker alone calls it.
func (m *Manager) checkAll() {
	g := m.o.Gossip
	self := g.Name()
	var targets []probeTarget
	for _, j := range m.o.Networks() {
		for _, e := range g.List(catalog.TableBackends, j.Name) {
			if e.Owner != self {
				continue
			}
			v, err := catalog.DecodeBackend(e.Value)
			if err != nil || v.Check == "" {
				continue
			}
			targets = append(targets, probeTarget{j.Name, e.Key, v})
		}
	}
	if len(targets) == 0 {
		return
	}
	results := make([]error, len(targets))
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	go func() {
		select {
		case <-m.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for i, pt := range targets {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = m.probe(ctx, pt.v) }()
	}
	wg.Wait()
	cancel()
	changed := false
	for i, pt := range targets {
		fk := pt.network + "\x00" + pt.key
		healthy := pt.v.Healthy
		if results[i] == nil {
			delete(m.fails, fk)
			healthy = true
		} else {
			m.fails[fk]++
			if m.fails[fk] >= checkFailures {
				healthy = false
			}
		}
		if healthy == pt.v.Healthy {
			continue
		}
		m.opMu.Lock()
		// Re-read: the entry may have changed while the probe ran.
		e, ok := g.Get(catalog.TableBackends, pt.network, pt.key)
		cur, err := catalog.DecodeBackend(e.Value) // no entry: an empty value, an error
		if ok && e.Owner == self && err == nil && cur.Check == pt.v.Check && cur.Healthy != healthy {
			cur.Healthy = healthy
			if err := m.putBackend(pt.network, pt.key, cur); err != nil {
				m.log.Warn("health", zap.String("backend", cur.Addr), zap.Error(err))
			} else {
				changed = true
				m.log.Info("backend health changed", zap.String("network", pt.network), zap.String("service", cur.Service),
					zap.String("backend", cur.Addr), zap.Bool("healthy", healthy), zap.NamedError("probe", results[i]))
			}
		}
		m.opMu.Unlock()
	}
	if changed {
		m.notify()
	}
}

// probe checks one backend with Options.Dial (through this node's
// attachment: the netstack in netstack mode, the host's sockets, which
// route the overlay to the device, otherwise).
func (m *Manager) probe(ctx context.Context, v catalog.Backend) error {
	dial := m.o.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, v.Check, v.Addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if v.Check != "udp" {
		return nil
	}
	// UDP: a datagram that draws an ICMP port unreachable (a read error)
	// fails; an answer or silence passes.
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	if _, err := conn.Write([]byte("overlayd health check\n")); err != nil {
		return err
	}
	var buf [512]byte
	if _, err := conn.Read(buf[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return err
	}
	return nil
}
