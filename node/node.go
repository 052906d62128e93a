package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/endpoint"
	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/node/internal/nodedns"
	"github.com/overlayd/overlayd/node/internal/seam"
	"github.com/overlayd/overlayd/router"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/vxlan"
)

// Version is overlayd's version, set at build time with
// -ldflags "-X github.com/overlayd/overlayd/node.Version=...".
var Version = "dev"

// ErrNoNetstack is returned by Dial and Listen on a node whose attachment
// is a kernel device: programs there use the host's own sockets.
var ErrNoNetstack = errors.New("node: Dial and Listen need the netstack attachment (mode netstack); in tun and tap modes use the host's sockets")

// Node is one overlayd node.
type Node struct {
	cfg config.Config
	log *zap.Logger
	// gossipLog is the embedder's logger without the node field, which
	// gossip adds to its lines itself.
	gossipLog *zap.Logger
	mode      string
	ul        seam.Underlay // *udp.Conn, or a test's (nodetest.WithUnderlay)
	dev       stack.Device
	ns        *stack.Netstack // nil unless mode is netstack
	rt        *router.Router
	ctl       *control // nil in static mode (no gossip)
	pathMTU   int

	lb  *lb.Balancer             // service VIPs; nil in static mode
	svc atomic.Pointer[services] // set by the control plane's start; nil in static mode
	rec *reconciler              // the one loop from the schema to the router, lb and DNS (reconcile.go)
	fd  frontDoors               // SOCKS5, HTTP CONNECT, forwards, metrics (doors.go, metrics.go)
	dns *nodedns.Service         // overlay names and the forwarder (node/internal/nodedns, dns.go); nil when off
	eps *endpoint.Manager        // the attached network namespaces (endpoints.go); nil without gossip or in tap mode

	netnsHelper endpoint.Opener // WithNetnsHelper; nil: none

	mu       sync.Mutex // guards api, starting, started (held through Start)
	staticMu sync.Mutex // guards static; never held while taking another lock
	static   []config.Peer
	starting bool        // Start was called
	syncMu   sync.Mutex  // serialises route table rebuilds
	applyMu  sync.Mutex  // serialises Apply
	exp      exposeState // backends registered by --expose (expose.go)
	api      *api.Server
	started  time.Time

	// life is the node's own lifetime, from New to Close: the loops Start
	// starts run on it, never on Start's ctx.
	life    context.Context
	endLife context.CancelFunc

	closeOnce sync.Once
	closeErr  error

	seams seam.Options // parts a test gave (node/nodetest, seams.go); zero: the real ones
}

// Option changes how New builds a node.
type Option func(*Node)

// WithLogger sets the node's logger (default: none).
func WithLogger(l *zap.Logger) Option { return func(n *Node) { n.log = l } }

// New builds a node from cfg: it validates cfg, binds the underlay socket
// and opens the attachment. Nothing moves until Start.
func New(cfg config.Config, opts ...Option) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: zap.NewNop()}
	n.life, n.endLife = context.WithCancel(context.Background())
	for _, o := range opts {
		o(n)
	}
	n.gossipLog = n.log // gossip names its lines with the node itself
	n.log = n.log.With(zap.String("node", cfg.Name))
	n.rec = newReconciler(n)
	defer func() {
		if err != nil {
			n.endLife()
			if n.dns != nil {
				n.dns.Close()
			}
			n.closeParts()
		}
	}()

	if err := n.listenUnderlay(cfg); err != nil {
		return nil, err
	}
	underMTU := cfg.Underlay.MTU
	if underMTU == 0 {
		underMTU = interfaceMTU(cfg.Listen.Addr())
	}
	n.pathMTU = min(underMTU-underlayOverhead(cfg.Listen.Addr()), maxPathMTU(cfg.Listen.Addr()))
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = n.pathMTU
	}

	n.mode = cfg.Mode
	if n.mode == config.ModeAuto {
		n.mode = config.ModeNetstack
		if stack.CanCreateTUN() {
			n.mode = config.ModeTUN
		}
	}
	open := n.mode // the attachment to open: none when a test gave a device
	if n.adoptDevice() {
		open = ""
	}
	var nets []router.Network
	var addrs []netip.Prefix
	if cfg.Addr.IsValid() { // the static network: one address, or one per family (IPv4 first)
		nets = append(nets, router.Network{VNI: cfg.VNI, Addrs: cfg.Addrs()})
		addrs = append(addrs, cfg.Addrs()...)
	}
	var mac vxlan.MAC
	if cfg.Gossip.Enabled() {
		if n.ctl, err = newControl(n, cfg); err != nil {
			return nil, err
		}
		for _, j := range n.ctl.joinedList() {
			addrs = append(addrs, j.Prefixes()...)
		}
		if !cfg.Addr.IsValid() {
			mac = nameMAC(cfg.Name)
		}
	}
	if n.dns, err = newDNS(n); err != nil {
		return nil, err
	}
	addrs = append(addrs, n.dnsPrefixes()...)
	if n.ctl != nil {
		for _, j := range n.ctl.joinedList() {
			nets = append(nets, n.routerNetwork(j))
		}
	}
	routes := extraRoutes(cfg)
	// Assign the device only on success: a nil *TUN in the Device
	// interface is not a nil interface.
	switch open {
	case config.ModeTUN:
		var t *stack.TUN
		if t, err = stack.OpenTUN(stack.TUNOptions{
			Name: cfg.TUNName, MTU: mtu, Addrs: addrs, Routes: routes, Logger: n.log,
		}); err == nil {
			n.dev = t
		}
	case config.ModeTAP:
		var t *stack.TAP
		if t, err = stack.OpenTAP(stack.TAPOptions{
			Name: cfg.TUNName, MTU: mtu, Addrs: cfg.Addrs(), Logger: n.log,
		}); err == nil {
			n.dev = t
		}
	case config.ModeNetstack:
		var ns *stack.Netstack
		if ns, err = stack.NewNetstack(stack.NetstackOptions{
			Addrs: addrs, MTU: mtu, Routes: routes, Logger: n.log, AddressesLater: cfg.Gossip.Enabled(),
		}); err == nil {
			n.ns, n.dev = ns, ns
		}
	}
	if err != nil {
		return nil, err
	}
	if n.mode == config.ModeTAP {
		nets = nets[:1] // the one static network; config validation requires it
	}

	if n.ctl != nil { // services come from the gossip tables
		if n.lb, err = lb.New(lb.Options{}); err != nil {
			return nil, err
		}
	}
	n.rt, err = router.New(n.dev, n.ul, router.Options{
		Balancer: n.lb,
		Networks: nets,
		MAC:      mac,
		PathMTU:  n.pathMTU,
		Logger:   n.log,
	})
	if err != nil {
		return nil, err
	}
	if err := n.SetStaticRoutes(cfg.Peers); err != nil {
		return nil, err
	}
	if err := n.newEndpoints(); err != nil {
		return nil, err
	}
	return n, nil
}

// maxPathMTU keeps an encapsulated packet within one UDP datagram on the
// underlay of listen's family: 65507 bytes of UDP payload over IPv4 (the
// IPv4 total length counts its header), 65527 over IPv6 (the payload
// length does not), less the VXLAN and inner Ethernet headers.
func maxPathMTU(listen netip.Addr) int {
	if listen.Is6() && !listen.Is4In6() {
		return 65535 - 8 - vxlan.EncapLen
	}
	return 65535 - 20 - 8 - vxlan.EncapLen
}

// underlayOverhead is what VXLAN adds on the underlay the node listens on:
// an IPv6 --listen ([::] included: its socket is IPv6-only) pays the
// 40-byte IPv6 header, an IPv4 one the 20-byte IPv4 header.
func underlayOverhead(listen netip.Addr) int {
	if listen.Is6() && !listen.Is4In6() {
		return vxlan.Overhead6
	}
	return vxlan.Overhead
}

// extraRoutes are the static peers' prefixes that the node's own
// prefixes (one per family) do not cover; the attachment routes them to
// itself.
func extraRoutes(cfg config.Config) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range cfg.Peers {
		covered := false
		for _, a := range cfg.Addrs() {
			own := a.Masked()
			covered = covered || own.Bits() <= p.Prefix.Bits() && own.Contains(p.Prefix.Addr())
		}
		if !covered {
			out = append(out, p.Prefix)
		}
	}
	return out
}

// interfaceMTU is the MTU of the interface that holds a, or 1500 when a is
// unspecified or not found.
func interfaceMTU(a netip.Addr) int {
	if !a.IsUnspecified() {
		ifs, _ := net.Interfaces()
		for _, ifc := range ifs {
			addrs, _ := ifc.Addrs()
			for _, ad := range addrs {
				if ipn, ok := ad.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap() == a.Unmap() {
						return ifc.MTU
					}
				}
			}
		}
	}
	return 1500
}

// Start starts forwarding, the control plane, DNS, the front doors and,
// when the configuration names one, the control API socket. ctx bounds
// the start only: once Start has returned, cancelling ctx stops nothing;
// Close stops every loop and waits for it. When ctx is done before the
// start completes, Start returns its error; call Close to release what
// was started.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.starting {
		return errors.New("node: already started")
	}
	n.starting = true
	if err := n.start(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("node: start interrupted: %w", context.Cause(ctx))
		}
		return err
	}
	n.started = time.Now()
	n.logStarted()
	return nil
}

// start runs the steps of Start in order, checking ctx between them; the
// loops they start run on the node's own lifetime (life, ended by Close).
func (n *Node) start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.cfg.Control != "" {
		s, err := api.Listen(n.cfg.Control, n)
		if err != nil {
			return err
		}
		n.api = s
	}
	n.rt.Start(n.life)
	if n.lb != nil {
		if err := n.lb.Start(n.life); err != nil {
			return err
		}
	}
	if n.ctl != nil {
		if err := n.ctl.start(ctx); err != nil {
			return err
		}
		n.startServices()
		if n.eps != nil {
			n.eps.Start() // re-adopts the kept endpoints: the router runs, the networks are joined
		}
	}
	n.rec.start() // the route table, the balancer's services and the DNS zone, built once now and kept
	if n.ctl != nil {
		n.startConfigApply() // the configuration's networks and services (apply.go)
	}
	if n.dns != nil {
		if err := n.dns.Start(ctx); err != nil {
			return err
		}
		if n.fd.resolver.Load() == nil { // an embedder's own resolver wins
			n.SetResolver(n.dns.Resolve)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := n.startFrontDoors(ctx); err != nil {
		return err
	}
	return ctx.Err()
}

// logStarted logs what the node started with.
func (n *Node) logStarted() {
	gso, gro := n.ul.Offload()
	fields := []zap.Field{zap.String("mode", n.mode), zap.String("device", n.dev.Name()), zap.Stringer("vtep", n.ul.LocalAddr())}
	if n.cfg.Addr.IsValid() { // a gossip node may have no static network
		fields = append(fields, zap.Stringer("addr", n.cfg.Addr))
		if n.cfg.Addr6.IsValid() {
			fields = append(fields, zap.Stringer("addr6", n.cfg.Addr6))
		}
		fields = append(fields, zap.Uint32("vni", n.cfg.VNI))
	}
	if n.ctl != nil {
		joined := []string{}
		for _, j := range n.ctl.joinedList() {
			joined = append(joined, j.Name+"="+j.String())
		}
		fields = append(fields, zap.Strings("networks", joined))
	}
	fields = append(fields, zap.Int("mtu", n.dev.MTU()), zap.Int("path_mtu", n.pathMTU),
		zap.Bool("gso", gso), zap.Bool("gro", gro), zap.String("control", n.cfg.Control))
	n.log.Info("node started", fields...)
}

// Close stops the node and releases everything it holds; with gossip, it
// first tells the cluster it leaves (peers withdraw its routes at once).
// Safe twice.
func (n *Node) Close() error { return n.close(true) }

// crash stops the node like Close but without telling the cluster, as a
// crash would: peers withdraw its routes when failure detection declares
// it dead (nodetest.Crash).
func (n *Node) crash() error { return n.close(false) }

func (n *Node) close(leave bool) error {
	n.closeOnce.Do(func() {
		n.endLife()
		n.mu.Lock()
		s := n.api
		n.mu.Unlock()
		n.rec.close() // first: a pass reads every part closed below
		errs := []error{n.stopFrontDoors()}
		if n.dns != nil {
			errs = append(errs, n.dns.Close())
		}
		if s != nil {
			errs = append(errs, s.Close())
		}
		if s := n.svc.Load(); s != nil {
			errs = append(errs, s.mgr.Close()) // the health checker, before the gossip it writes to
		}
		if n.eps != nil {
			errs = append(errs, n.eps.Close()) // the namespace checks; the router closes the devices
		}
		if n.ctl != nil {
			errs = append(errs, n.ctl.close(leave))
		}
		errs = append(errs, n.closeParts())
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// closeParts closes the device and the socket, which ends the router's
// loops, then waits for them. A control plane left by a failed New is
// closed too.
func (n *Node) closeParts() error {
	var errs []error
	if n.ctl != nil && n.started.IsZero() {
		errs = append(errs, n.ctl.close(false))
	}
	if n.dev != nil {
		errs = append(errs, n.dev.Close())
	}
	if n.ul != nil {
		errs = append(errs, n.ul.Close())
	}
	if n.rt != nil {
		errs = append(errs, n.rt.Close())
	}
	if n.lb != nil {
		errs = append(errs, n.lb.Close())
	}
	return errors.Join(errs...)
}

// Mode is the attachment in use: tun, netstack or tap.
func (n *Node) Mode() string { return n.mode }

// Addr is the node's overlay address with its prefix.
func (n *Node) Addr() netip.Prefix { return n.cfg.Addr }

// VTEP is the underlay address the node receives VXLAN on.
func (n *Node) VTEP() netip.AddrPort { return n.ul.LocalAddr() }

// Dial connects to an overlay address through the node's netstack.
// address is IP:PORT, or NAME:PORT for an overlay name (which needs
// overlay DNS).
func (n *Node) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	if n.ns == nil {
		return nil, ErrNoNetstack
	}
	address, err := n.resolveAddress(ctx, address)
	if err != nil {
		return nil, err
	}
	return n.ns.DialContext(ctx, network, address)
}

// Listen listens for TCP connections on the node's overlay address.
// address is ":port" or "IP:port"; ":port" on a node with a static
// address of each family listens on both (one dual-stack socket).
func (n *Node) Listen(network, address string) (net.Listener, error) {
	if n.ns == nil {
		return nil, ErrNoNetstack
	}
	return n.ns.Listen(network, n.fillHost(address))
}

// ListenPacket listens for UDP on the node's overlay address.
func (n *Node) ListenPacket(network, address string) (net.PacketConn, error) {
	if n.ns == nil {
		return nil, ErrNoNetstack
	}
	return n.ns.ListenPacket(network, n.fillHost(address))
}

// fillHost gives ":port" the node's static address, or leaves it for
// the netstack's one socket of both families when the node has two.
func (n *Node) fillHost(address string) string {
	host, port, err := net.SplitHostPort(address)
	if err == nil && host == "" && !n.cfg.Addr6.IsValid() {
		return net.JoinHostPort(n.cfg.Addr.Addr().String(), port)
	}
	return address
}
