package node

// Apply: the node reconciled to a declarative description of networks,
// services and this node's backends ('overlayd apply -f FILE', and the
// networks and services sections of the configuration at start).

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/lb"
)

var _ api.Applier = (*Node)(nil)

// ApplyRequest turns the networks and services sections of cfg into an
// Apply request, keeping each entry's line in the file.
func ApplyRequest(cfg config.Config) api.Apply {
	req := api.Apply{Networks: []api.ApplyNetwork{}, Services: []api.ApplyService{}}
	for _, nw := range cfg.Networks {
		req.Networks = append(req.Networks, api.ApplyNetwork{Name: nw.Name, CIDR: nw.CIDR, VNI: nw.VNI, Line: nw.Line()})
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
	return req
}

// lineErr puts "line N: what: " before err, keeping its kind.
func lineErr(line int, what string, err error) error {
	prefix := what + ": "
	if line > 0 {
		prefix = "line " + strconv.Itoa(line) + ": " + prefix
	}
	return fmt.Errorf("%s%w", prefix, err)
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
	c := n.ctl
	for _, nw := range req.Networks {
		what := "network " + nw.Name
		known, ok := c.ipam.Network(nw.Name)
		switch {
		case !ok && nw.CIDR != "":
			info, err := c.createNetwork(ctx, api.CreateNetwork{Name: nw.Name, CIDR: nw.CIDR, VNI: nw.VNI})
			if err != nil {
				return fail(lineErr(nw.Line, what, err))
			}
			changed("network %s: created (%s, VNI %d)", nw.Name, info.CIDR, info.VNI)
		case ok && nw.CIDR != "" && known.CIDR.String() != nw.CIDR:
			return fail(lineErr(nw.Line, what, fault.Conflict("exists with CIDR %v, not %s", known.CIDR, nw.CIDR)))
		case ok && nw.VNI != nil && known.VNI != *nw.VNI:
			return fail(lineErr(nw.Line, what, fault.Conflict("exists with VNI %d, not %d", known.VNI, *nw.VNI)))
		}
		if slices.ContainsFunc(c.joinedList(), func(j joinedNet) bool { return j.Name == nw.Name }) {
			continue
		}
		info, err := c.joinNetwork(ctx, nw.Name)
		if err != nil {
			return fail(lineErr(nw.Line, what, err))
		}
		changed("network %s: joined with address %s", nw.Name, info.Addr)
	}
	for _, sv := range req.Services {
		what := "service " + sv.Name
		network, err := s.pickNetwork(sv.Network, sv.Name)
		if err != nil {
			return fail(lineErr(sv.Line, what, err))
		}
		se, ok := s.find(network, sv.Name)
		if !ok && len(sv.Ports) == 0 {
			return fail(lineErr(sv.Line, what, fault.NotFound("no service %q on network %q (yet); give its ports to create it here", sv.Name, network)))
		}
		if !ok {
			info, err := n.CreateService(ctx, api.CreateService{Name: sv.Name, Network: network, Ports: sv.Ports, VIP: sv.VIP})
			if err != nil {
				return fail(lineErr(sv.Line, what, err))
			}
			changed("service %s: created on network %s (VIP %s, ports %s)", sv.Name, network, info.VIP, strings.Join(info.Ports, " "))
			if se, ok = s.find(network, sv.Name); !ok {
				return fail(lineErr(sv.Line, what, errors.New("node: created but not found in the service table")))
			}
		} else if err := sameService(se, sv); err != nil {
			return fail(lineErr(sv.Line, what, err))
		}
		if sv.Backends == nil {
			continue
		}
		if err := n.applyBackends(ctx, s, network, se, sv, changed); err != nil {
			return fail(err)
		}
	}
	return res, nil
}

// sameService checks that an existing service is the one the request
// describes: a VIP or ports that differ are not changed by Apply.
func sameService(se svcEntry, sv api.ApplyService) error {
	hint := fmt.Sprintf("remove it with 'overlayd service rm %s' on node %s to change it", sv.Name, se.owner)
	if sv.VIP != "" && se.vip.String() != sv.VIP {
		return fault.Conflict("exists with VIP %v, not %s; %s", se.vip, sv.VIP, hint)
	}
	if len(sv.Ports) == 0 {
		return nil // created elsewhere; its ports are its creator's
	}
	var want []lb.PortProto
	for _, p := range sv.Ports {
		pp, err := parsePort(p)
		if err != nil {
			return fault.Invalid("%v", err)
		}
		want = append(want, pp)
	}
	have := slices.Clone(se.ports)
	cmp := func(a, b lb.PortProto) int { return strings.Compare(a.String(), b.String()) }
	slices.SortFunc(want, cmp)
	slices.SortFunc(have, cmp)
	if !slices.Equal(slices.Compact(want), have) {
		hs := make([]string, len(have))
		for i, p := range have {
			hs[i] = p.String()
		}
		return fault.Conflict("exists with ports %s, not %s; %s", strings.Join(hs, " "), strings.Join(sv.Ports, " "), hint)
	}
	return nil
}

// applyBackends makes this node's backends of se exactly sv.Backends.
func (n *Node) applyBackends(ctx context.Context, s *services, network string, se svcEntry, sv api.ApplyService, changed func(string, ...any)) error {
	var self netip.Addr
	for _, j := range s.c.joinedList() {
		if j.Name == network {
			self = j.Addr
		}
	}
	type want struct {
		b    api.ApplyBackend
		addr netip.AddrPort
	}
	var wants []want
	for _, b := range sv.Backends {
		addr := b.Addr
		if port, ok := strings.CutPrefix(addr, ":"); ok && self.IsValid() {
			addr = self.String() + ":" + port
		}
		a, err := netip.ParseAddrPort(addr)
		if err != nil || !a.Addr().Is4() || a.Port() == 0 {
			return lineErr(b.Line, "service "+sv.Name+": backend "+b.Addr, fault.Invalid("want an overlay IPv4 IP:PORT, or :PORT for this node's address"))
		}
		if b.Check == "none" {
			b.Check = ""
		}
		wants = append(wants, want{b, a})
	}
	selfName := s.c.g.Name()
	cur := map[netip.AddrPort]bkEntry{}
	for _, b := range se.backends {
		if b.owner == selfName {
			cur[b.addr] = b
		}
	}
	for _, w := range wants {
		c, exists := cur[w.addr]
		delete(cur, w.addr)
		samePort := w.b.ServicePort == 0 || c.v.Port == w.b.ServicePort
		if exists && c.v.Weight == w.b.Weight && c.v.Check == w.b.Check && samePort {
			continue
		}
		if _, err := n.AddBackend(ctx, api.AddBackend{Service: sv.Name, Network: network, Addr: w.addr.String(), Weight: w.b.Weight, Check: w.b.Check, ServicePort: w.b.ServicePort}); err != nil {
			return lineErr(w.b.Line, "service "+sv.Name+": backend "+w.addr.String(), err)
		}
		switch {
		case !exists:
			changed("service %s: backend %v added (weight %d, check %s)", sv.Name, w.addr, w.b.Weight, cmpOr(w.b.Check, "none"))
		case !samePort:
			changed("service %s: backend %v serves port %d (was %d)", sv.Name, w.addr, w.b.ServicePort, c.v.Port)
		case c.v.Weight != w.b.Weight && c.v.Check != w.b.Check:
			changed("service %s: backend %v weight %d → %d, check %s → %s", sv.Name, w.addr, c.v.Weight, w.b.Weight, cmpOr(c.v.Check, "none"), cmpOr(w.b.Check, "none"))
		case c.v.Weight != w.b.Weight:
			changed("service %s: backend %v weight %d → %d", sv.Name, w.addr, c.v.Weight, w.b.Weight)
		default:
			changed("service %s: backend %v check %s → %s", sv.Name, w.addr, cmpOr(c.v.Check, "none"), cmpOr(w.b.Check, "none"))
		}
	}
	stale := make([]netip.AddrPort, 0, len(cur))
	for a := range cur {
		stale = append(stale, a)
	}
	slices.SortFunc(stale, netip.AddrPort.Compare)
	for _, a := range stale {
		if n.exp.has(network, catalog.BackendKey(sv.Name, a)) {
			continue // an expose's backend, not the file's
		}
		if _, err := n.RemoveBackend(ctx, api.BackendRef{Service: sv.Name, Network: network, Addr: a.String()}, false); err != nil {
			return lineErr(sv.Line, "service "+sv.Name+": backend "+a.String(), err)
		}
		changed("service %s: backend %v removed", sv.Name, a)
	}
	return nil
}

// configApplyRetry is how often the configuration's networks and services
// are tried again at start while they cannot be applied yet (a network
// created by another node that gossip has not brought, say).
const configApplyRetry = 2 * time.Second

// startConfigApply applies the configuration's networks and services in
// the background, retrying until it succeeds or the node stops, then
// registers its exposes (expose.go).
func (n *Node) startConfigApply() {
	if n.ctl == nil || len(n.cfg.Networks)+len(n.cfg.Services)+len(n.cfg.Exposes) == 0 {
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
