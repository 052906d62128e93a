package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/ipam"
	"github.com/overlayd/overlayd/stack"
)

// Request is an attach.
type Request struct {
	Name         string
	Network      string       // default: the only joined network
	Netns        string       // the namespace's path
	IPs          []netip.Addr // asked for, at most one per family; a family without one gets one from IPAM
	IfName       string       // default eth0
	DefaultRoute bool
}

// defaultIfName is the interface name a container expects.
const defaultIfName = "eth0"

// key is the endpoint's routes entry key and lease owner.
func (m *Manager) key(name string) string { return catalog.EndpointRouteKey(m.o.Self, name) }

// reservedOwner owns the reservations' leases; no endpoint has the name.
func (m *Manager) reservedOwner() string { return m.o.Self + "/:reserved" }

// Attach gives the namespace at req.Netns an interface on the network with
// an address (req.IP, or one from IPAM), carries it in the router and
// announces it. Attaching a name again with the same namespace, network
// and (if given) address returns the endpoint as it is; anything else of
// that name is an ErrConflict. On an error nothing of the attach is left.
func (m *Manager) Attach(ctx context.Context, req Request) (Info, error) {
	if err := checkRequest(&req); err != nil {
		return Info{}, err
	}
	nw, err := m.network(req.Network)
	if err != nil {
		return Info{}, err
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	if e := m.eps[req.Name]; e != nil {
		same := e.rec.Netns == req.Netns && e.rec.Network == nw.Name && e.rec.IfName == req.IfName &&
			!slices.ContainsFunc(req.IPs, func(a netip.Addr) bool { return !e.rec.hasAddr(a) })
		in := m.info(e)
		m.mu.Unlock()
		if same {
			return in, nil
		}
		return Info{}, fault.Conflict("endpoint %q is attached already (namespace %s, network %s, %v); detach it first", req.Name, in.Netns, in.Network, in.Addr)
	}
	for _, e := range m.eps {
		if e.rec.Netns == req.Netns && e.rec.IfName == req.IfName {
			name := e.rec.Name
			m.mu.Unlock()
			return Info{}, fault.Conflict("namespace %s has interface %s of endpoint %q already; give another --ifname", req.Netns, req.IfName, name)
		}
	}
	m.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}

	rec := Record{Name: req.Name, Network: nw.Name, VNI: nw.VNI, Netns: req.Netns, IfName: req.IfName,
		DefaultRoute: req.DefaultRoute, Phase: phaseAttaching, Created: time.Now().UTC().Truncate(time.Second)}
	rec.setCIDRs(nw.CIDRs)
	if err := m.save(rec); err != nil {
		return Info{}, err
	}
	e, err := m.attach(ctx, rec, nw, req.IPs)
	if err != nil {
		if serr := m.save(); serr != nil { // the record goes: nothing of it is left
			m.log.Warn("forget a failed attach", zap.String("endpoint", req.Name), zap.Error(serr))
		}
		return Info{}, err
	}
	m.mu.Lock()
	m.eps[rec.Name] = e
	in := m.info(e)
	m.mu.Unlock()
	if err := m.save(); err != nil {
		m.log.Warn("keep an attached endpoint", zap.String("endpoint", req.Name), zap.Error(err))
	}
	m.log.Info("attached", zap.String("endpoint", rec.Name), zap.String("network", rec.Network),
		zap.Stringers("addr", in.Addrs), zap.String("netns", rec.Netns), zap.Bool("helper", e.rec.Helper))
	m.changed()
	return in, nil
}

// checkRequest validates req and fills its defaults.
func checkRequest(req *Request) error {
	if req.IfName == "" {
		req.IfName = defaultIfName
	}
	switch {
	case !ValidName(req.Name):
		return fault.Invalid("endpoint name %q: want a DNS label (letters, digits and hyphens, at most 63), since NAME.NETWORK.overlay resolves to it", req.Name)
	case req.Netns == "":
		return fault.Invalid("endpoint %q: a network namespace is required (a path such as /var/run/netns/NAME or /proc/PID/ns/net)", req.Name)
	case !filepath.IsAbs(req.Netns):
		return fault.Invalid("endpoint %q: network namespace %q: give an absolute path", req.Name, req.Netns)
	case len(req.IfName) > 15 || strings.ContainsAny(req.IfName, "/ \t\n:"):
		return fault.Invalid("endpoint %q: interface name %q: at most 15 characters, no '/', ':' or spaces", req.Name, req.IfName)
	}
	var fams [2]netip.Addr
	for i, a := range req.IPs {
		if !a.IsValid() || a.Zone() != "" {
			return fault.Invalid("endpoint %q: %v is not an overlay address", req.Name, a)
		}
		a = a.Unmap()
		req.IPs[i] = a
		f := 0
		if a.Is6() {
			f = 1
		}
		if fams[f].IsValid() {
			return fault.Invalid("endpoint %q: %v and %v are of one family; give at most one IPv4 and one IPv6 address", req.Name, fams[f], a)
		}
		fams[f] = a
	}
	req.Netns = filepath.Clean(req.Netns)
	return nil
}

// attach leases, opens, carries and announces rec, each step written to
// endpoints.json first; on an error it undoes what it did. m.opMu is held.
func (m *Manager) attach(ctx context.Context, rec Record, nw Net, ips []netip.Addr) (*endpoint, error) {
	addrs, err := m.leaseAll(ctx, nw, ips, m.key(rec.Name))
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", rec.Name, err)
	}
	rec.setAddrs(addrs)
	release := func() { m.release(nw.Name, rec.Name, addrs) }
	if err := m.save(rec); err != nil {
		release()
		return nil, err
	}
	dev, helper, err := m.open(stack.NetnsTUNOptions{
		Netns: rec.Netns, Name: rec.IfName, MTU: m.o.MTU,
		Addrs: rec.prefixes(), DefaultRoute: rec.DefaultRoute,
		Persist: m.o.State != nil, Logger: m.log.With(zap.String("endpoint", rec.Name)),
	})
	if err != nil {
		release()
		return nil, fmt.Errorf("endpoint %q: %w", rec.Name, err)
	}
	rec.Helper = helper
	if err := m.carry(rec, dev); err != nil {
		m.deleteDevice(rec, dev)
		release()
		return nil, fmt.Errorf("endpoint %q: %w", rec.Name, err)
	}
	rec.Phase = phaseAttached
	return &endpoint{rec: rec, dev: dev}, nil
}

// carry hands dev to the router and writes rec's routes entry; on an
// error the router has let dev go again (the caller deletes it).
func (m *Manager) carry(rec Record, dev Device) error {
	if err := m.o.Router.AddEndpoint(rec.Name, rec.VNI, rec.addrs(), dev); err != nil {
		return err
	}
	rt := catalog.Route{VTEP: m.o.VTEP}
	for _, a := range rec.addrs() {
		rt.Prefixes = append(rt.Prefixes, netip.PrefixFrom(a, a.BitLen()))
	}
	if err := m.o.Gossip.Put(catalog.TableRoutes, rec.Network, m.key(rec.Name), rt.Encode()); err != nil {
		m.o.Router.RemoveEndpoint(rec.Name) // closes dev; a persistent one stays for deleteDevice
		return fmt.Errorf("announce route: %w", err)
	}
	return nil
}

// open makes the device, through the helper when this process may not.
func (m *Manager) open(o stack.NetnsTUNOptions) (Device, bool, error) {
	dev, err := m.o.Opener.Open(o)
	if err == nil || m.o.Helper == nil || !errors.Is(err, stack.ErrPermission) {
		return dev, false, err
	}
	dev, herr := m.o.Helper.Open(o)
	if herr != nil {
		return nil, true, fmt.Errorf("%w (and through the helper: %w)", err, herr)
	}
	return dev, true, nil
}

// opener is the Opener that made rec's device.
func (m *Manager) opener(rec Record) Opener {
	if rec.Helper && m.o.Helper != nil {
		return m.o.Helper
	}
	return m.o.Opener
}

// deleteDevice closes dev (when held) and removes rec's device from its
// namespace, persistent or not; a namespace or device already gone is
// not an error.
func (m *Manager) deleteDevice(rec Record, dev Device) {
	if dev != nil {
		dev.Close()
	}
	err := m.opener(rec).Delete(rec.Netns, rec.IfName)
	if err != nil && !errors.Is(err, fault.ErrNotFound) {
		m.log.Warn("delete device", zap.String("endpoint", rec.Name), zap.String("netns", rec.Netns), zap.Error(err))
	}
}

// leaseAll leases an address of each family of nw to owner: the one of
// ips of that family, or any. An address of a family nw lacks is refused.
// On an error it releases what it leased.
func (m *Manager) leaseAll(ctx context.Context, nw Net, ips []netip.Addr, owner string) ([]netip.Addr, error) {
	for _, ip := range ips {
		if _, ok := nw.cidr(ip); !ok {
			return nil, fault.Invalid("%v is %v, and network %s (%s) has no %v CIDR", ip, ipam.FamilyOf(ip), nw.Name, ipam.JoinCIDRs(nw.CIDRs), ipam.FamilyOf(ip))
		}
	}
	var out []netip.Addr
	for _, c := range nw.CIDRs {
		var ip netip.Addr
		for _, a := range ips {
			if a.Is4() == c.Addr().Is4() {
				ip = a
			}
		}
		a, err := m.lease(ctx, nw, ipam.FamilyOf(c.Addr()), ip, owner)
		if err != nil {
			m.release(nw.Name, owner, out)
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// release releases addrs of network (what an attach leased for who).
func (m *Manager) release(network, who string, addrs []netip.Addr) {
	for _, a := range addrs {
		if err := m.o.IPAM.Release(network, a); err != nil {
			m.log.Warn("release address", zap.String("endpoint", who), zap.Stringer("addr", a), zap.Error(err))
		}
	}
}

// lease leases ip (or any address of family f when zero) on nw to owner.
// A reservation of ip on this node is taken over; an address another
// holds is refused, naming the holder.
func (m *Manager) lease(ctx context.Context, nw Net, f ipam.Family, ip netip.Addr, owner string) (netip.Addr, error) {
	if !ip.IsValid() {
		a, err := m.o.IPAM.Allocate(ctx, nw.Name, owner, f)
		if err != nil {
			what := ""
			if len(nw.CIDRs) > 1 {
				what = " " + f.String()
			}
			return netip.Addr{}, fmt.Errorf("no%s address on network %s: %w", what, nw.Name, err)
		}
		return a, nil
	}
	cidr, ok := nw.cidr(ip)
	switch {
	case !ok || !cidr.Contains(ip):
		return netip.Addr{}, fault.Invalid("%v is outside network %s (%s)", ip, nw.Name, ipam.JoinCIDRs(nw.CIDRs))
	case ip == cidr.Addr() || ip.Is4() && ip == lastAddr(cidr):
		return netip.Addr{}, fault.Invalid("%v is the network or broadcast address of %s (%v)", ip, nw.Name, cidr)
	case ip == ipam.DNSAddr(cidr):
		return netip.Addr{}, fault.Conflict("%v is network %s's DNS address, never handed out", ip, nw.Name)
	case slices.Contains(nw.Addrs, ip):
		return netip.Addr{}, fault.Conflict("%v is this node's own address on %s", ip, nw.Name)
	}
	if ls, held := m.o.IPAM.Lookup(nw.Name, ip); held {
		switch {
		case ls.Node == m.o.Self && ls.Owner == owner:
			return ip, nil
		case ls.Node == m.o.Self && ls.Owner == m.reservedOwner():
			if err := m.o.IPAM.Release(nw.Name, ip); err != nil {
				return netip.Addr{}, err
			}
			m.mu.Lock()
			delete(m.res, resKey{nw.Name, ip})
			m.mu.Unlock()
		default:
			return netip.Addr{}, fault.Conflict("%v on network %s is in use by %s on node %s", ip, nw.Name, holderName(ls), ls.Node)
		}
	}
	if err := m.o.IPAM.Claim(nw.Name, ip, owner); err != nil {
		// Claim takes only addresses of this node's ranges: name whose.
		return netip.Addr{}, fault.Conflict("%v on network %s cannot be leased here: %v", ip, nw.Name, strings.TrimPrefix(err.Error(), "ipam: "))
	}
	return ip, nil
}

// holderName says who holds a lease: a node, an endpoint or a reservation.
func holderName(ls ipam.Lease) string {
	if ep, ok := catalog.RouteName(ls.Node, ls.Owner); ok {
		if ep == "" {
			return "the node itself"
		}
		return "endpoint " + ep
	}
	if strings.HasSuffix(ls.Owner, "/:reserved") {
		return "a reservation"
	}
	return fmt.Sprintf("%q", ls.Owner)
}

// lastAddr is p's broadcast address; p is IPv4.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Detach removes the endpoint: its routes entry, the router's carrying
// it, its device and its lease. An unknown name is an ErrNotFound.
func (m *Manager) Detach(name string) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	return m.detach(name, "detached")
}

// detach is Detach with m.opMu held; why goes to the log.
func (m *Manager) detach(name, why string) error {
	m.mu.Lock()
	e := m.eps[name]
	if e == nil {
		m.mu.Unlock()
		return fault.NotFound("no endpoint %q on this node", name)
	}
	e.rec.Phase = phaseDetaching
	rec, dev := e.rec, e.dev
	m.mu.Unlock()
	if err := m.save(); err != nil {
		return err
	}
	m.undo(rec, dev)
	m.mu.Lock()
	delete(m.eps, name)
	m.mu.Unlock()
	if err := m.save(); err != nil {
		m.log.Warn("forget a detached endpoint", zap.String("endpoint", name), zap.Error(err))
	}
	m.log.Info(why, zap.String("endpoint", name), zap.String("network", rec.Network), zap.Stringers("addr", rec.addrs()))
	m.changed()
	return nil
}

// undo removes all there is of rec: routes entry, router, device, lease
// (each step tolerates its part being gone already).
func (m *Manager) undo(rec Record, dev Device) {
	if err := m.o.Gossip.Delete(catalog.TableRoutes, rec.Network, m.key(rec.Name)); err != nil {
		m.log.Warn("withdraw route", zap.String("endpoint", rec.Name), zap.Error(err))
	}
	if dev != nil {
		if err := m.o.Router.RemoveEndpoint(rec.Name); err != nil && !errors.Is(err, fault.ErrNotFound) {
			m.log.Warn("router", zap.String("endpoint", rec.Name), zap.Error(err))
		}
	}
	m.deleteDevice(rec, nil)
	for _, a := range rec.addrs() {
		if ls, ok := m.o.IPAM.Lookup(rec.Network, a); ok && ls.Node == m.o.Self && ls.Owner == m.key(rec.Name) {
			if err := m.o.IPAM.Release(rec.Network, a); err != nil {
				m.log.Warn("release address", zap.String("endpoint", rec.Name), zap.Stringer("addr", a), zap.Error(err))
			}
		}
	}
}

// Reserve leases addr (any free one of family f when zero; f zero: the
// network's first family) on network ahead of an endpoint; an Attach
// asking for it takes it over.
func (m *Manager) Reserve(ctx context.Context, network string, addr netip.Addr, f ipam.Family) (Reservation, error) {
	nw, err := m.network(network)
	if err != nil {
		return Reservation{}, err
	}
	if addr.IsValid() {
		if addr.Zone() != "" {
			return Reservation{}, fault.Invalid("%v is not an overlay address", addr)
		}
		addr = addr.Unmap()
		if f != 0 && f != ipam.FamilyOf(addr) {
			return Reservation{}, fault.Invalid("%v is not an %v address", addr, f)
		}
		f = ipam.FamilyOf(addr)
	}
	if f == 0 {
		f = ipam.FamilyOf(nw.CIDRs[0].Addr())
	}
	var cidr netip.Prefix
	for _, c := range nw.CIDRs {
		if ipam.FamilyOf(c.Addr()) == f {
			cidr = c
		}
	}
	if !cidr.IsValid() {
		return Reservation{}, fault.Invalid("network %s (%s) has no %v CIDR", nw.Name, ipam.JoinCIDRs(nw.CIDRs), f)
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	a, err := m.lease(ctx, nw, f, addr, m.reservedOwner())
	if err != nil {
		return Reservation{}, err
	}
	r := Reservation{Network: nw.Name, Addr: netip.PrefixFrom(a, cidr.Bits()), DNS: ipam.DNSAddr(cidr)}
	m.mu.Lock()
	m.res[resKey{nw.Name, a}] = r
	m.mu.Unlock()
	if err := m.save(); err != nil {
		m.log.Warn("keep a reservation", zap.Stringer("addr", a), zap.Error(err))
	}
	return r, nil
}

// Unreserve releases a reservation; one not held is not an error.
func (m *Manager) Unreserve(network string, addr netip.Addr) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	k := resKey{network, addr}
	m.mu.Lock()
	_, ok := m.res[k]
	delete(m.res, k)
	m.mu.Unlock()
	if !ok {
		return nil
	}
	if ls, held := m.o.IPAM.Lookup(network, addr); held && ls.Node == m.o.Self && ls.Owner == m.reservedOwner() {
		if err := m.o.IPAM.Release(network, addr); err != nil {
			return err
		}
	}
	return m.save()
}
