package node

// Exposes: a program on this host becomes a backend of an overlay
// service (--expose web:80/tcp=127.0.0.1:3000). In netstack mode the node
// listens on its overlay address at the service's port and splices each
// connection to the program; in tun and tap modes the program is already
// reachable on the overlay address, so only the backend is registered,
// at the program's port. Either way the backend is added through the
// same service-table code as 'overlayd service add-backend'.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/door"
	"github.com/overlayd/overlayd/internal/fault"
)

// exposeState is what the exposes hold.
type exposeState struct {
	mu   sync.Mutex      // guards keys
	keys map[string]bool // network + "/" + backend key: backends the exposes registered
}

func (e *exposeState) add(network, key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.keys == nil {
		e.keys = map[string]bool{}
	}
	e.keys[network+"/"+key] = true
}

// has reports whether an expose registered the backend (Apply leaves it).
func (e *exposeState) has(network, key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.keys[network+"/"+key]
}

// expose registers one expose, a backend at this node's address of each
// family the service has a VIP of; in netstack mode it returns the doors
// it started (the caller closes them).
func (n *Node) expose(ctx context.Context, e config.Expose) ([]*door.Exposer, error) {
	s, err := n.svcState()
	if err != nil {
		return nil, err
	}
	name, network := e.ServiceNetwork()
	if network == "" {
		for _, sv := range n.cfg.Services {
			if sv.Name == name {
				network = sv.Network
			}
		}
	}
	if network, err = s.mgr.PickNetwork(network, name); err != nil {
		return nil, err
	}
	if !s.mgr.Has(network, name) {
		return nil, fault.NotFound("no service %q on network %q (yet)", name, network)
	}
	si, err := s.mgr.Service(network, name)
	if err != nil {
		return nil, err
	}
	// This node's address of each family the service has a VIP of: on a
	// dual-stack network the program serves both VIPs.
	var selves []netip.Addr
	for _, j := range n.ctl.joinedList() {
		if j.Name != network {
			continue
		}
		for _, a := range j.Addrs {
			for _, v := range si.VIPs {
				if vip, err := netip.ParseAddr(v); err == nil && vip.Is4() == a.Is4() {
					selves = append(selves, a)
				}
			}
		}
	}
	if len(selves) == 0 {
		return nil, fault.Conflict("this node has no address on network %q of the family of service %q's VIP (%s)", network, name, strings.Join(si.VIPs, ","))
	}
	var doors []*door.Exposer
	closeAll := func() {
		for _, d := range doors {
			d.Close()
		}
	}
	for _, self := range selves {
		ex, err := n.exposeAt(ctx, e, name, network, self)
		if err != nil {
			closeAll()
			return nil, err
		}
		if ex != nil {
			doors = append(doors, ex)
		}
	}
	return doors, nil
}

// exposeAt registers expose e of service name on network at this node's
// address self; in netstack mode it returns the door it started.
func (n *Node) exposeAt(ctx context.Context, e config.Expose, name, network string, self netip.Addr) (*door.Exposer, error) {
	target := netip.MustParseAddrPort(e.Target)
	port := target.Port()
	var ex *door.Exposer
	if n.ns != nil {
		port = e.PortNumber()
		ln, err := n.ns.Listen("tcp", netip.AddrPortFrom(self, port).String())
		if err != nil {
			return nil, fmt.Errorf("node: expose %s: listen on %v: %w", e, netip.AddrPortFrom(self, port), err)
		}
		if ex, err = door.NewExpose(ln, e.Target, door.Options{Dialer: &net.Dialer{}, Logger: n.log}); err != nil {
			ln.Close()
			return nil, err
		}
		if err := ex.Start(ctx); err != nil {
			ex.Close()
			return nil, err
		}
	}
	addr := netip.AddrPortFrom(self, port)
	if _, err := n.AddBackend(ctx, api.AddBackend{Service: name, Network: network, Addr: addr.String(), Weight: 1, ServicePort: e.PortNumber()}); err != nil {
		if ex != nil {
			ex.Close()
		}
		return nil, err
	}
	n.exp.add(network, catalog.BackendKey(name, addr))
	n.log.Info("exposed", zap.String("network", network), zap.String("service", name), zap.Stringer("backend", addr), zap.String("target", e.Target))
	return ex, nil
}

// runExposes registers the configuration's exposes, retrying those that
// cannot be yet every configApplyRetry, and closes their doors when the
// node stops. Runs on the control plane's wait group.
func (n *Node) runExposes(log *zap.Logger) {
	c := n.ctl
	var doors []*door.Exposer
	defer func() {
		for _, d := range doors {
			d.Close()
		}
	}()
	pending := append([]config.Expose(nil), n.cfg.Exposes...)
	last := map[string]string{}
	for len(pending) > 0 {
		var still []config.Expose
		for _, e := range pending {
			ctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
			ds, err := n.expose(ctx, e)
			cancel()
			if err != nil {
				if msg := err.Error(); last[e.String()] != msg {
					log.Warn("expose not registered yet; retrying", zap.String("expose", e.String()), zap.Error(err))
					last[e.String()] = msg
				}
				still = append(still, e)
				continue
			}
			doors = append(doors, ds...)
		}
		pending = still
		if len(pending) == 0 {
			break
		}
		select {
		case <-c.stop:
			return
		case <-time.After(configApplyRetry):
		}
	}
	<-c.stop
}
