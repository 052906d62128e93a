package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/door"
	"github.com/overlayd/overlayd/metrics"
)

// ResolveFunc resolves an overlay name (NODE.NETWORK.overlay,
// SERVICE.NETWORK.overlay) to its addresses (one per family on a
// dual-stack network, IPv4 first): behind Dial and the front doors' one
// Resolver, which dials them in turn.
type ResolveFunc = door.Resolver

// frontDoors are the node's host-side doors into the overlay (SOCKS5, HTTP
// CONNECT, port forwards), the Prometheus endpoint, and the name resolver
// they share.
type frontDoors struct {
	// resolver resolves overlay names; nil until the DNS wiring sets one
	// with SetResolver.
	resolver atomic.Pointer[ResolveFunc]

	mu      sync.Mutex // guards doors and metrics
	doors   []startedDoor
	metrics *metrics.Server
}

// startedDoor is a door with what it was configured as.
type startedDoor struct {
	kind   string // socks5, http_proxy, forward
	listen string
	fwd    config.Forward // forward only
	door   door.Door
}

// SetResolver makes f resolve the overlay names that Dial and the front
// doors are given (the overlay DNS wiring sets it; an embedding program
// may set its own); nil goes back to IP literals only. Safe at any time.
func (n *Node) SetResolver(f ResolveFunc) {
	if f == nil {
		n.fd.resolver.Store(nil)
		return
	}
	n.fd.resolver.Store(&f)
}

// resolveOverlay resolves host: an IP literal is itself; a name goes to
// the resolver the DNS wiring set, and without one is refused with a
// clear error.
func (n *Node) resolveOverlay(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if f := n.fd.resolver.Load(); f != nil {
		as, err := (*f)(ctx, strings.TrimSuffix(host, "."))
		if err == nil && len(as) == 0 {
			err = fmt.Errorf("node: overlay name %q has no address", host)
		}
		return as, err
	}
	return nil, fmt.Errorf("node: cannot resolve %q: overlay DNS is not enabled (use an overlay IP address)", host)
}

// resolveAddress turns HOST:PORT into IP:PORT through resolveOverlay: of
// a name with addresses of both families, the first of a family this
// node has an address of.
func (n *Node) resolveAddress(ctx context.Context, address string) (string, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return address, nil // let the dialer report it
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return address, nil
	}
	as, err := n.resolveOverlay(ctx, host)
	if err != nil {
		return "", err
	}
	a := as[0]
	for _, c := range as {
		if n.hasFamily(c) {
			a = c
			break
		}
	}
	return net.JoinHostPort(a.String(), port), nil
}

// hasFamily reports whether the node has an overlay address of a's family.
func (n *Node) hasFamily(a netip.Addr) bool {
	for _, nw := range n.networks() {
		for _, s := range nw.Addrs {
			if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() == a.Unmap().Is4() {
				return true
			}
		}
	}
	return false
}

// inOverlay reports whether a is on one of the node's networks or behind
// one of its routes: the destinations the doors may reach when they dial
// through the host (tun and tap modes).
func (n *Node) inOverlay(a netip.Addr) bool {
	a = a.Unmap()
	for _, nw := range n.networks() {
		for _, s := range nw.Addrs {
			if p, err := netip.ParsePrefix(s); err == nil && p.Masked().Contains(a) {
				return true
			}
		}
	}
	for _, r := range n.rt.Routes() {
		if r.Prefix.Contains(a) {
			return true
		}
	}
	return false
}

// hostDialer reaches the overlay through the host's own sockets: in tun
// and tap modes the kernel routes overlay addresses into the device. It
// refuses anything else, so the doors are not proxies to the host's LAN.
type hostDialer struct{ n *Node }

func (h hostDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("node: dial %s: %w", address, err)
	}
	if !h.n.inOverlay(ap.Addr()) {
		return nil, fmt.Errorf("node: %v is not an overlay address: %w", ap.Addr(), door.ErrNotAllowed)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// ListenPacket opens a host UDP socket whose sends are limited to overlay
// addresses.
func (h hostDialer) ListenPacket(network, address string) (net.PacketConn, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(context.Background(), network, address)
	if err != nil {
		return nil, err
	}
	return overlayOnlyConn{pc.(*net.UDPConn), h.n.inOverlay}, nil
}

// overlayOnlyConn is a host UDP socket that sends only into the overlay.
type overlayOnlyConn struct {
	*net.UDPConn
	inOverlay func(netip.Addr) bool
}

func (c overlayOnlyConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || !c.inOverlay(ua.AddrPort().Addr()) {
		return 0, fmt.Errorf("node: %v is not an overlay address: %w", addr, door.ErrNotAllowed)
	}
	return c.UDPConn.WriteTo(b, addr)
}

var (
	_ door.Dialer         = hostDialer{}
	_ door.PacketListener = hostDialer{}
)

// doorOptions are the proxy options every door of this node shares.
func (n *Node) doorOptions() door.Options {
	o := door.Options{
		Resolver: n.resolveOverlay,
		Logger:   n.log,
	}
	if n.ns != nil {
		o.Dialer, o.PacketListener = n.ns, n.ns
	} else {
		h := hostDialer{n}
		o.Dialer, o.PacketListener = h, h
	}
	return o
}

// startFrontDoors opens the configured doors and the metrics endpoint.
// On an error the ones already open stay for stopFrontDoors (Close).
func (n *Node) startFrontDoors(ctx context.Context) error {
	d := n.cfg.Doors
	opts := n.doorOptions()
	var want []startedDoor
	if d.SOCKS5 != "" {
		s, err := door.NewSOCKS5(d.SOCKS5, opts)
		if err != nil {
			return err
		}
		want = append(want, startedDoor{kind: "socks5", listen: d.SOCKS5, door: s})
	}
	if d.HTTPProxy != "" {
		h, err := door.NewHTTPProxy(d.HTTPProxy, opts)
		if err != nil {
			return err
		}
		want = append(want, startedDoor{kind: "http_proxy", listen: d.HTTPProxy, door: h})
	}
	for _, f := range d.Forwards {
		fw, err := door.NewForward(door.Forward{Listen: f.Listen, Target: f.Target, Proto: f.Proto}, opts)
		if err != nil {
			return err
		}
		want = append(want, startedDoor{kind: "forward", listen: f.Listen, fwd: f, door: fw})
	}
	for _, sd := range want {
		if err := sd.door.Start(ctx); err != nil {
			sd.door.Close()
			return fmt.Errorf("node: %s door on %s: %w", strings.ReplaceAll(sd.kind, "_", " "), sd.listen, err)
		}
		n.fd.mu.Lock()
		n.fd.doors = append(n.fd.doors, sd)
		n.fd.mu.Unlock()
		n.log.Info("front door open", zap.String("door", sd.kind), zap.Stringer("addr", sd.door.Addr()))
	}
	return n.startMetrics()
}

// stopFrontDoors closes every door and the metrics endpoint and waits for
// their goroutines. Safe twice.
func (n *Node) stopFrontDoors() error {
	n.fd.mu.Lock()
	doors, m := n.fd.doors, n.fd.metrics
	n.fd.doors, n.fd.metrics = nil, nil
	n.fd.mu.Unlock()
	var errs []error
	for _, sd := range doors {
		errs = append(errs, sd.door.Close())
	}
	if m != nil {
		errs = append(errs, closeMetrics(m)...)
	}
	return errors.Join(errs...)
}

// doorStatus reports the doors and the metrics address for Status.
func (n *Node) doorStatus() ([]api.Door, string) {
	n.fd.mu.Lock()
	doors, m := n.fd.doors, n.fd.metrics
	n.fd.mu.Unlock()
	var out []api.Door
	for _, sd := range doors {
		s := sd.door.Stats()
		d := api.Door{
			Kind: sd.kind, Listen: sd.listen,
			Accepted: s.Accepted, Refused: s.Refused, Active: s.Active,
			OutBytes: s.OutBytes, InBytes: s.InBytes,
		}
		if a := sd.door.Addr(); a != nil {
			d.Addr = a.String()
		}
		if sd.kind == "forward" {
			d.Target, d.Proto = sd.fwd.Target, sd.fwd.Proto
			if d.Proto == "" {
				d.Proto = "tcp"
			}
		}
		d.Failed = reasonMap(s.Failed)
		d.Dropped = reasonMap(s.Dropped)
		out = append(out, d)
	}
	var maddr string
	if m != nil {
		maddr = m.Addr()
	}
	return out, maddr
}

func reasonMap(m map[door.Reason]uint64) map[string]uint64 {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]uint64, len(m))
	for r, v := range m {
		out[r.String()] = v
	}
	return out
}
