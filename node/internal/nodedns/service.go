package nodedns

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

// Options configure a Service.
type Options struct {
	// DNS is the node's DNS configuration; DNS must be on (the caller
	// builds no Service when it is off).
	DNS config.DNS
	// Self is this node's name in the zone.
	Self string
	// Mode is the attachment in use (config.ModeTUN, ModeNetstack or
	// ModeTAP); in tap mode no network's DNS address is served.
	Mode string
	// Static is the node's address on the static network (--addr) with
	// its prefix; zero when there is none.
	Static netip.Prefix
	// Static6 is its IPv6 address there on a dual-stack static network
	// (--addr twice), beside Static's IPv4 one; zero otherwise.
	Static6 netip.Prefix
	// Joined lists the gossip networks the node is on now; nil: none.
	Joined func() []Network
	// Netstack returns the netstack the DNS addresses are served through;
	// when it is nil or returns nil, they are served on host sockets bound
	// to the device Device names (tun mode). Called when an address is
	// first served, never before Sync.
	Netstack func() Netstack
	// Device returns the name of the TUN the host sockets are bound to;
	// required when Netstack serves nothing, except in tap mode.
	Device func() string
	// Log is the node's logger; the Service logs under "dns".
	Log *zap.Logger
}

// Network is a gossip network the node is on.
type Network struct {
	Name  string
	CIDRs []netip.Prefix // one per family, IPv4 first
	Addrs []netip.Addr   // this node's address there, per CIDR
}

// Netstack is what a DNS address is served through in netstack mode.
type Netstack interface {
	ListenPacket(network, address string) (net.PacketConn, error)
	Listen(network, address string) (net.Listener, error)
}

// Service is the node's DNS server and what keeps it fed. All methods are
// safe for concurrent use.
type Service struct {
	opts      Options
	log       *zap.Logger
	srv       *dns.Server
	upstreams []netip.AddrPort
	domain    string
	ttl       time.Duration

	cidrs atomic.Pointer[[]netip.Prefix] // networks' CIDRs: who may ask through the overlay
	host  atomic.Pointer[netip.AddrPort] // the host listener, once it listens
	// listening is closed once the host listener listens (host is set).
	listening chan struct{}
	names     atomic.Pointer[map[string][]netip.Addr]

	wg sync.WaitGroup

	unbound sync.Once // the warning that a TUN's DNS address is not bound to it

	addrs *dns.Addrs // the networks' DNS addresses served (nil in tap mode)

	mu       sync.Mutex // guards last, lastErr, stopped, closeErr
	last     *dns.ZoneData
	lastErr  string
	stopped  bool
	closeErr error
}

// New builds the DNS server from opts. Nothing listens until Start (the
// host listener) and Sync (the networks' DNS addresses).
func New(opts Options) (*Service, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	cfg := opts.DNS
	d := &Service{
		opts:      opts,
		log:       opts.Log.Named("dns"),
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
		Logger:    opts.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if opts.Mode != config.ModeTAP {
		d.addrs = d.srv.ServeAddrs(port, d.listen, d.log.With(zap.String("mode", opts.Mode)))
	}
	return d, nil
}

// isOwn reports whether an upstream would be this node itself (a loop):
// its host listener or a network's DNS address.
func (d *Service) isOwn(up netip.AddrPort) bool {
	if h := d.host.Load(); h != nil && *h == up {
		return true
	}
	if l, err := netip.ParseAddrPort(d.opts.DNS.Listen); err == nil && l.Port() == up.Port() &&
		(l.Addr() == up.Addr() || l.Addr().IsUnspecified() && up.Addr().IsLoopback()) {
		return true
	}
	if up.Port() == port {
		for _, nw := range d.networks(d.joined()) {
			if nw.DNSAddr == up.Addr() {
				return true
			}
		}
	}
	return false
}

// Start listens on the host address, failing if it cannot. ctx bounds the
// start only: the listener serves until Close.
func (d *Service) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	errc := make(chan error, 1)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		err := d.srv.Serve(context.Background()) // until d.srv.Close (Close)
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
		return fmt.Errorf("node: dns listener %s: %w; give --dns another address (port 0 picks one) or --dns off", d.opts.DNS.Listen, err)
	case <-ctx.Done():
		return ctx.Err() // the listener goroutine ends at Close
	}
	d.log.Info("dns listening", zap.Stringer("addr", *d.host.Load()), zap.Stringers("upstreams", d.upstreams))
	return nil
}

// Sync rebuilds the zone from snap (the tables of the joined networks),
// swaps it in when it changed, and serves the DNS address of every
// network the node is on.
func (d *Service) Sync(snap catalog.Snapshot) {
	joined := d.joined()
	nets := d.networks(joined)
	zd, names := buildZone(d.zoneInput(nets, joined), snap)
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

// Resolve answers an overlay name from the zone (for the node's Dial and
// front doors): its addresses, one per family, IPv4 first. The slice is
// the zone's: callers must not change it.
func (d *Service) Resolve(_ context.Context, host string) ([]netip.Addr, error) {
	k := strings.ToLower(strings.TrimSuffix(host, ".")) + "."
	if m := d.names.Load(); m != nil {
		if as, ok := (*m)[k]; ok && len(as) > 0 {
			return as, nil
		}
	}
	return nil, fmt.Errorf("node: no overlay name %q (names are NAME.NETWORK.%s)", host, d.domain)
}

// HostAddr is the host listener's address; zero until Start has it
// listening.
func (d *Service) HostAddr() netip.AddrPort {
	if h := d.host.Load(); h != nil {
		return *h
	}
	return netip.AddrPort{}
}

// Close stops every listener and waits for them. Safe twice.
func (d *Service) Close() error {
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

// Stats are the DNS server's counters.
func (d *Service) Stats() dns.Stats { return d.srv.Stats() }

// Status reports the DNS server's addresses and counters.
func (d *Service) Status() *api.DNSStatus {
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
