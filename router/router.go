package router

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/vxlan"
)

// headroom is where packets start in the router's buffers.
const headroom = stack.Headroom

// bufSize is the size of every packet buffer: the largest IP packet (a
// GRO-coalesced one on a TUN with offloads, or a UDP GRO read) plus headroom.
const bufSize = headroom + 65535

// maxBatch caps how many packets one loop iteration handles.
const maxBatch = 128

// Options configure a Router. Only Networks is required.
type Options struct {
	// Networks are the overlay networks this node is attached to, with its
	// own addresses on each. In L2 mode exactly one. An L3 router may start
	// with none if MAC is given, and gain them later with SetNetworks.
	Networks []Network
	// MAC is the node's MAC inside the tunnel; zero means
	// vxlan.NodeMAC(first network's first address).
	MAC vxlan.MAC
	// PathMTU is the largest inner IP packet that fits the underlay
	// (underlay MTU − vxlan.Overhead, or vxlan.Overhead6 over IPv6), for
	// both inner families. Larger IPv4 packets with DF set are answered
	// with ICMP "fragmentation needed", larger IPv6 packets with ICMPv6
	// "packet too big". Zero means 1450.
	PathMTU int
	// MaxNeighbors bounds the learned IP→MAC and MAC→VTEP tables.
	// Zero means 65536.
	MaxNeighbors int
	// Balancer, when not nil, load-balances service VIPs: outbound
	// packets to a VIP are DNATed to a backend before the route lookup,
	// replies from backends are reverse-NATed on delivery.
	Balancer *lb.Balancer
	// Logger receives the router's logs; nil means none.
	Logger *zap.Logger
}

// Counters count packets and bytes one way.
type Counters struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Stats is a snapshot of the router's counters.
type Stats struct {
	Outbound   Counters          `json:"outbound"`    // attachment → underlay
	Inbound    Counters          `json:"inbound"`     // underlay → attachment
	Drops      map[string]uint64 `json:"drops"`       // by reason, only non-zero
	ARPAsked   uint64            `json:"arp_asked"`   // requests we sent: ARP, and NDP solicitations for IPv6
	ARPAnswers uint64            `json:"arp_answers"` // replies we sent: ARP, and NDP advertisements for IPv6
	ICMPSent   uint64            `json:"icmp_sent"`   // errors sent to the attachment (ICMP and ICMPv6)
	Neighbors  int               `json:"neighbors"`   // learned IP→MAC entries, both families
	FDB        int               `json:"fdb"`         // learned MAC→VTEP entries (L2)
	PendingARP int               `json:"pending_arp"` // neighbours being resolved (ARP or NDP)
	// PerNetwork counts forwarded packets by VNI, both ways.
	PerNetwork map[uint32]NetworkCounters `json:"per_network"`
	// Local counts packets switched between local devices (endpoint to
	// endpoint, endpoint to attachment and back), which never touch the
	// underlay and are not in Outbound or Inbound.
	Local Counters `json:"local"`
	// Endpoints are the hosted endpoints' counters, by ID.
	Endpoints map[string]EndpointStats `json:"endpoints,omitempty"`
}

// NetworkCounters count one network's packets both ways.
type NetworkCounters struct {
	Outbound Counters `json:"outbound"`
	Inbound  Counters `json:"inbound"`
}

// netCounters are one network's live counters.
type netCounters struct {
	out, in dirCounters
}

// netAcc accumulates a batch's packets for one network and adds them to
// its counters when the network changes or the batch ends, so a batch of
// one network costs two atomic adds, not two per packet.
type netAcc struct {
	vni         uint32
	c           *netCounters
	pkts, bytes uint64
}

func (a *netAcc) add(r *Router, vni uint32, size int, out bool) {
	if a.c == nil || a.vni != vni {
		a.flush(out)
		a.vni, a.c = vni, r.netCounters(vni)
	}
	a.pkts++
	a.bytes += uint64(size)
}

func (a *netAcc) flush(out bool) {
	if a.c == nil || a.pkts == 0 {
		return
	}
	d := &a.c.in
	if out {
		d = &a.c.out
	}
	d.packets.Add(a.pkts)
	d.bytes.Add(a.bytes)
	a.pkts, a.bytes = 0, 0
}

// netCounters returns vni's counters, made on first use.
func (r *Router) netCounters(vni uint32) *netCounters {
	return r.perNet.getOrAdd(vni, func() *netCounters { return new(netCounters) })
}

type dirCounters struct {
	packets, bytes atomic.Uint64
}

func (d *dirCounters) load() Counters {
	return Counters{Packets: d.packets.Load(), Bytes: d.bytes.Load()}
}

// Router moves packets between the attachment, the endpoints it hosts and
// the underlay.
type Router struct {
	dev     stack.Device
	devMTU  int // dev's MTU, read once; 0: no limit
	ul      Underlay
	log     *zap.Logger
	mac     vxlan.MAC
	pathMTU int
	layer   stack.Layer
	lb      *lb.Balancer                       // nil: no service VIPs
	nets    atomic.Pointer[map[uint32]network] // replaced whole by SetNetworks
	l2VNI   uint32                             // the one network of an L2 attachment

	setMu sync.Mutex // serialises SetNetworks and SetRoutes (readers use the snapshots)

	tab     atomic.Pointer[table]
	neigh   *shardedMap[neighKey, vxlan.MAC]
	perNet  *cowMap[uint32, *netCounters] // by VNI; only local networks get here
	fdb     *shardedMap[macKey, netip.AddrPort]
	pending *pendingQueue

	drops                DropCounters
	out, in, local       dirCounters
	arpAsked, arpAnswers atomic.Uint64
	icmpSent             atomic.Uint64

	devMu sync.Mutex // serialises writes to dev (inbound delivery, ICMP errors, local switching)
	caps  vtepCaps   // the VTEPs that take partial TCP checksums (offload.go)

	eps    atomic.Pointer[epTable] // replaced whole by AddEndpoint and RemoveEndpoint
	epMu   sync.Mutex              // serialises writers of eps; guards runCtx, closed and each endpoint's done
	runCtx context.Context         // the loops' context once started; nil before
	closed bool                    // Close was called: no new endpoints

	startOnce sync.Once
	closeOnce sync.Once
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// New returns a router between dev and ul. It starts nothing; Start does.
func New(dev stack.Device, ul Underlay, opts Options) (*Router, error) {
	if dev == nil || ul == nil {
		return nil, errors.New("router: a device and an underlay are required")
	}
	if len(opts.Networks) == 0 && (opts.MAC == (vxlan.MAC{}) || dev.Layer() == stack.L2) {
		return nil, errors.New("router: at least one network is required (or, for an L3 attachment, a MAC)")
	}
	if dev.Layer() == stack.L2 && len(opts.Networks) != 1 {
		return nil, errors.New("router: an L2 (tap) attachment carries exactly one network")
	}
	r := &Router{
		dev:     dev,
		devMTU:  max(dev.MTU(), 0),
		ul:      ul,
		log:     opts.Logger,
		mac:     opts.MAC,
		pathMTU: opts.PathMTU,
		layer:   dev.Layer(),
		lb:      opts.Balancer,
		pending: newPendingQueue(),
	}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	r.log = r.log.Named("router")
	nets, err := checkNetworks(opts.Networks)
	if err != nil {
		return nil, err
	}
	r.nets.Store(&nets)
	if len(opts.Networks) > 0 {
		r.l2VNI = opts.Networks[0].VNI
	}
	if r.mac == (vxlan.MAC{}) {
		r.mac = vxlan.NodeMAC(opts.Networks[0].Addrs[0].Addr())
	}
	if r.pathMTU == 0 {
		r.pathMTU = 1500 - vxlan.Overhead
	}
	if r.pathMTU < 576 || r.pathMTU > 65535-vxlan.EncapLen {
		return nil, fmt.Errorf("router: path MTU %d is out of range (576-%d)", r.pathMTU, 65535-vxlan.EncapLen)
	}
	max := opts.MaxNeighbors
	if max <= 0 {
		max = 65536
	}
	r.neigh = newShardedMap[neighKey, vxlan.MAC](max)
	r.perNet = newCOWMap[uint32, *netCounters](1 << 16)
	r.fdb = newShardedMap[macKey, netip.AddrPort](max)
	t, _ := buildTable(nil, nil)
	r.tab.Store(t)
	r.eps.Store(noEndpoints)
	return r, nil
}

func checkNetworks(networks []Network) (map[uint32]network, error) {
	nets := make(map[uint32]network, len(networks))
	for _, n := range networks {
		if n.VNI > vxlan.MaxVNI {
			return nil, fmt.Errorf("router: VNI %d is out of range (0-%d)", n.VNI, vxlan.MaxVNI)
		}
		if _, dup := nets[n.VNI]; dup {
			return nil, fmt.Errorf("router: VNI %d given twice", n.VNI)
		}
		nw := network{Network: Network{VNI: n.VNI}}
		if len(n.Addrs) == 0 || len(n.Addrs) > 2 {
			return nil, fmt.Errorf("router: network with VNI %d: give the node's address on it, one per family (%d given)", n.VNI, len(n.Addrs))
		}
		for i, p := range n.Addrs {
			a := p.Addr()
			switch {
			case !p.IsValid() || a.Zone() != "" || a.Is4In6():
				return nil, fmt.Errorf("router: network with VNI %d: %v is not an IP address with prefix", n.VNI, p)
			case a.Is4() && (i > 0 || nw.v4.IsValid()):
				return nil, fmt.Errorf("router: network with VNI %d: the IPv4 address %v must come first, and only one", n.VNI, p)
			case a.Is6() && nw.v6.IsValid():
				return nil, fmt.Errorf("router: network with VNI %d: two IPv6 addresses (%v, %v); give one per family", n.VNI, nw.v6, p)
			case a.Is4():
				nw.v4 = p
			default:
				nw.v6, nw.v6a = p, a.As16()
			}
		}
		nw.Addrs = append([]netip.Prefix(nil), n.Addrs...)
		for _, a := range n.Local {
			if p := nw.prefix(a); !p.Contains(a) || a == p.Addr() {
				return nil, fmt.Errorf("router: network with VNI %d: local address %v is not another address of the network (%v)", n.VNI, a, prefixes(n.Addrs))
			}
		}
		nw.Local = append([]netip.Addr(nil), n.Local...)
		nets[n.VNI] = nw
	}
	return nets, nil
}

// prefixes lists ps masked, for messages: "10.0.0.0/24, fd00::/64".
func prefixes(ps []netip.Prefix) string {
	var s string
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += p.Masked().String()
	}
	return s
}

// SetNetworks replaces the networks the router is attached to (its own
// address on each) as one snapshot; routes on networks that are no longer
// present leave the route table in the same step. Inbound traffic of a VNI
// not in the set is dropped (unknown_vni), and traffic of one VNI is only
// ever delivered for this node's address on that VNI. An L2 router keeps
// its one network. Safe to call at any time, concurrently with forwarding.
func (r *Router) SetNetworks(networks []Network) error {
	nets, err := checkNetworks(networks)
	if err != nil {
		return err
	}
	if r.layer == stack.L2 && (len(nets) != 1 || !slices.Equal(nets[r.l2VNI].Addrs, (*r.nets.Load())[r.l2VNI].Addrs)) {
		return errors.New("router: an L2 (tap) attachment keeps its one network")
	}
	r.setMu.Lock()
	defer r.setMu.Unlock()
	old := r.tab.Load()
	var keep []Route
	for _, rt := range old.routes {
		if _, ok := nets[rt.VNI]; ok {
			keep = append(keep, rt)
		}
	}
	if len(keep) != len(old.routes) {
		t, err := buildTable(keep, old.extraPeers)
		if err != nil {
			return err
		}
		r.tab.Store(t)
	}
	r.nets.Store(&nets)
	return nil
}

// Networks returns the networks in force, sorted by VNI.
func (r *Router) Networks() []Network {
	nets := *r.nets.Load()
	out := make([]Network, 0, len(nets))
	for _, n := range nets {
		n.Addrs, n.Local = slices.Clone(n.Addrs), slices.Clone(n.Local)
		out = append(out, n.Network)
	}
	slices.SortFunc(out, func(a, b Network) int { return cmp.Compare(a.VNI, b.VNI) })
	return out
}

// SetRoutes replaces the route table and the set of peers (VTEPs that may
// send to us without a route of their own) as one snapshot. Every route
// must be on one of the router's networks. It is safe to call at any time,
// concurrently with forwarding.
func (r *Router) SetRoutes(routes []Route, peers []netip.AddrPort) error {
	r.setMu.Lock()
	defer r.setMu.Unlock()
	nets := *r.nets.Load()
	for _, rt := range routes {
		if _, ok := nets[rt.VNI]; !ok {
			return fmt.Errorf("router: route %v: this node is not on a network with VNI %d", rt.Prefix, rt.VNI)
		}
	}
	t, err := buildTable(routes, peers)
	if err != nil {
		return err
	}
	r.tab.Store(t)
	return nil
}

// Routes returns the routes in force.
func (r *Router) Routes() []Route {
	return append([]Route(nil), r.tab.Load().routes...)
}

// MAC is the node's MAC inside the tunnel.
func (r *Router) MAC() vxlan.MAC { return r.mac }

// PathMTU is the largest inner IP packet the router forwards.
func (r *Router) PathMTU() int { return r.pathMTU }

// Stats returns a snapshot of the counters.
func (r *Router) Stats() Stats {
	s := Stats{
		Outbound:   r.out.load(),
		Inbound:    r.in.load(),
		Drops:      r.drops.Snapshot(),
		ARPAsked:   r.arpAsked.Load(),
		ARPAnswers: r.arpAnswers.Load(),
		ICMPSent:   r.icmpSent.Load(),
		Neighbors:  r.neigh.len(),
		FDB:        r.fdb.len(),
		PendingARP: r.pending.len(),
		PerNetwork: make(map[uint32]NetworkCounters),
		Local:      r.local.load(),
		Endpoints:  r.endpointStats(),
	}
	if kd, ok := r.ul.(KernelDropper); ok {
		if n, ok := kd.KernelDrops(); ok && n > 0 {
			s.Drops[DropKernelRcvbuf.String()] = n
		}
	}
	for vni, c := range r.perNet.snapshot() {
		s.PerNetwork[vni] = NetworkCounters{Outbound: c.out.load(), Inbound: c.in.load()}
	}
	return s
}

// Neighbors returns the learned IP→MAC table.
func (r *Router) Neighbors() map[netip.Addr]vxlan.MAC {
	out := make(map[netip.Addr]vxlan.MAC)
	for k, v := range r.neigh.all() {
		out[k.ip] = v
	}
	return out
}

// Start runs the outbound, inbound and housekeeping loops, and each
// endpoint's read loop, until ctx ends or Close is called. It returns at
// once.
func (r *Router) Start(ctx context.Context) {
	r.startOnce.Do(func() {
		ctx, r.cancel = context.WithCancel(ctx)
		r.wg.Add(3)
		go func() { defer r.wg.Done(); r.outboundLoop(ctx) }()
		go func() { defer r.wg.Done(); r.inboundLoop(ctx) }()
		go func() { defer r.wg.Done(); r.housekeeping(ctx) }()
		r.startEndpoints(ctx)
	})
}

// Close stops the loops and waits for them. It closes the endpoints'
// devices, which it owns, but not the attachment or the underlay, which
// the caller owns; the loops only return once both are closed or ctx is
// done, so close them first, then the router. It is safe to call twice.
func (r *Router) Close() error {
	r.closeOnce.Do(func() {
		if r.cancel != nil {
			r.cancel()
		}
		r.closeEndpoints()
	})
	r.wg.Wait()
	return nil
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) || errors.Is(err, stack.ErrClosed)
}

// housekeeping retries ARP requests and NDP solicitations and expires
// unanswered ones.
func (r *Router) housekeeping(ctx context.Context) {
	t := time.NewTicker(arpRetry / 4)
	defer t.Stop()
	var asks []arpAsk
	b := newOutBatch(1)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			var dropped int
			asks, dropped = r.pending.expire(now, asks[:0])
			for range dropped {
				r.drops.Add(DropARPUnresolved)
			}
			for _, a := range asks {
				b.reset()
				r.queueSolicit(b, a.dst, a.vtep)
				r.flushUnderlay(b)
			}
		}
	}
}

// logError logs a loop error at most once a second.
type rateLog struct {
	last atomic.Int64
}

func (l *rateLog) ok() bool {
	now := time.Now().UnixNano()
	last := l.last.Load()
	return now-last > int64(time.Second) && l.last.CompareAndSwap(last, now)
}
