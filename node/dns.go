package node

// Overlay DNS: the zone built from the gossip tables (networks, nodes'
// route entries, services) and swapped whole on every change; the host
// listener; and each network's DNS address served inside the overlay
// (the netstack's gonet conns in netstack mode, host sockets bound to the
// TUN's address in tun mode; tap mode serves the host listener only).
//
// Who may ask (the forwarder is no open resolver, and a source address
// proves nothing by itself: an underlay neighbour can send a packet from
// any address to an address of this host):
//   - the host listener (--dns): loopback sources only. Linux drops a
//     packet with a loopback source or destination that comes in on any
//     other interface (unless route_localnet is set), so these are the
//     host's own programs.
//   - a DNS address in netstack mode: sources in the networks' CIDRs; only
//     the router (the overlay) and the node's own Dial reach the netstack.
//   - a DNS address in tun mode: two socket pairs, one bound to the TUN
//     (sources in the networks' CIDRs: packets that came through the
//     overlay) and one bound to the loopback device (the host's own
//     programs, any source). A packet that came in on the underlay matches
//     neither. Where sockets cannot be bound to a device (not Linux), one
//     unbound pair allows loopback and the CIDRs, and a warning says so.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/dns"
)

// staticNetworkName names the static network (--addr) in the zone:
// NODE.static.overlay.
const staticNetworkName = "static"

// dnsPort is the port served on the networks' DNS addresses.
const dnsPort = 53

// dnsService is the node's DNS server and what keeps it fed.
type dnsService struct {
	n         *Node
	log       *zap.Logger
	srv       *dns.Server
	upstreams []netip.AddrPort
	domain    string
	ttl       time.Duration

	cidrs atomic.Pointer[[]netip.Prefix] // networks' CIDRs: who may ask through the overlay
	host  atomic.Pointer[netip.AddrPort] // the host listener, once it listens
	// listening is closed once the host listener listens (host is set).
	listening chan struct{}
	names     atomic.Pointer[map[string]netip.Addr]

	wg sync.WaitGroup

	unbound sync.Once // the warning that a TUN's DNS address is not bound to it

	addrs *dns.Addrs // the networks' DNS addresses served (nil in tap mode)

	mu       sync.Mutex // guards last, lastErr, stopped, closeErr
	last     *dns.ZoneData
	lastErr  string
	stopped  bool
	closeErr error
}

// newDNS builds the DNS server from the configuration; nil when DNS is off.
func newDNS(n *Node) (*dnsService, error) {
	cfg := n.cfg.DNS
	if !cfg.Enabled() {
		return nil, nil
	}
	d := &dnsService{
		n:         n,
		log:       n.log.Named("dns"),
		domain:    cfg.Domain,
		ttl:       cfg.TTL,
		listening: make(chan struct{}),
	}
	none := []netip.Prefix{}
	d.cidrs.Store(&none)
	ups, err := cfg.UpstreamAddrs()
	if err != nil {
		return nil, fmt.Errorf("node: dns: %w", err)
	}
	if len(ups) == 0 {
		ups, err = dns.ReadResolvConf("/etc/resolv.conf")
		if err != nil {
			d.log.Warn("no upstream resolvers; names outside the overlay get REFUSED (give --dns-upstream)", zap.Error(err))
		}
		ups = slices.DeleteFunc(ups, d.isOwn)
	}
	var fwd *dns.Forwarder
	if len(ups) > 0 {
		if fwd, err = dns.NewForwarder(dns.ForwarderOptions{Upstreams: ups}); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	d.upstreams = ups
	d.srv, err = dns.New(dns.Options{
		Addr:      cfg.Listen,
		OnListen:  func(a netip.AddrPort) { d.host.Store(&a); close(d.listening) },
		Allowed:   fromLoopback,
		Forwarder: fwd,
		Logger:    n.log,
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if n.mode != config.ModeTAP {
		d.addrs = d.srv.ServeAddrs(dnsPort, d.listen, d.log.With(zap.String("mode", n.mode)))
	}
	return d, nil
}

// isOwn reports whether an upstream would be this node itself (a loop):
// its host listener or a network's DNS address.
func (d *dnsService) isOwn(up netip.AddrPort) bool {
	if h := d.host.Load(); h != nil && *h == up {
		return true
	}
	if l, err := netip.ParseAddrPort(d.n.cfg.DNS.Listen); err == nil && l.Port() == up.Port() &&
		(l.Addr() == up.Addr() || l.Addr().IsUnspecified() && up.Addr().IsLoopback()) {
		return true
	}
	if up.Port() == dnsPort {
		for _, nw := range d.n.dnsNetworks() {
			if nw.DNSAddr == up.Addr() {
				return true
			}
		}
	}
	return false
}

// fromLoopback is the host listener's access check: the host's own
// programs (see the file comment).
func fromLoopback(a netip.Addr) bool { return a.Unmap().IsLoopback() }

// fromAnywhere is the access check of sockets that only the host's own
// programs reach (bound to the loopback device).
func fromAnywhere(netip.Addr) bool { return true }

// fromOverlay is the access check of sockets that only the overlay
// reaches: a source in one of the networks the node is on.
func (d *dnsService) fromOverlay(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range *d.cidrs.Load() {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// fromOverlayOrLoopback is the access check of an unbound host socket on a
// DNS address, where the way in cannot be told (not Linux).
func (d *dnsService) fromOverlayOrLoopback(a netip.Addr) bool {
	return fromLoopback(a) || d.fromOverlay(a)
}

// dnsAddrOf is a gossip network's DNS address: its first usable address
// (as ipam reserves it, so no node holds it as its own).
func dnsAddrOf(cidr netip.Prefix) netip.Addr { return cidr.Masked().Addr().Next() }

// dnsNetworks lists the networks the node serves DNS on: the static one
// (named "static") and the joined ones. The static network (--addr,
// --peer) has no IPAM: any of its addresses, the first one too, may be
// another host's, so its DNS address is the node's own address.
func (n *Node) dnsNetworks() []dns.Network {
	var out []dns.Network
	if n.ctl != nil {
		for _, j := range n.ctl.joinedList() {
			out = append(out, dns.Network{Name: j.Name, CIDR: j.CIDR.Masked(), DNSAddr: dnsAddrOf(j.CIDR)})
		}
	}
	if n.cfg.Addr.IsValid() && !slices.ContainsFunc(out, func(nw dns.Network) bool { return nw.Name == staticNetworkName }) {
		out = append(out, dns.Network{Name: staticNetworkName, CIDR: n.cfg.Addr.Masked(), DNSAddr: n.cfg.Addr.Addr()})
	}
	return out
}

// dnsPrefixes are the DNS addresses the attachment must hold besides the
// node's own (host-length prefixes: never a connection's source); none
// when DNS is off or in tap mode. applyNetworks adds them.
func (n *Node) dnsPrefixes() []netip.Prefix {
	if !n.cfg.DNS.Enabled() || n.mode == config.ModeTAP {
		return nil
	}
	var out []netip.Prefix
	for _, nw := range n.dnsNetworks() {
		if nw.DNSAddr == n.cfg.Addr.Addr() {
			continue // the static network's: the node's own address, there already
		}
		out = append(out, netip.PrefixFrom(nw.DNSAddr, nw.DNSAddr.BitLen()))
	}
	return out
}

// start listens on the host address (failing if it cannot) and starts the
// loop that rebuilds the zone and the overlay listeners. ctx bounds the
// start only: the listener serves until close.
func (d *dnsService) start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	errc := make(chan error, 1)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		err := d.srv.Serve(context.Background()) // until d.srv.Close (close)
		select {
		case <-d.listening:
			if err != nil {
				d.log.Error("dns listener stopped", zap.Error(err))
			}
		default:
			errc <- err
		}
	}()
	select {
	case <-d.listening:
	case err := <-errc:
		if err == nil {
			err = net.ErrClosed
		}
		return fmt.Errorf("node: dns listener %s: %w; give --dns another address (port 0 picks one) or --dns off", d.n.cfg.DNS.Listen, err)
	case <-ctx.Done():
		return ctx.Err() // the listener goroutine ends at close
	}
	d.log.Info("dns listening", zap.Stringer("addr", *d.host.Load()), zap.Stringers("upstreams", d.upstreams))
	return nil
}

// sync rebuilds the zone from the tables, swaps it in, and serves the DNS
// address of every network the node is on.
func (d *dnsService) sync(snap catalog.Snapshot) {
	nets := d.n.dnsNetworks()
	zd, names := buildZone(d.zoneInput(nets), snap)
	var cidrs []netip.Prefix
	for _, nw := range nets {
		cidrs = append(cidrs, nw.CIDR)
	}
	d.cidrs.Store(&cidrs)
	d.names.Store(&names)

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	if d.last == nil || !reflect.DeepEqual(*d.last, zd) {
		err := d.srv.SetZone(zd)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg != d.lastErr && err != nil {
			d.log.Warn("zone: records left out", zap.Error(err))
		}
		d.lastErr = msg
		d.last = &zd
	}
	if d.addrs != nil {
		addrs := make([]netip.Addr, len(nets))
		for i, nw := range nets {
			addrs[i] = nw.DNSAddr
		}
		d.addrs.Set(addrs)
	}
}

// listen opens UDP and TCP on ap: through the netstack, or with host
// sockets on the TUN's address, one pair bound to the TUN and one to the
// loopback device (see the file comment).
func (d *dnsService) listen(ap netip.AddrPort) ([]dns.Way, error) {
	if ns := d.n.ns; ns != nil {
		pc, err := ns.ListenPacket("udp", ap.String())
		if err != nil {
			return nil, err
		}
		ln, err := ns.Listen("tcp", ap.String())
		if err != nil {
			pc.Close()
			return nil, err
		}
		return []dns.Way{{Packet: pc, Stream: ln, Allowed: d.fromOverlay}}, nil
	}
	if !deviceBinding {
		d.unbound.Do(func() {
			d.log.Warn("this system cannot bind the DNS address's sockets to the TUN: a host on the underlay that routes the DNS address here can reach it (from a source in the overlay's CIDR, it is answered)")
		})
		w, err := listenHost(ap, "", d.fromOverlayOrLoopback)
		if err != nil {
			return nil, err
		}
		return []dns.Way{w}, nil
	}
	var ways []dns.Way
	for _, w := range []struct {
		dev     string
		allowed func(netip.Addr) bool
	}{{d.n.dev.Name(), d.fromOverlay}, {loopbackDevice, fromAnywhere}} {
		way, err := listenHost(ap, w.dev, w.allowed)
		if err != nil {
			dns.CloseWays(ways)
			return nil, err
		}
		ways = append(ways, way)
	}
	return ways, nil
}

// listenHost opens a host UDP and TCP socket on ap, bound to the device
// dev unless it is empty.
func listenHost(ap netip.AddrPort, dev string, allowed func(netip.Addr) bool) (dns.Way, error) {
	var lc net.ListenConfig
	if dev != "" {
		lc.Control = bindToDevice(dev)
	}
	ctx := context.Background()
	pc, err := lc.ListenPacket(ctx, "udp", ap.String())
	if err != nil {
		return dns.Way{}, err
	}
	ln, err := lc.Listen(ctx, "tcp", ap.String())
	if err != nil {
		pc.Close()
		return dns.Way{}, err
	}
	return dns.Way{Packet: pc, Stream: ln, Allowed: allowed}, nil
}

// resolve answers an overlay name from the zone (for Dial and the doors).
func (d *dnsService) resolve(_ context.Context, host string) (netip.Addr, error) {
	k := strings.ToLower(strings.TrimSuffix(host, ".")) + "."
	if m := d.names.Load(); m != nil {
		if a, ok := (*m)[k]; ok {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("node: no overlay name %q (names are NAME.NETWORK.%s)", host, d.domain)
}

// close stops every listener. Safe twice.
func (d *dnsService) close() error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return d.closeErr
	}
	d.stopped = true
	d.mu.Unlock()
	err := d.srv.Close()
	if d.addrs != nil {
		d.addrs.Close()
	}
	d.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	d.mu.Lock()
	d.closeErr = err
	d.mu.Unlock()
	return err
}

// status reports the DNS server's addresses and counters.
func (d *dnsService) status() *api.DNSStatus {
	st := d.srv.Stats()
	out := &api.DNSStatus{
		Domain:         d.domain,
		Queries:        st.Queries,
		Responses:      st.Responses,
		Dropped:        st.Dropped,
		CacheHits:      st.Forwarder.CacheHits,
		CacheMisses:    st.Forwarder.CacheMisses,
		CacheEntries:   st.Forwarder.CacheEntries,
		UpstreamErrors: st.Forwarder.UpstreamErrors,
		Busy:           st.Forwarder.Busy,
	}
	if h := d.host.Load(); h != nil {
		out.Listen = h.String()
	}
	for _, u := range d.upstreams {
		out.Upstreams = append(out.Upstreams, u.String())
	}
	if d.addrs != nil {
		for _, a := range d.addrs.List() {
			out.Addrs = append(out.Addrs, a.String())
		}
	}
	return out
}

// DNSAddr is the host address the node's DNS listener is bound to; zero
// when DNS is off or the node has not started.
func (n *Node) DNSAddr() netip.AddrPort {
	if n.dns == nil {
		return netip.AddrPort{}
	}
	if h := n.dns.host.Load(); h != nil {
		return *h
	}
	return netip.AddrPort{}
}

// dnsStatus is the status's DNS part; nil when DNS is off.
func (n *Node) dnsStatus() *api.DNSStatus {
	if n.dns == nil {
		return nil
	}
	return n.dns.status()
}
