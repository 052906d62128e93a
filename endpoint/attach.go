package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
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
	Network      string // default: the only joined network
	Netns        string // the namespace's path
	IP           netip.Addr
	IfName       string // default eth0
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
			(!req.IP.IsValid() || req.IP == e.rec.Addr)
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

	rec := Record{Name: req.Name, Network: nw.Name, VNI: nw.VNI, CIDR: nw.CIDR.Masked(), Netns: req.Netns, IfName: req.IfName,
		DefaultRoute: req.DefaultRoute, Phase: phaseAttaching, Created: time.Now().UTC().Truncate(time.Second)}
	if err := m.save(rec); err != nil {
		return Info{}, err
	}
	e, err := m.attach(ctx, rec, nw, req.IP)
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
		zap.Stringer("addr", in.Addr), zap.String("netns", rec.Netns), zap.Bool("helper", e.rec.Helper))
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
	case req.IP.IsValid() && !req.IP.Is4():
		return fault.Invalid("endpoint %q: %v is not an IPv4 address", req.Name, req.IP)
	}
	req.Netns = filepath.Clean(req.Netns)
	return nil
}

// attach leases, opens, carries and announces rec, each step written to
// endpoints.json first; on an error it undoes what it did. m.opMu is held.
func (m *Manager) attach(ctx context.Context, rec Record, nw Net, ip netip.Addr) (*endpoint, error) {
	addr, err := m.lease(ctx, nw, ip, m.key(rec.Name))
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", rec.Name, err)
	}
	rec.Addr = addr
	release := func() {
		if err := m.o.IPAM.Release(nw.Name, addr); err != nil {
			m.log.Warn("release address", zap.String("endpoint", rec.Name), zap.Stringer("addr", addr), zap.Error(err))
		}
	}
	if err := m.save(rec); err != nil {
		release()
		return nil, err
	}
	dev, helper, err := m.open(stack.NetnsTUNOptions{
		Netns: rec.Netns, Name: rec.IfName, MTU: m.o.MTU,
		Addrs: []netip.Prefix{netip.PrefixFrom(addr, nw.CIDR.Bits())}, DefaultRoute: rec.DefaultRoute,
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
	if err := m.o.Router.AddEndpoint(rec.Name, rec.VNI, rec.Addr, dev); err != nil {
		return err
	}
	rt := catalog.Route{Prefixes: []netip.Prefix{netip.PrefixFrom(rec.Addr, rec.Addr.BitLen())}, VTEP: m.o.VTEP}
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

// lease leases ip (or any address when zero) on nw to owner. A
// reservation of ip on this node is taken over; an address another holds
// is refused, naming the holder.
func (m *Manager) lease(ctx context.Context, nw Net, ip netip.Addr, owner string) (netip.Addr, error) {
	if !ip.IsValid() {
		a, err := m.o.IPAM.Allocate(ctx, nw.Name, owner, ipam.FamilyOf(nw.CIDR.Addr()))
		if err != nil {
			return netip.Addr{}, fmt.Errorf("no address on network %s: %w", nw.Name, err)
		}
		return a, nil
	}
	cidr := nw.CIDR.Masked()
	switch {
	case !cidr.Contains(ip):
		return netip.Addr{}, fault.Invalid("%v is outside network %s (%v)", ip, nw.Name, cidr)
	case ip == cidr.Addr() || ip == lastAddr(cidr):
		return netip.Addr{}, fault.Invalid("%v is the network or broadcast address of %s (%v)", ip, nw.Name, cidr)
	case ip == ipam.DNSAddr(cidr):
		return netip.Addr{}, fault.Conflict("%v is network %s's DNS address, never handed out", ip, nw.Name)
	case ip == nw.Addr:
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

// lastAddr is p's broadcast address.
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
	m.log.Info(why, zap.String("endpoint", name), zap.String("network", rec.Network), zap.Stringer("addr", rec.Addr))
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
	if rec.Addr.IsValid() {
		if ls, ok := m.o.IPAM.Lookup(rec.Network, rec.Addr); ok && ls.Node == m.o.Self && ls.Owner == m.key(rec.Name) {
			if err := m.o.IPAM.Release(rec.Network, rec.Addr); err != nil {
				m.log.Warn("release address", zap.String("endpoint", rec.Name), zap.Error(err))
			}
		}
	}
}

// Reserve leases addr (any free one when zero) on network ahead of an
// endpoint; an Attach asking for it takes it over.
func (m *Manager) Reserve(ctx context.Context, network string, addr netip.Addr) (Reservation, error) {
	nw, err := m.network(network)
	if err != nil {
		return Reservation{}, err
	}
	if addr.IsValid() && !addr.Is4() {
		return Reservation{}, fault.Invalid("%v is not an IPv4 address", addr)
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	a, err := m.lease(ctx, nw, addr, m.reservedOwner())
	if err != nil {
		return Reservation{}, err
	}
	r := Reservation{Network: nw.Name, Addr: netip.PrefixFrom(a, nw.CIDR.Bits()), DNS: ipam.DNSAddr(nw.CIDR)}
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
