package router

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/stack"
)

// EndpointConfig is an endpoint (a network namespace) the router carries:
// its own L3 device, its own addresses on one of the router's networks.
type EndpointConfig struct {
	// ID names the endpoint; unique among the router's endpoints.
	ID string
	// VNI is the endpoint's network; the router must be on it.
	VNI uint32
	// Addrs are the endpoint's addresses (each its /32 or /128), one per
	// family, IPv4 first: each inside the network's prefix of its family,
	// neither the node's own address nor another endpoint's. The
	// endpoint may send from these addresses only.
	Addrs []netip.Addr
	// Device is the endpoint's L3 device (a TUN inside its namespace).
	// From a successful AddEndpoint on the router owns it: it reads it in
	// a loop of its own and closes it on RemoveEndpoint or Close.
	Device stack.Device
}

// EndpointStats count one endpoint's traffic. Outbound is what the router
// read from the endpoint's device and forwarded (to another endpoint, the
// attachment or the underlay; packets that wait for an ARP answer are
// counted by the router and the network, not here), Inbound what it wrote
// to its device (InboundDrops of those, the device refused).
type EndpointStats struct {
	VNI           uint32       `json:"vni"`
	Addrs         []netip.Addr `json:"addrs"`
	Outbound      Counters     `json:"outbound"`
	Inbound       Counters     `json:"inbound"`
	OutboundDrops uint64       `json:"outbound_drops"` // read from its device, not forwarded (the reasons are in Stats.Drops)
	InboundDrops  uint64       `json:"inbound_drops"`  // written to it, and its device refused the write
}

// endpoint is a hosted endpoint: its config and live counters.
type endpoint struct {
	cfg    EndpointConfig
	a4, a6 netip.Addr // cfg.Addrs by family; the zero Addr: none
	mtu    int        // the device's MTU, read once; 0: no limit

	out, in           dirCounters
	outDrops, inDrops atomic.Uint64

	devMu sync.Mutex    // serialises writes to cfg.Device (delivery from every loop, ICMP errors)
	done  chan struct{} // closed when its read loop returns; nil until the loop starts (set under Router.epMu)
}

// epTable is an immutable snapshot of the hosted endpoints, swapped whole
// by AddEndpoint and RemoveEndpoint and read per batch without locks.
// Addresses are unique across networks: the attachment (a host with one
// routing table) could not tell two equal ones apart.
type epTable struct {
	byAddr map[netip.Addr]*endpoint
	byID   map[string]*endpoint
}

var noEndpoints = &epTable{}

// on returns the endpoint hosted at a on network vni, or nil.
func (t *epTable) on(vni uint32, a netip.Addr) *endpoint {
	if ep := t.byAddr[a]; ep != nil && ep.cfg.VNI == vni {
		return ep
	}
	return nil
}

// with returns a copy of t with ep added (or, when ep is nil, without drop).
func (t *epTable) with(ep, drop *endpoint) *epTable {
	n := &epTable{byAddr: make(map[netip.Addr]*endpoint, len(t.byID)+1), byID: make(map[string]*endpoint, len(t.byID)+1)}
	for id, e := range t.byID {
		if e != drop {
			n.add(id, e)
		}
	}
	if ep != nil {
		n.add(ep.cfg.ID, ep)
	}
	return n
}

func (t *epTable) add(id string, ep *endpoint) {
	t.byID[id] = ep
	for _, a := range ep.cfg.Addrs {
		t.byAddr[a] = ep
	}
}

// AddEndpoint makes the router carry an endpoint: packets read from its
// device are forwarded as the attachment's are (service VIPs, ICMP errors,
// routes), on the endpoint's network only and from its own address only;
// packets for its address (from the underlay on its VNI, from the
// attachment, from another endpoint of the network, which are switched
// here and never touch the underlay) are written to its device; ARP
// requests for its address from the tunnel are answered with the node's
// MAC. If the router runs, the endpoint's read loop starts now, else on
// Start. Safe concurrently with forwarding. The errors are fault kinds:
// ErrInvalid for a bad config, ErrNotFound for a network the router is
// not on, ErrConflict for an ID or address in use, ErrUnavailable after
// Close; on an error the caller keeps the device.
func (r *Router) AddEndpoint(cfg EndpointConfig) error {
	if err := r.checkEndpoint(cfg); err != nil {
		return err
	}
	cfg.Addrs = slices.Clone(cfg.Addrs)
	ep := &endpoint{cfg: cfg, mtu: max(cfg.Device.MTU(), 0)}
	for _, a := range cfg.Addrs {
		if a.Is4() {
			ep.a4 = a
		} else {
			ep.a6 = a
		}
	}
	r.epMu.Lock()
	defer r.epMu.Unlock()
	if r.closed {
		return fault.Unavailable("router: endpoint %q: the router is closed", cfg.ID)
	}
	cur := r.eps.Load()
	if _, dup := cur.byID[cfg.ID]; dup {
		return fault.Conflict("router: endpoint %q exists already", cfg.ID)
	}
	for _, a := range cfg.Addrs {
		if other := cur.byAddr[a]; other != nil {
			return fault.Conflict("router: endpoint %q: address %v is endpoint %q's", cfg.ID, a, other.cfg.ID)
		}
	}
	r.eps.Store(cur.with(ep, nil))
	if r.runCtx != nil {
		r.startEndpointLocked(ep)
	}
	return nil
}

// checkEndpoint validates cfg against the router's networks.
func (r *Router) checkEndpoint(cfg EndpointConfig) error {
	switch {
	case cfg.ID == "":
		return fault.Invalid("router: an endpoint needs an ID")
	case cfg.Device == nil:
		return fault.Invalid("router: endpoint %q: a device is required", cfg.ID)
	case cfg.Device.Layer() != stack.L3:
		return fault.Invalid("router: endpoint %q: device %s carries Ethernet frames; an endpoint's device carries IP packets (L3)", cfg.ID, cfg.Device.Name())
	case r.layer != stack.L3:
		return fault.Invalid("router: endpoint %q: endpoints need an L3 attachment (tun or netstack), this one is L2 (tap)", cfg.ID)
	case len(cfg.Addrs) == 0 || len(cfg.Addrs) > 2:
		return fault.Invalid("router: endpoint %q: give its addresses, one per family (%d given)", cfg.ID, len(cfg.Addrs))
	case len(cfg.Addrs) == 2 && (!cfg.Addrs[0].Is4() || !cfg.Addrs[1].Is6()):
		return fault.Invalid("router: endpoint %q: two addresses must be an IPv4 one and then an IPv6 one (%v, %v given)", cfg.ID, cfg.Addrs[0], cfg.Addrs[1])
	}
	nets := *r.nets.Load()
	nw, ok := nets[cfg.VNI]
	if !ok {
		return fault.NotFound("router: endpoint %q: this node is not on a network with VNI %d", cfg.ID, cfg.VNI)
	}
	for _, a := range cfg.Addrs {
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			return fault.Invalid("router: endpoint %q: %v is not an IPv4 or IPv6 address", cfg.ID, a)
		}
		if p := nw.prefix(a); !p.Contains(a) {
			if !p.IsValid() {
				return fault.Invalid("router: endpoint %q: %v is an %s address, and its network (VNI %d) has none of that family", cfg.ID, a, family(a), cfg.VNI)
			}
			return fault.Invalid("router: endpoint %q: %v is outside its network's prefix %v", cfg.ID, a, p.Masked())
		}
		for _, n := range nets {
			if n.holds(a) {
				return fault.Conflict("router: endpoint %q: %v is this node's own address (VNI %d)", cfg.ID, a, n.VNI)
			}
		}
	}
	return nil
}

// RemoveEndpoint stops carrying the endpoint: its address leaves the
// table, its device is closed and its read loop waited for. Packets for it
// in flight are dropped. It returns an ErrNotFound error for an unknown
// ID, or the device's Close error.
func (r *Router) RemoveEndpoint(id string) error {
	r.epMu.Lock()
	cur := r.eps.Load()
	ep := cur.byID[id]
	if ep == nil {
		r.epMu.Unlock()
		return fault.NotFound("router: no endpoint %q", id)
	}
	r.eps.Store(cur.with(nil, ep))
	done := ep.done
	r.epMu.Unlock()
	err := ep.cfg.Device.Close()
	if done != nil {
		<-done
	}
	if err != nil {
		return fmt.Errorf("router: endpoint %q: close device: %w", id, err)
	}
	return nil
}

// startEndpointLocked starts ep's read loop. r.epMu is held, and
// r.runCtx set.
func (r *Router) startEndpointLocked(ep *endpoint) {
	ep.done = make(chan struct{})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(ep.done)
		r.endpointLoop(r.runCtx, ep)
	}()
}

// startEndpoints starts the loops of the endpoints added before Start.
func (r *Router) startEndpoints(ctx context.Context) {
	r.epMu.Lock()
	defer r.epMu.Unlock()
	if r.closed {
		return
	}
	r.runCtx = ctx
	for _, ep := range r.eps.Load().byID {
		r.startEndpointLocked(ep)
	}
}

// closeEndpoints refuses new endpoints and closes the devices of those
// hosted, which ends their loops (Close waits for them).
func (r *Router) closeEndpoints() {
	r.epMu.Lock()
	r.closed = true
	cur := r.eps.Load()
	r.eps.Store(noEndpoints)
	r.epMu.Unlock()
	for _, ep := range cur.byID {
		ep.cfg.Device.Close()
	}
}

// endpointBufSize is the size of an endpoint loop's read buffers: the
// device reads packets of at most its MTU (a TUN with offloads splits
// what it coalesced), so an endpoint costs a batch of MTU-sized buffers,
// not of 64 KiB ones.
func endpointBufSize(mtu int) int {
	if mtu <= 0 || mtu > 65535 {
		return bufSize
	}
	return headroom + max(mtu, 1500)
}

// endpointLoop forwards what ep's device reads until the device is closed.
func (r *Router) endpointLoop(ctx context.Context, ep *endpoint) {
	dev := ep.cfg.Device
	n := min(max(dev.BatchSize(), 1), maxBatch)
	b := newOutBatchSized(n, endpointBufSize(ep.mtu))
	b.src = ep
	r.readLoop(ctx, dev, b, "read from endpoint", zap.String("endpoint", ep.cfg.ID))
}

// localPkt is a packet for a local device: an endpoint's, or the
// attachment's when ep is nil.
type localPkt struct {
	ep  *endpoint
	buf []byte // the packet at the batch's offset
}

// flushLocal writes pkts, each at offset off, to their devices: one Write
// per device, in the batch's order. scratch has room for len(pkts).
func (r *Router) flushLocal(pkts []localPkt, scratch [][]byte, off int) {
	for len(pkts) > 0 {
		ep := pkts[0].ep
		group, rest := scratch[:0], pkts[:0]
		for _, p := range pkts {
			if p.ep == ep {
				group = append(group, p.buf)
			} else {
				rest = append(rest, p) // in place: rest never passes the reader
			}
		}
		r.writeLocal(ep, group, off)
		pkts = rest
	}
}

// writeLocal writes bufs (at offset off) to ep's device, or the
// attachment's when ep is nil, and counts them (an endpoint's before the
// write: once a packet is on its device, its count is in Stats).
func (r *Router) writeLocal(ep *endpoint, bufs [][]byte, off int) {
	dev, mu := r.dev, &r.devMu
	if ep != nil {
		dev, mu = ep.cfg.Device, &ep.devMu
		var bytes uint64
		for _, b := range bufs {
			bytes += uint64(len(b) - off)
		}
		ep.in.packets.Add(uint64(len(bufs)))
		ep.in.bytes.Add(bytes)
	}
	mu.Lock()
	n, err := dev.Write(bufs, off)
	mu.Unlock()
	lost := 0
	if err != nil {
		// As flushDeliver: the packets surely lost, at least one.
		lost = max(len(bufs)-n, 1)
		r.drops.AddN(DropWriteError, uint64(lost))
	}
	if ep != nil && lost > 0 {
		ep.inDrops.Add(uint64(lost))
	}
}

// endpointStats returns each hosted endpoint's counters by ID.
func (r *Router) endpointStats() map[string]EndpointStats {
	eps := r.eps.Load()
	m := make(map[string]EndpointStats, len(eps.byID))
	for id, ep := range eps.byID {
		m[id] = EndpointStats{
			VNI: ep.cfg.VNI, Addrs: slices.Clone(ep.cfg.Addrs),
			Outbound: ep.out.load(), Inbound: ep.in.load(),
			OutboundDrops: ep.outDrops.Load(), InboundDrops: ep.inDrops.Load(),
		}
	}
	return m
}

// family names a's family for messages: "IPv4" or "IPv6".
func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
