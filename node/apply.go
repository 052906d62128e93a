package node

// Apply: the node reconciled to a declarative description of networks,
// services and this node's backends ('overlayd apply -f FILE', and the
// networks and services sections of the configuration at start).

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/network"
	"github.com/overlayd/overlayd/service"
)

var _ api.Applier = (*Node)(nil)

// ApplyRequest turns the networks and services sections of cfg into an
// Apply request, keeping each entry's line in the file.
func ApplyRequest(cfg config.Config) api.Apply {
	req := api.Apply{Networks: []api.ApplyNetwork{}, Services: []api.ApplyService{}}
	for _, nw := range cfg.Networks {
		req.Networks = append(req.Networks, api.ApplyNetwork{Name: nw.Name, CIDRs: nw.CIDR, VNI: nw.VNI, Line: nw.Line()})
	}
	for _, s := range cfg.Services {
		as := api.ApplyService{Name: s.Name, Network: s.Network, VIP: s.VIP, Ports: s.Ports, Line: s.Line()}
		if s.BackendsGiven() {
			as.Backends = []api.ApplyBackend{}
			for _, b := range s.Backends {
				w := uint32(1)
				if b.Weight != nil {
					w = *b.Weight
				}
				as.Backends = append(as.Backends, api.ApplyBackend{Addr: b.Addr, Weight: w, Check: b.Check, ServicePort: b.ServicePort, Line: b.Line()})
			}
		}
		req.Services = append(req.Services, as)
	}
	for _, e := range cfg.Endpoints {
		req.Endpoints = append(req.Endpoints, api.ApplyEndpoint{Attach: api.Attach{
			Name: e.Name, Network: e.Network, Netns: e.Netns, IPs: e.IP, IfName: e.IfName, DefaultRoute: e.DefaultRoute,
		}, Line: e.Line()})
	}
	return req
}

// Apply creates the missing networks (with a CIDR) and joins them, creates
// the missing services (with ports) and makes this node's backends of each service
// that lists backends exactly those; it leaves alone everything req does
// not mention. It implements api.Applier. On an error, the changes made
// before it stay and are returned with it.
func (n *Node) Apply(ctx context.Context, req api.Apply) (api.ApplyResult, error) {
	res := api.ApplyResult{Changes: []string{}}
	if n.ctl == nil {
		return res, errNoGossip
	}
	s, err := n.svcState()
	if err != nil {
		return res, err
	}
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	changed := func(format string, args ...any) { res.Changes = append(res.Changes, fmt.Sprintf(format, args...)) }
	fail := func(err error) (api.ApplyResult, error) {
		if len(res.Changes) > 0 {
			return res, fmt.Errorf("%w (changed before it: %s)", err, strings.Join(res.Changes, "; "))
		}
		return res, err
	}
	for _, nw := range req.Networks {
		if err := n.ctl.nets.Declare(ctx, network.Declared{Name: nw.Name, CIDRs: nw.Prefixes(), VNI: nw.VNI, Line: nw.Line}, changed); err != nil {
			return fail(err)
		}
	}
	for _, e := range req.Endpoints {
		if err := n.declareEndpoint(ctx, e, changed); err != nil {
			return fail(err)
		}
	}
	for _, sv := range req.Services {
		if sv.Backends != nil { // ENDPOINT:PORT is the endpoint's address (one backend per family)
			var bs []api.ApplyBackend
			for _, b := range sv.Backends {
				as, err := n.backendAddrs(sv.Network, b.Addr)
				if err != nil {
					return fail(fault.AtLine(b.Line, fmt.Sprintf("service %s: backend %s", sv.Name, b.Addr), err))
				}
				for _, a := range as {
					b.Addr = a
					bs = append(bs, b)
				}
			}
			sv.Backends = append([]api.ApplyBackend{}, bs...)
		}
		if err := s.mgr.Declare(ctx, declared(sv), n.exp.has, changed); err != nil {
			return fail(err)
		}
	}
	return res, nil
}

// declareEndpoint attaches e unless it is attached already as asked.
func (n *Node) declareEndpoint(ctx context.Context, e api.ApplyEndpoint, changed func(string, ...any)) error {
	if n.eps == nil {
		return fault.AtLine(e.Line, "endpoint "+e.Name, errNoEndpoints)
	}
	_, existed := n.eps.Get(e.Name)
	in, err := n.Attach(ctx, e.Attach)
	if err != nil {
		return fault.AtLine(e.Line, "attach", err)
	}
	if existed != nil {
		changed("endpoint %s: attached %s on %s", in.Name, in.Addr, in.Network)
	}
	return nil
}

// declared converts an Apply's service for package service.
func declared(sv api.ApplyService) service.Declared {
	d := service.Declared{Name: sv.Name, Network: sv.Network, VIP: sv.VIP, Ports: sv.Ports, Line: sv.Line}
	if sv.Backends != nil {
		d.Backends = make([]service.DeclaredBackend, len(sv.Backends))
		for i, b := range sv.Backends {
			d.Backends[i] = service.DeclaredBackend(b)
		}
	}
	return d
}

// configApplyRetry is how often the configuration's networks and services
// are tried again at start while they cannot be applied yet (a network
// created by another node that gossip has not brought, say).
const configApplyRetry = 2 * time.Second

// startConfigApply applies the configuration's networks and services in
// the background, retrying until it succeeds or the node stops, then
// registers its exposes (expose.go).
func (n *Node) startConfigApply() {
	if n.ctl == nil || len(n.cfg.Networks)+len(n.cfg.Services)+len(n.cfg.Exposes)+len(n.cfg.Endpoints) == 0 {
		return
	}
	c := n.ctl
	req := ApplyRequest(n.cfg)
	log := n.log.Named("apply")
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		var last string
		for {
			ctx, cancel := context.WithTimeout(context.Background(), joinTimeout+5*time.Second)
			go func() {
				select {
				case <-c.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			res, err := n.Apply(ctx, req)
			cancel()
			for _, ch := range res.Changes {
				log.Info("configuration applied", zap.String("change", ch))
			}
			if err == nil {
				n.runExposes(log) // until the node stops
				return
			}
			if msg := err.Error(); msg != last {
				log.Warn("configuration not applied yet; retrying", zap.Error(err))
				last = msg
			}
			select {
			case <-c.stop:
				return
			case <-time.After(configApplyRetry):
			}
		}
	}()
}
