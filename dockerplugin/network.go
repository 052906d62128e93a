package dockerplugin

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/fault"
)

// createNetwork takes a Docker network on: its subnet is the overlay
// network's CIDR and its name (or -o overlayd.network=NAME) the overlay
// network's name, created through gossip or joined if it exists. Docker
// does not pass the network's name to the driver, and stores the network
// only once this returns; so without the option the name is learned from
// the Docker API just after, and the IPAM and endpoint calls that need
// the overlay network wait for it.
func (p *Plugin) createNetwork(ctx context.Context, req createNetworkRequest) (any, error) {
	if err := checkID("NetworkID", req.NetworkID); err != nil {
		return nil, err
	}
	if len(req.IPv4Data) > 1 || len(req.IPv6Data) > 1 || len(req.IPv4Data)+len(req.IPv6Data) == 0 {
		return nil, fault.Invalid("overlayd: a network takes one IPv4 subnet, one IPv6 subnet (--ipv6) or one of each (it has %d and %d); create it with --subnet CIDR [--ipv6 --subnet CIDR6] --ipam-driver overlayd", len(req.IPv4Data), len(req.IPv6Data))
	}
	var cidrs []netip.Prefix
	for _, d := range append(append([]ipamData{}, req.IPv4Data...), req.IPv6Data...) {
		c, err := parsePool(d.Pool)
		if err != nil {
			return nil, err
		}
		cidrs = append(cidrs, c)
	}
	if len(req.IPv4Data) == 1 && !cidrs[0].Addr().Is4() || len(req.IPv6Data) == 1 && !cidrs[len(cidrs)-1].Addr().Is6() {
		return nil, fault.Invalid("overlayd: the IPv4 and IPv6 subnets are of the wrong family (%s)", ipCIDRs(cidrs))
	}
	cidr, cidr6 := cidrs[0], netip.Prefix{}
	if len(cidrs) == 2 {
		cidr6 = cidrs[1]
	}
	opts, err := networkOptions(req.Options)
	if err != nil {
		return nil, err
	}
	name := opts[optNetwork]
	if name != "" {
		if name, err = overlayName(name); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	if n, ok := p.networks[req.NetworkID]; ok {
		p.mu.Unlock()
		if n.CIDR != cidr || n.CIDR6 != cidr6 {
			return nil, fault.Conflict("overlayd: network %s exists with subnet %s, not %s", short(req.NetworkID), ipCIDRs(n.cidrs()), ipCIDRs(cidrs))
		}
		return empty{}, nil
	}
	n := &network{ID: req.NetworkID, CIDR: cidr, CIDR6: cidr6, IfName: opts[optIfName], ready: make(chan struct{})}
	p.networks[req.NetworkID] = n
	p.mu.Unlock()

	if name != "" {
		joined, err := p.ensure(ctx, name, cidrs)
		p.mu.Lock()
		if err != nil {
			delete(p.networks, req.NetworkID)
			n.err = err
			close(n.ready)
			p.mu.Unlock()
			return nil, err
		}
		n.Overlay, n.Joined = name, joined
		close(n.ready)
		p.saveLocked()
		p.mu.Unlock()
		p.log.Info("docker network on overlay network", zap.String("docker_network", short(n.ID)), zap.String("network", name), zap.String("cidr", ipCIDRs(cidrs)))
		return empty{}, nil
	}
	if p.names == nil {
		p.mu.Lock()
		delete(p.networks, req.NetworkID)
		p.mu.Unlock()
		return nil, fault.Invalid("overlayd: without the Docker API the plugin cannot learn the network's name; create it with -o %s=NAME", optNetwork)
	}
	p.mu.Lock()
	p.resolveLocked(n)
	p.saveLocked()
	p.mu.Unlock()
	return empty{}, nil
}

// resolveLocked starts learning n's name from the Docker API and taking
// its overlay network on.
func (p *Plugin) resolveLocked(n *network) {
	ctx, cancel := context.WithTimeout(p.ctx, p.resolveTimeout)
	n.cancel = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer cancel()
		name, joined, err := p.resolve(ctx, n)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.networks[n.ID] != n { // deleted meanwhile
			n.err = fault.NotFound("overlayd: Docker network %s was deleted", short(n.ID))
			close(n.ready)
			if err == nil && joined {
				p.wg.Add(1)
				go func() { // not under p.mu: the node may take a while
					defer p.wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					p.b.LeaveNetwork(ctx, name)
				}()
			}
			return
		}
		if err != nil {
			n.err = err
			p.log.Error("docker network has no overlay network", zap.String("docker_network", short(n.ID)), zap.Error(err))
		} else {
			n.Overlay, n.Joined = name, joined
			p.saveLocked()
			p.log.Info("docker network on overlay network", zap.String("docker_network", short(n.ID)), zap.String("network", name), zap.String("cidr", ipCIDRs(n.cidrs())))
		}
		close(n.ready)
	}()
}

// resolve waits for Docker to store network n, then takes on the overlay
// network of its name.
func (p *Plugin) resolve(ctx context.Context, n *network) (name string, joined bool, err error) {
	wait := 10 * time.Millisecond
	for {
		name, err = p.names.NetworkName(ctx, n.ID)
		if err == nil {
			break
		}
		if !errors.Is(err, fault.ErrNotFound) || ctx.Err() != nil {
			return "", false, fmt.Errorf("overlayd: the name of Docker network %s: %w; or create it with -o %s=NAME", short(n.ID), err, optNetwork)
		}
		select {
		case <-ctx.Done():
			return "", false, fmt.Errorf("overlayd: Docker did not show network %s within %v; create it with -o %s=NAME", short(n.ID), p.resolveTimeout, optNetwork)
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
	if name, err = overlayName(name); err != nil {
		return "", false, err
	}
	joined, err = p.ensure(ctx, name, n.cidrs())
	return name, joined, err
}

// ensure creates the overlay network name with cidrs, or finds it, and
// joins it; joined says this call joined it (the node was not attached).
func (p *Plugin) ensure(ctx context.Context, name string, cidrs []netip.Prefix) (joined bool, err error) {
	nets, err := p.b.Networks(ctx)
	if err != nil {
		return false, err
	}
	found := false
	for _, n := range nets {
		if n.Name != name {
			continue
		}
		have := n.CIDRs
		if len(have) == 0 { // a node without IPv6
			have = []string{n.CIDR}
		}
		if strings.Join(have, ",") != ipCIDRs(cidrs) {
			return false, fault.Conflict("overlayd: overlay network %s has subnet %s, not %s; give the Docker network that subnet, or another name with -o %s=NAME", name, strings.Join(have, ","), ipCIDRs(cidrs), optNetwork)
		}
		if n.Joined {
			return false, nil
		}
		found = true
	}
	if !found {
		req := api.CreateNetwork{Name: name}
		for _, c := range cidrs {
			req.CIDRs = append(req.CIDRs, c.String())
		}
		_, err := p.b.CreateNetwork(ctx, req)
		// Another node may have created it a moment ago: join that one.
		if err != nil && !errors.Is(err, fault.ErrConflict) {
			return false, err
		}
	}
	if _, err := p.b.JoinNetwork(ctx, name); err != nil {
		return false, err
	}
	return true, nil
}

// deleteNetwork forgets a Docker network and leaves its overlay network
// if the plugin joined it and no other Docker network uses it. The
// overlay network itself stays: other hosts may be on it.
func (p *Plugin) deleteNetwork(ctx context.Context, req networkRequest) (any, error) {
	if err := checkID("NetworkID", req.NetworkID); err != nil {
		return nil, err
	}
	p.mu.Lock()
	n, ok := p.networks[req.NetworkID]
	if !ok {
		p.mu.Unlock()
		return empty{}, nil // deleting twice, or after a lost state: done
	}
	delete(p.networks, req.NetworkID)
	if n.cancel != nil {
		n.cancel()
	}
	leave := n.Joined && n.Overlay != ""
	for _, o := range p.networks {
		if o.Overlay == n.Overlay {
			leave = false
		}
	}
	p.saveLocked()
	p.mu.Unlock()
	if leave {
		if err := p.b.LeaveNetwork(ctx, n.Overlay); err != nil && !errors.Is(err, fault.ErrNotFound) {
			return nil, err
		}
		p.log.Info("left overlay network with its docker network", zap.String("network", n.Overlay), zap.String("docker_network", short(n.ID)))
	}
	return empty{}, nil
}

// overlay returns the overlay network of the Docker network id, waiting
// for its name if it is being learned.
func (p *Plugin) overlay(ctx context.Context, id string) (*network, error) {
	p.mu.Lock()
	n, ok := p.networks[id]
	p.mu.Unlock()
	if !ok {
		return nil, fault.NotFound("overlayd: Docker network %s is not known to this overlayd (was it created while overlayd ran without its state?); remove it and create it again", short(id))
	}
	if err := p.waitReady(ctx, n); err != nil {
		return nil, err
	}
	return n, nil
}

// waitReady waits until n's overlay network is known.
func (p *Plugin) waitReady(ctx context.Context, n *network) error {
	ctx, cancel := context.WithTimeout(ctx, p.networkWait)
	defer cancel()
	select {
	case <-n.ready:
	case <-ctx.Done():
		return fault.Unavailable("overlayd: the overlay network of Docker network %s is not known yet; try again", short(n.ID))
	}
	if n.err != nil {
		return n.err
	}
	return nil
}

// networkOptions returns the overlayd.* -o options, refusing unknown ones.
func networkOptions(opts map[string]any) (map[string]string, error) {
	out := map[string]string{}
	generic, _ := opts[genericOption].(map[string]any)
	keys := make([]string, 0, len(generic))
	for k := range generic {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !strings.HasPrefix(k, "overlayd.") {
			continue // another tool's label
		}
		v, ok := generic[k].(string)
		if !ok {
			return nil, fault.Invalid("overlayd: option %s is not a string", k)
		}
		switch k {
		case optNetwork:
		case optIfName:
			if !validIfName(v) {
				return nil, fault.Invalid("overlayd: -o %s=%q: want an interface name of 1 to 15 letters, digits, '-' or '_'", k, v)
			}
		default:
			return nil, fault.Invalid("overlayd: unknown option -o %s; the options are %s and %s", k, optNetwork, optIfName)
		}
		out[k] = v
	}
	return out, nil
}

// parsePool parses a Docker subnet: IPv4, at most /30, or IPv6, at most
// /122 (the node checks the rest).
func parsePool(s string) (netip.Prefix, error) {
	cidr, err := netip.ParsePrefix(s)
	if err != nil || cidr.Addr().Zone() != "" || cidr.Addr().Is4In6() {
		return netip.Prefix{}, fault.Invalid("overlayd: subnet %q: want a CIDR such as 10.30.0.0/16 or fd00:30::/64", s)
	}
	if cidr.Addr().Is4() && cidr.Bits() > 30 || cidr.Addr().Is6() && cidr.Bits() > 122 {
		return netip.Prefix{}, fault.Invalid("overlayd: subnet %s is too small; give a /30 or larger (IPv6: a /122 or larger, a /64 is usual)", cidr)
	}
	return cidr.Masked(), nil
}

// ipCIDRs is cidrs as "10.30.0.0/16,fd00:30::/64".
func ipCIDRs(cidrs []netip.Prefix) string {
	s := make([]string, len(cidrs))
	for i, c := range cidrs {
		s[i] = c.String()
	}
	return strings.Join(s, ",")
}

// overlayName turns a Docker name into a DNS label (the overlay network's
// name is the second label of NAME.NET.overlay): lower case, any other
// character than a letter, digit or '-' becomes '-'.
func overlayName(s string) (string, error) {
	l := label(s)
	if l == "" {
		return "", fault.Invalid("overlayd: network name %q has no letter or digit; give -o %s=NAME", s, optNetwork)
	}
	return l, nil
}

// label makes s a DNS label ("" if nothing of it is left).
func label(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			b[i] = '-'
		}
	}
	l := strings.Trim(string(b), "-")
	if len(l) > 63 {
		l = strings.TrimRight(l[:63], "-")
	}
	return l
}

func validIfName(s string) bool {
	if s == "" || len(s) > 15 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// short is an ID's short form, as docker prints it.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
