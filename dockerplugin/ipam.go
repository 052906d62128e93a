package dockerplugin

import (
	"context"
	"errors"
	"net/netip"
	"strings"

	"github.com/overlayd/overlayd/internal/fault"
)

// requestPool answers a Docker network's subnet. The pool's ID is its
// CIDR: Docker asks for the pool before the network exists (the driver
// learns its name later) and never asks again after a restart of the
// plugin, so the ID must carry all the plugin needs.
func (p *Plugin) requestPool(_ context.Context, req requestPoolRequest) (any, error) {
	if req.Pool == "" {
		if req.V6 {
			return nil, fault.Invalid("overlayd: give the network's IPv6 subnet too: docker network create -d overlayd --ipam-driver overlayd --subnet CIDR --ipv6 --subnet CIDR6 NAME")
		}
		// Docker 20.10 asks for an IPv4 pool of a network created with
		// --ipv6 and an IPv6 subnet alone too.
		return nil, fault.Invalid("overlayd: give the network's IPv4 subnet (Docker asks for an IPv4 pool of every network, also of one with --ipv6): docker network create -d overlayd --ipam-driver overlayd --subnet CIDR [--ipv6 --subnet CIDR6] NAME")
	}
	if req.SubPool != "" {
		return nil, fault.Invalid("overlayd: --ip-range is not supported: the overlay network hands out addresses from its whole subnet")
	}
	for k := range req.Options {
		return nil, fault.Invalid("overlayd: the IPAM driver takes no options (got --ipam-opt %s)", k)
	}
	cidr, err := parsePool(req.Pool)
	if err != nil {
		return nil, err
	}
	if req.V6 != cidr.Addr().Is6() {
		return nil, fault.Invalid("overlayd: subnet %s is not of the family Docker asks a pool of (IPv6: %v)", cidr, req.V6)
	}
	return requestPoolResponse{PoolID: cidr.String(), Pool: cidr.String(), Data: map[string]string{}}, nil
}

// releasePool has nothing to release: the overlay network's addresses go
// with its endpoints, and the network with DeleteNetwork.
func (p *Plugin) releasePool(_ context.Context, req releasePoolRequest) (any, error) {
	if _, err := poolOf(req.PoolID); err != nil {
		return nil, err
	}
	return empty{}, nil
}

// requestAddress leases an address on the overlay network of the pool
// (the one asked for, or any free one) for an endpoint about to be
// created; Attach takes the lease over.
//
// The gateway: Docker asks for one before it creates the network, but an
// overlay endpoint has no gateway (Join gives none, so containers get no
// default route, only the route to the subnet). It is answered with the
// pool's network address, which is never a host's, so it can shadow no
// lease and not the network's DNS address; a --gateway given is answered
// as given and reserves nothing.
func (p *Plugin) requestAddress(ctx context.Context, req requestAddressRequest) (any, error) {
	cidr, err := poolOf(req.PoolID)
	if err != nil {
		return nil, err
	}
	var want netip.Addr
	if req.Address != "" {
		if want, err = netip.ParseAddr(req.Address); err != nil || !cidr.Contains(want) {
			return nil, fault.Invalid("overlayd: address %q is not an address of the subnet %s", req.Address, cidr)
		}
	}
	if req.Options[requestType] == gatewayType {
		if !want.IsValid() {
			want = cidr.Addr()
		}
		return requestAddressResponse{Address: netip.PrefixFrom(want, cidr.Bits()).String(), Data: map[string]string{}}, nil
	}
	n, err := p.networkOfPool(ctx, cidr)
	if err != nil {
		return nil, err
	}
	addr := ""
	if want.IsValid() {
		addr = want.String()
	}
	family := 4
	if cidr.Addr().Is6() {
		family = 6
	}
	res, err := p.b.Reserve(ctx, n, addr, family)
	if err != nil {
		return nil, err
	}
	got, err := netip.ParsePrefix(res.Addr)
	if err != nil {
		if a, aerr := netip.ParseAddr(res.Addr); aerr == nil {
			got = netip.PrefixFrom(a, cidr.Bits())
		} else {
			return nil, fault.Errorf(fault.ErrUnavailable, "overlayd: the node reserved an address it calls %q", res.Addr)
		}
	}
	return requestAddressResponse{Address: got.String(), Data: map[string]string{}}, nil
}

// releaseAddress releases a reservation the endpoint did not take over
// (an endpoint's own lease goes with its detach). The gateway answer and
// addresses of a network already gone are released already.
func (p *Plugin) releaseAddress(ctx context.Context, req releaseAddressRequest) (any, error) {
	cidr, err := poolOf(req.PoolID)
	if err != nil {
		return nil, err
	}
	a, err := netip.ParseAddr(req.Address)
	if err != nil || !cidr.Contains(a) {
		return nil, fault.Invalid("overlayd: address %q is not an address of the subnet %s", req.Address, cidr)
	}
	if a == cidr.Addr() {
		return empty{}, nil
	}
	n, err := p.networkOfPool(ctx, cidr)
	if errors.Is(err, fault.ErrNotFound) {
		return empty{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := p.b.Unreserve(ctx, n, a.String()); err != nil && !errors.Is(err, fault.ErrNotFound) {
		return nil, err
	}
	return empty{}, nil
}

// networkOfPool returns the overlay network of the Docker network on this
// host with subnet cidr, waiting for its name if it is being learned.
func (p *Plugin) networkOfPool(ctx context.Context, cidr netip.Prefix) (string, error) {
	p.mu.Lock()
	var match []*network
	for _, n := range p.networks {
		if n.hasPool(cidr) {
			match = append(match, n)
		}
	}
	p.mu.Unlock()
	if len(match) == 0 {
		return "", fault.NotFound("overlayd: no Docker network of this driver has subnet %s; create it with docker network create -d overlayd --ipam-driver overlayd --subnet %s NAME", cidr, cidr)
	}
	var name string
	for _, n := range match {
		if err := p.waitReady(ctx, n); err != nil {
			return "", err
		}
		if name != "" && n.Overlay != name {
			return "", fault.Conflict("overlayd: Docker networks on overlay networks %s and %s both have subnet %s; give each its own subnet", name, n.Overlay, cidr)
		}
		name = n.Overlay
	}
	return name, nil
}

// poolOf parses a pool ID (its CIDR, see requestPool).
func poolOf(id string) (netip.Prefix, error) {
	cidr, err := netip.ParsePrefix(strings.TrimSpace(id))
	if err != nil || cidr.Addr().Zone() != "" || cidr.Addr().Is4In6() || cidr.Masked() != cidr {
		return netip.Prefix{}, fault.NotFound("overlayd: no pool %q (this driver's pools are named by their CIDR)", id)
	}
	return cidr, nil
}
