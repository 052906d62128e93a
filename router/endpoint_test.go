package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/packet"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/stack/stacktest"
	"github.com/overlayd/overlayd/udp/udptest"
	"github.com/overlayd/overlayd/vxlan"
)

const otherVNI = 43

var (
	ep1Addr = netip.MustParseAddr("10.1.1.10") // on testVNI, inside B's route to A (10.1.1.0/24)
	ep2Addr = netip.MustParseAddr("10.1.1.11")
	addrG   = netip.MustParsePrefix("10.2.0.1/16") // A's address on otherVNI
	epGAddr = netip.MustParseAddr("10.2.0.10")     // an endpoint on otherVNI
	routeG  = Route{Prefix: netip.MustParsePrefix("10.2.5.0/24"), VTEP: vtepB, VNI: otherVNI, Owner: "test"}
)

// sinkDev is an L3 device that reads nothing and takes every write
// without copying it: for measuring the router alone.
type sinkDev struct {
	written atomic.Uint64
	closed  chan struct{}
}

var _ stack.Device = (*sinkDev)(nil)

func newSink() *sinkDev { return &sinkDev{closed: make(chan struct{})} }

func (d *sinkDev) Read([][]byte, []int, int) (int, error) { <-d.closed; return 0, stack.ErrClosed }
func (d *sinkDev) Write(bufs [][]byte, _ int) (int, error) {
	d.written.Add(uint64(len(bufs)))
	return len(bufs), nil
}
func (d *sinkDev) Layer() stack.Layer { return stack.L3 }
func (d *sinkDev) MTU() int           { return 9000 }
func (d *sinkDev) BatchSize() int     { return 64 }
func (d *sinkDev) Name() string       { return "sink" }
func (d *sinkDev) Close() error {
	select {
	case <-d.closed:
	default:
		close(d.closed)
	}
	return nil
}

// addEP adds an endpoint or fails the test.
func addEP(t testing.TB, r *Router, id string, vni uint32, a netip.Addr, dev stack.Device) *endpoint {
	t.Helper()
	if err := r.AddEndpoint(EndpointConfig{ID: id, VNI: vni, Addrs: []netip.Addr{a}, Device: dev}); err != nil {
		t.Fatal(err)
	}
	return r.eps.Load().byID[id]
}

// epRouter is a router that is not started, on testVNI (addrA) and
// otherVNI (addrG), with B's route and MAC known on testVNI and a route on
// otherVNI, for driving the paths by hand.
func epRouter(tb testing.TB, opts Options) *Router {
	tb.Helper()
	opts.Networks = []Network{{VNI: testVNI, Addrs: []netip.Prefix{addrA}}, {VNI: otherVNI, Addrs: []netip.Prefix{addrG}}}
	if opts.PathMTU == 0 {
		opts.PathMTU = 9000
	}
	r, err := New(newSink(), udptest.NewNetwork().Conn(vtepA), opts)
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.SetRoutes([]Route{{Prefix: netip.MustParsePrefix("10.1.2.0/24"), VTEP: vtepB, VNI: testVNI}, routeG}, nil); err != nil {
		tb.Fatal(err)
	}
	r.neigh.set(neighKey{vni: testVNI, ip: addrB.Addr()}, macB)
	tb.Cleanup(func() { r.Close() })
	return r
}

// sendFrom runs one outbound batch of pkts read from ep (nil: the
// attachment), flushing local deliveries, and returns the batch.
func sendFrom(r *Router, ep *endpoint, pkts ...[]byte) *outBatch {
	b := newOutBatch(len(pkts))
	b.src = ep
	for i, p := range pkts {
		copy(b.bufs[i][headroom:], p)
		b.sizes[i] = len(p)
	}
	r.outbound(b, len(pkts))
	r.flushLocal(b.local, b.scratch, headroom)
	return b
}

// datagram is a VXLAN datagram from B on vni carrying pkt to A's MAC.
func datagram(r *Router, vni uint32, pkt []byte) []byte {
	buf := make([]byte, headroom+vxlan.EncapLen+len(pkt))
	copy(buf[headroom+vxlan.EncapLen:], pkt)
	return append([]byte(nil), vxlan.Encap(buf, headroom+vxlan.EncapLen, len(pkt), vni, r.MAC(), macB, vxlan.EtherTypeIPv4)...)
}

// recvFrom runs one inbound batch of datagrams from src, flushing
// deliveries, and returns the batch.
func recvFrom(r *Router, src netip.AddrPort, ds ...[]byte) *inBatch {
	b := newInBatch(len(ds))
	for i, d := range ds {
		b.sizes[i] = copy(b.rbufs[i], d)
		b.srcs[i] = src
	}
	r.inbound(b, len(ds))
	r.flushDeliver(b)
	r.flushLocal(b.local, b.scratch, headroom+vxlan.EncapLen)
	return b
}

func udpTo(src, dst netip.Addr, payload string) []byte {
	return ipv4UDP(src, dst, 1000, 2000, []byte(payload), false)
}

// Endpoints of one network on one node reach each other through the
// router alone, byte-exact, and never touch the underlay; the counters
// say so.
func TestEndpointLocalSwitching(t *testing.T) {
	p := newPair(t, Options{})
	d1, d2 := stacktest.NewPipe(), stacktest.NewPipe()
	must(t, p.rtA.AddEndpoint(EndpointConfig{ID: "e1", VNI: testVNI, Addrs: []netip.Addr{ep1Addr}, Device: d1}))
	must(t, p.rtA.AddEndpoint(EndpointConfig{ID: "e2", VNI: testVNI, Addrs: []netip.Addr{ep2Addr}, Device: d2}))
	there := udpTo(ep1Addr, ep2Addr, "over there")
	back := udpTo(ep2Addr, ep1Addr, "and back")
	must(t, d1.Inject(there))
	if got := next(t, d2); !bytes.Equal(got, there) {
		t.Fatalf("e2 received %x, want %x", got, there)
	}
	must(t, d2.Inject(back))
	if got := next(t, d1); !bytes.Equal(got, back) {
		t.Fatalf("e1 received %x, want %x", got, back)
	}
	st := p.rtA.Stats()
	if st.Outbound.Packets != 0 || st.Inbound.Packets != 0 || p.rtB.Stats().Inbound.Packets != 0 {
		t.Errorf("local switching touched the underlay: A out %v in %v, B in %v", st.Outbound, st.Inbound, p.rtB.Stats().Inbound)
	}
	if want := (Counters{Packets: 2, Bytes: uint64(len(there) + len(back))}); st.Local != want {
		t.Errorf("Stats().Local = %+v, want %+v", st.Local, want)
	}
	e1 := st.Endpoints["e1"]
	if e1.VNI != testVNI || !slices.Equal(e1.Addrs, []netip.Addr{ep1Addr}) ||
		e1.Outbound != (Counters{1, uint64(len(there))}) || e1.Inbound != (Counters{1, uint64(len(back))}) ||
		e1.OutboundDrops != 0 || e1.InboundDrops != 0 {
		t.Errorf("Stats().Endpoints[e1] = %+v", e1)
	}
	if len(st.Drops) != 0 {
		t.Errorf("drops %v", st.Drops)
	}
}

// An endpoint reaches the node's own address on its network (the
// attachment) and the attachment reaches the endpoint, both locally.
func TestEndpointAndAttachment(t *testing.T) {
	p := newPair(t, Options{})
	d1 := stacktest.NewPipe()
	must(t, p.rtA.AddEndpoint(EndpointConfig{ID: "e1", VNI: testVNI, Addrs: []netip.Addr{ep1Addr}, Device: d1}))
	up := udpTo(ep1Addr, addrA.Addr(), "to the host")
	must(t, d1.Inject(up))
	if got := next(t, p.devA); !bytes.Equal(got, up) {
		t.Fatalf("the attachment received %x, want %x", got, up)
	}
	down := udpTo(addrA.Addr(), ep1Addr, "to the endpoint")
	must(t, p.devA.Inject(down))
	if got := next(t, d1); !bytes.Equal(got, down) {
		t.Fatalf("e1 received %x, want %x", got, down)
	}
	if st := p.rtA.Stats(); st.Outbound.Packets != 0 || st.Local.Packets != 2 {
		t.Errorf("out %v, local %v: want 0 and 2", st.Outbound, st.Local)
	}
}

// An endpoint's packets to another of the attachment's addresses on its
// network (the DNS address, Network.Local) go to the attachment; a Local
// address outside the network is refused by SetNetworks.
func TestEndpointToLocalAddress(t *testing.T) {
	p := newPair(t, Options{})
	dnsA := netip.MustParseAddr("10.1.0.1")
	must(t, p.rtA.SetNetworks([]Network{{VNI: testVNI, Addrs: []netip.Prefix{addrA}, Local: []netip.Addr{dnsA}}}))
	d1 := stacktest.NewPipe()
	must(t, p.rtA.AddEndpoint(EndpointConfig{ID: "e1", VNI: testVNI, Addrs: []netip.Addr{ep1Addr}, Device: d1}))
	q := udpTo(ep1Addr, dnsA, "a DNS query")
	must(t, d1.Inject(q))
	if got := next(t, p.devA); !bytes.Equal(got, q) {
		t.Fatalf("the attachment received %x, want %x", got, q)
	}
	if st := p.rtA.Stats(); st.Outbound.Packets != 0 || st.Local.Packets != 1 || len(st.Drops) != 0 {
		t.Errorf("out %v, local %v, drops %v: want 0, 1, none", st.Outbound, st.Local, st.Drops)
	}
	if err := p.rtA.AddEndpoint(EndpointConfig{ID: "e2", VNI: testVNI, Addrs: []netip.Addr{dnsA}, Device: stacktest.NewPipe()}); !errors.Is(err, fault.ErrConflict) {
		t.Errorf("an endpoint on the DNS address: %v, want a conflict", err)
	}
	if err := p.rtA.SetNetworks([]Network{{VNI: testVNI, Addrs: []netip.Prefix{addrA}, Local: []netip.Addr{netip.MustParseAddr("10.9.0.1")}}}); err == nil {
		t.Error("a Local address outside the network was accepted")
	}
}

// An endpoint reaches a remote node over VXLAN and back; the remote node
// resolves the endpoint's address by ARP first (A answers for it).
func TestEndpointOverVXLAN(t *testing.T) {
	p := newPair(t, Options{})
	d1 := stacktest.NewPipe()
	must(t, p.rtA.AddEndpoint(EndpointConfig{ID: "e1", VNI: testVNI, Addrs: []netip.Addr{ep1Addr}, Device: d1}))
	first := udpTo(addrB.Addr(), ep1Addr, "B speaks first")
	must(t, p.devB.Inject(first))
	if got := next(t, d1); !bytes.Equal(got, first) {
		t.Fatalf("e1 received %x, want %x", got, first)
	}
	if p.rtA.Stats().ARPAnswers != 1 {
		t.Errorf("A answered %d ARP requests for its endpoint, want 1", p.rtA.Stats().ARPAnswers)
	}
	reply := udpTo(ep1Addr, addrB.Addr(), "e1 answers")
	must(t, d1.Inject(reply))
	if got := next(t, p.devB); !bytes.Equal(got, reply) {
		t.Fatalf("B received %x, want %x", got, reply)
	}
	st := p.rtA.Stats()
	e1 := st.Endpoints["e1"]
	if e1.Outbound.Packets != 1 || e1.Inbound.Packets != 1 || st.Outbound.Packets != 1 || st.Inbound.Packets != 1 || st.Local.Packets != 0 {
		t.Errorf("e1 %+v, router out %v in %v local %v", e1, st.Outbound, st.Inbound, st.Local)
	}
	if st.PerNetwork[testVNI].Outbound.Packets != 1 {
		t.Errorf("per network %v", st.PerNetwork)
	}
}

// An endpoint sends from its own address only: anything else is dropped
// and counted, as the router's drop and the endpoint's.
func TestEndpointSpoofedSource(t *testing.T) {
	r := epRouter(t, Options{})
	d2 := newSink()
	e1 := addEP(t, r, "e1", testVNI, ep1Addr, newSink())
	addEP(t, r, "e2", testVNI, ep2Addr, d2)
	for _, src := range []netip.Addr{ep2Addr, addrA.Addr(), netip.MustParseAddr("10.1.1.99"), netip.MustParseAddr("192.0.2.7")} {
		for _, dst := range []netip.Addr{ep2Addr, addrA.Addr(), addrB.Addr()} {
			b := sendFrom(r, e1, udpTo(src, dst, "forged"))
			if len(b.send) != 0 || len(b.local) != 0 {
				t.Errorf("%v → %v from e1 was forwarded", src, dst)
			}
		}
	}
	if got := r.drops.Load(DropSpoofedSource); got != 12 {
		t.Errorf("%d spoofed_source drops, want 12", got)
	}
	if st := r.Stats().Endpoints["e1"]; st.OutboundDrops != 12 || st.Outbound.Packets != 0 {
		t.Errorf("e1 %+v, want 12 outbound drops", st)
	}
	if d2.written.Load() != 0 || r.dev.(*sinkDev).written.Load() != 0 {
		t.Error("a forged packet was written to a device")
	}
}

// An endpoint on one network reaches nothing of another: not its
// endpoints, not the node's address on it, not its routes; the underlay's
// traffic of one VNI reaches no endpoint of another, and ARP on one VNI is
// not answered for another's endpoint.
func TestEndpointIsolation(t *testing.T) {
	r := epRouter(t, Options{})
	dr, dg := newSink(), newSink()
	red := addEP(t, r, "red", testVNI, ep1Addr, dr)
	green := addEP(t, r, "green", otherVNI, epGAddr, dg)
	for _, tt := range []struct {
		from *endpoint
		dst  netip.Addr
	}{
		{red, epGAddr},                         // another network's endpoint
		{red, addrG.Addr()},                    // the node's address on another network
		{red, netip.MustParseAddr("10.2.5.7")}, // a route on another network
		{green, ep1Addr},
		{green, addrA.Addr()},
		{green, addrB.Addr()},
	} {
		b := sendFrom(r, tt.from, udpTo(tt.from.a4, tt.dst, "across"))
		if len(b.send) != 0 || len(b.local) != 0 || len(b.icmp) != 0 {
			t.Errorf("%s → %v crossed networks (send %d, local %d, icmp %d)", tt.from.cfg.ID, tt.dst, len(b.send), len(b.local), len(b.icmp))
		}
	}
	if got := r.drops.Load(DropOtherNetwork); got != 6 {
		t.Errorf("%d other_network drops, want 6", got)
	}
	// The attachment is on both networks: it reaches both endpoints.
	sendFrom(r, nil, udpTo(addrA.Addr(), ep1Addr, "host"), udpTo(addrG.Addr(), epGAddr, "host"))
	if dr.written.Load() != 1 || dg.written.Load() != 1 {
		t.Errorf("from the attachment: red got %d, green %d, want 1 each", dr.written.Load(), dg.written.Load())
	}

	// Inbound: red's address on green's VNI is not for us.
	must(t, r.SetRoutes([]Route{{Prefix: netip.MustParsePrefix("10.1.2.0/24"), VTEP: vtepB, VNI: testVNI}, {Prefix: netip.MustParsePrefix("10.2.2.0/24"), VTEP: vtepB, VNI: otherVNI}}, nil))
	before := r.drops.Load(DropNotForUs)
	recvFrom(r, vtepB, datagram(r, otherVNI, udpTo(netip.MustParseAddr("10.2.2.1"), ep1Addr, "wrong vni")))
	if dr.written.Load() != 1 || r.drops.Load(DropNotForUs) != before+1 {
		t.Errorf("a datagram on VNI %d for red (VNI %d) was not dropped as not_for_us", otherVNI, testVNI)
	}
	// ARP on otherVNI for red's address: no answer.
	arp := make([]byte, 64+vxlan.ARPLen)
	vxlan.ARP(arp[64:]).EncodeRequest(macB, netip.MustParseAddr("10.2.2.1"), ep1Addr)
	ib := recvFrom(r, vtepB, vxlan.Encap(arp, 64, vxlan.ARPLen, otherVNI, vxlan.Broadcast, macB, vxlan.EtherTypeARP))
	if len(ib.reply.send) != 0 {
		t.Errorf("ARP on VNI %d for red's address was answered", otherVNI)
	}
}

// A kernel vxlan peer asking who has an endpoint's address gets the
// node's MAC; a peer claiming a hosted endpoint's address is not learned.
func TestEndpointARP(t *testing.T) {
	r := epRouter(t, Options{})
	addEP(t, r, "e1", testVNI, ep1Addr, newSink())
	arp := make([]byte, 64+vxlan.ARPLen)
	vxlan.ARP(arp[64:]).EncodeRequest(macB, addrB.Addr(), ep1Addr)
	b := recvFrom(r, vtepB, vxlan.Encap(arp, 64, vxlan.ARPLen, testVNI, vxlan.Broadcast, macB, vxlan.EtherTypeARP))
	if len(b.reply.send) != 1 || b.reply.dsts[0] != vtepB {
		t.Fatalf("ARP request for an endpoint: %d replies", len(b.reply.send))
	}
	vni, f, err := vxlan.Decap(b.reply.send[0])
	a := vxlan.ARP(f.Payload())
	if err != nil || vni != testVNI || !a.IsValid() || a.Op() != vxlan.ARPReply || a.SenderIP() != ep1Addr ||
		a.SenderMAC() != r.MAC() || a.TargetIP() != addrB.Addr() || a.TargetMAC() != macB {
		t.Fatalf("reply %x: vni %d, err %v", b.reply.send[0], vni, err)
	}

	// B routes 10.1.2.0/24; a forged ARP from B for e1's address as sender.
	vxlan.ARP(arp[64:]).EncodeRequest(macB, ep1Addr, addrA.Addr())
	before := r.drops.Load(DropNotForUs)
	recvFrom(r, vtepB, vxlan.Encap(arp, 64, vxlan.ARPLen, testVNI, vxlan.Broadcast, macB, vxlan.EtherTypeARP))
	if _, ok := r.Neighbors()[ep1Addr]; ok || r.drops.Load(DropNotForUs) != before+1 {
		t.Errorf("an ARP claiming the endpoint's address was learned (neighbours %v)", r.Neighbors())
	}
}

// Outbound from an endpoint follows the attachment's rules: no route is
// answered with ICMP net unreachable, too big with DF with ICMP
// fragmentation needed, both to the endpoint's own device.
func TestEndpointICMPErrors(t *testing.T) {
	p := newPair(t, Options{PathMTU: 1000})
	d1 := stacktest.New(stacktest.Options{MTU: 9000})
	must(t, p.rtA.AddEndpoint(EndpointConfig{ID: "e1", VNI: testVNI, Addrs: []netip.Addr{ep1Addr}, Device: d1}))
	must(t, d1.Inject(ipv4UDP(ep1Addr, netip.MustParseAddr("10.1.9.9"), 1, 2, []byte("nowhere"), false)))
	icmp := header.IPv4(next(t, d1))
	if icmp.Protocol() != uint8(header.ICMPv4ProtocolNumber) || header.ICMPv4(icmp.Payload()).Code() != header.ICMPv4NetUnreachable ||
		icmp.DestinationAddress().As4() != ep1Addr.As4() {
		t.Fatalf("no route: e1 got %x, want ICMP net unreachable", []byte(icmp))
	}
	must(t, d1.Inject(ipv4UDP(ep1Addr, addrB.Addr(), 1, 2, make([]byte, 1200), true)))
	icmp = header.IPv4(next(t, d1))
	m := header.ICMPv4(icmp.Payload())
	if m.Code() != header.ICMPv4FragmentationNeeded || m.MTU() != 1000 {
		t.Fatalf("too big: e1 got %x, want fragmentation needed with MTU 1000", []byte(icmp))
	}
	waitDrops(t, p.rtA, "too big", DropTooBig, 1)
	if st := p.rtA.Stats().Endpoints["e1"]; st.OutboundDrops != 2 {
		t.Errorf("e1 %+v, want 2 outbound drops", st)
	}
}

// A service VIP works from an endpoint, with another local endpoint as
// the backend: DNAT on the way there, reverse NAT on the reply, both
// switched locally.
func TestEndpointServiceVIP(t *testing.T) {
	bal, err := lb.New(lb.Options{})
	must(t, err)
	vip := netip.MustParseAddrPort("10.1.200.1:80")
	backend := netip.AddrPortFrom(ep2Addr, 8080)
	must(t, bal.Set([]lb.Service{{Name: "web", VIP: vip.Addr(), Ports: []lb.PortProto{{Port: 80, Proto: lb.TCP}},
		Backends: []lb.Backend{{Addr: backend, Weight: 1}}}}))
	r := epRouter(t, Options{Balancer: bal})
	d1, d2 := stacktest.NewPipe(), stacktest.NewPipe()
	e1, e2 := addEP(t, r, "e1", testVNI, ep1Addr, d1), addEP(t, r, "e2", testVNI, ep2Addr, d2)
	client := netip.AddrPortFrom(ep1Addr, 40000)
	sendFrom(r, e1, ipv4TCP(client, vip, header.TCPFlagSyn, 1))
	got := header.IPv4(next(t, d2))
	if tcp := header.TCP(got.Payload()); got.DestinationAddress().As4() != ep2Addr.As4() || tcp.DestinationPort() != 8080 {
		t.Fatalf("the backend saw a segment to %v:%d", got.DestinationAddress(), tcp.DestinationPort())
	}
	sendFrom(r, e2, ipv4TCP(backend, client, header.TCPFlagSyn|header.TCPFlagAck, 100))
	reply := header.IPv4(next(t, d1))
	if tcp := header.TCP(reply.Payload()); reply.SourceAddress().As4() != vip.Addr().As4() || tcp.SourcePort() != 80 ||
		!reply.IsChecksumValid() || !tcp.IsChecksumValid(reply.SourceAddress(), reply.DestinationAddress(), 0, 0) {
		t.Fatalf("the client saw the reply from %v:%d (checksums valid: %v)", reply.SourceAddress(), tcp.SourcePort(), reply.IsChecksumValid())
	}
}

// AddEndpoint refuses what it cannot carry, with the fault kind callers
// branch on; RemoveEndpoint of an unknown ID is not found.
func TestAddEndpointErrors(t *testing.T) {
	r := epRouter(t, Options{})
	addEP(t, r, "e1", testVNI, ep1Addr, newSink())
	for _, tt := range []struct {
		cfg  EndpointConfig
		kind error
	}{
		{EndpointConfig{VNI: testVNI, Addrs: []netip.Addr{ep2Addr}, Device: newSink()}, fault.ErrInvalid},
		{EndpointConfig{ID: "x", VNI: testVNI, Addrs: []netip.Addr{ep2Addr}}, fault.ErrInvalid},
		{EndpointConfig{ID: "x", VNI: testVNI, Addrs: []netip.Addr{ep2Addr}, Device: stacktest.New(stacktest.Options{Layer: stack.L2})}, fault.ErrInvalid},
		{EndpointConfig{ID: "x", VNI: testVNI, Addrs: []netip.Addr{netip.MustParseAddr("fd00::1")}, Device: newSink()}, fault.ErrInvalid},
		{EndpointConfig{ID: "x", VNI: testVNI, Addrs: []netip.Addr{netip.MustParseAddr("10.9.0.1")}, Device: newSink()}, fault.ErrInvalid},
		{EndpointConfig{ID: "x", VNI: 99, Addrs: []netip.Addr{ep2Addr}, Device: newSink()}, fault.ErrNotFound},
		{EndpointConfig{ID: "x", VNI: testVNI, Addrs: []netip.Addr{addrA.Addr()}, Device: newSink()}, fault.ErrConflict},
		{EndpointConfig{ID: "e1", VNI: testVNI, Addrs: []netip.Addr{ep2Addr}, Device: newSink()}, fault.ErrConflict},
		{EndpointConfig{ID: "x", VNI: testVNI, Addrs: []netip.Addr{ep1Addr}, Device: newSink()}, fault.ErrConflict},
	} {
		if err := r.AddEndpoint(tt.cfg); !errors.Is(err, tt.kind) {
			t.Errorf("AddEndpoint(%+v) = %v, want a %v", tt.cfg, err, tt.kind)
		}
	}
	if n := len(r.Stats().Endpoints); n != 1 {
		t.Errorf("%d endpoints after the refusals, want 1", n)
	}
	if err := r.RemoveEndpoint("nope"); !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("RemoveEndpoint(nope) = %v, want not found", err)
	}
	tap, err := New(stacktest.New(stacktest.Options{Layer: stack.L2}), udptest.NewNetwork().Conn(vtepA), Options{Networks: []Network{{VNI: testVNI, Addrs: []netip.Prefix{addrA}}}})
	must(t, err)
	if err := tap.AddEndpoint(EndpointConfig{ID: "x", VNI: testVNI, Addrs: []netip.Addr{ep2Addr}, Device: newSink()}); !errors.Is(err, fault.ErrInvalid) {
		t.Errorf("AddEndpoint on an L2 router = %v, want invalid", err)
	}
	r.Close()
	if err := r.AddEndpoint(EndpointConfig{ID: "late", VNI: testVNI, Addrs: []netip.Addr{ep2Addr}, Device: newSink()}); !errors.Is(err, fault.ErrUnavailable) {
		t.Errorf("AddEndpoint after Close = %v, want unavailable", err)
	}
}

// Endpoints come and go while the router forwards: one added before Start
// runs from Start, one added later runs at once, a removed one's device
// is closed and its loop gone (goleak checks the rest at exit), its
// address is no longer delivered, and Close closes the others.
func TestEndpointLifecycle(t *testing.T) {
	dev, ul := stacktest.NewPipe(), udptest.NewNetwork().Conn(vtepA)
	defer dev.Close()
	defer ul.Close()
	r, err := New(dev, ul, Options{Networks: []Network{{VNI: testVNI, Addrs: []netip.Prefix{addrA}}}})
	must(t, err)
	d1, d2 := stacktest.NewPipe(), stacktest.NewPipe()
	must(t, r.AddEndpoint(EndpointConfig{ID: "e1", VNI: testVNI, Addrs: []netip.Addr{ep1Addr}, Device: d1}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.Start(ctx)
	must(t, r.AddEndpoint(EndpointConfig{ID: "e2", VNI: testVNI, Addrs: []netip.Addr{ep2Addr}, Device: d2}))
	ping := udpTo(ep1Addr, ep2Addr, "ping")
	must(t, d1.Inject(ping))
	next(t, d2)
	must(t, d2.Inject(udpTo(ep2Addr, ep1Addr, "pong")))
	next(t, d1)

	must(t, r.RemoveEndpoint("e2"))
	if err := d2.Inject(ping); !errors.Is(err, stack.ErrClosed) {
		t.Errorf("e2's device after RemoveEndpoint: Inject = %v, want closed", err)
	}
	if err := r.RemoveEndpoint("e2"); !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("a second RemoveEndpoint(e2) = %v, want not found", err)
	}
	must(t, d1.Inject(ping)) // e2 is gone: no route for its address
	waitDrops(t, r, "e2 gone", DropNoRoute, 1)
	if _, ok := r.Stats().Endpoints["e2"]; ok {
		t.Error("e2 still in Stats after RemoveEndpoint")
	}
	// The address is free again.
	d3 := stacktest.NewPipe()
	must(t, r.AddEndpoint(EndpointConfig{ID: "e3", VNI: testVNI, Addrs: []netip.Addr{ep2Addr}, Device: d3}))
	must(t, d1.Inject(ping))
	next(t, d3)

	dev.Close()
	ul.Close()
	must(t, r.Close())
	for _, d := range []*stacktest.Fake{d1, d3} {
		if err := d.Inject(ping); !errors.Is(err, stack.ErrClosed) {
			t.Errorf("%s after Close: Inject = %v, want closed", d.Name(), err)
		}
	}
}

// Adding and removing endpoints while traffic flows through them races
// with nothing (go test -race) and loses no loop.
func TestEndpointChurnWhileForwarding(t *testing.T) {
	p := newPair(t, Options{})
	d1 := stacktest.NewPipe()
	must(t, p.rtA.AddEndpoint(EndpointConfig{ID: "e1", VNI: testVNI, Addrs: []netip.Addr{ep1Addr}, Device: d1}))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		pkt := udpTo(ep1Addr, ep2Addr, "churn")
		for {
			select {
			case <-stop:
				return
			default:
			}
			if d1.Inject(pkt) != nil {
				return
			}
			select {
			case <-d1.Captured(): // ICMP net unreachable while e2 is away
			default:
			}
		}
	}()
	for i := range 50 {
		d2 := stacktest.New(stacktest.Options{QueueLen: 4})
		must(t, p.rtA.AddEndpoint(EndpointConfig{ID: "e2", VNI: testVNI, Addrs: []netip.Addr{ep2Addr}, Device: d2}))
		if i%10 == 0 {
			next(t, d2)
		}
		must(t, p.rtA.RemoveEndpoint("e2"))
	}
	close(stop)
	<-done
	testutil.Eventually(t, 5*time.Second, "e1 counted", func() error {
		if st := p.rtA.Stats().Endpoints["e1"]; st.Outbound.Packets == 0 {
			return fmt.Errorf("e1 %+v", st)
		}
		return nil
	})
}

// The endpoint paths allocate nothing in steady state: endpoint to
// endpoint (with the local write), endpoint to VXLAN, VXLAN to endpoint.
func TestEndpointHotPathAllocatesNothing(t *testing.T) {
	r := epRouter(t, Options{})
	e1 := addEP(t, r, "e1", testVNI, ep1Addr, newSink())
	d2 := newSink()
	addEP(t, r, "e2", testVNI, ep2Addr, d2)
	const n = 64
	for _, tt := range []struct {
		name string
		dst  netip.Addr
		send int // datagrams for the underlay
	}{
		{"endpoint→endpoint", ep2Addr, 0},
		{"endpoint→vxlan", addrB.Addr(), n},
		{"endpoint→attachment", addrA.Addr(), 0},
	} {
		b := newOutBatchSized(n, endpointBufSize(9000))
		b.src = e1
		fillOut(b, ipv4UDP(ep1Addr, tt.dst, 1, 2, make([]byte, 1400), false), n)
		if allocs := testing.AllocsPerRun(100, func() {
			b.reset()
			r.outbound(b, n)
			r.flushLocal(b.local, b.scratch, headroom)
		}); allocs != 0 || len(b.send) != tt.send {
			t.Errorf("%s: %v allocs per batch of %d (sent %d), want 0", tt.name, allocs, n, len(b.send))
		}
	}
	in := newInBatch(n)
	fillIn(r, in, ipv4UDP(addrB.Addr(), ep2Addr, 2, 1, make([]byte, 1400), false), n)
	r.inbound(in, n) // learns B once
	before := d2.written.Load()
	if allocs := testing.AllocsPerRun(100, func() {
		in.deliver, in.local = in.deliver[:0], in.local[:0]
		in.reply.reset()
		r.inbound(in, n)
		r.flushLocal(in.local, in.scratch, headroom+vxlan.EncapLen)
	}); allocs != 0 || len(in.local) != n || d2.written.Load() == before {
		t.Errorf("vxlan→endpoint: %v allocs per batch of %d (to endpoints %d), want 0", allocs, n, len(in.local))
	}
	if d := r.drops.Snapshot(); len(d) != 0 {
		t.Errorf("drops %v", d)
	}
}

// FuzzEndpointOutbound: any packet from an endpoint is forwarded,
// answered or dropped and counted; never a panic, never a packet from
// another address, never another network.
func FuzzEndpointOutbound(f *testing.F) {
	r := epRouter(f, Options{})
	e1 := addEP(f, r, "e1", testVNI, ep1Addr, newSink())
	addEP(f, r, "e2", testVNI, ep2Addr, newSink())
	addEP(f, r, "g", otherVNI, epGAddr, newSink())
	b := newOutBatch(1)
	b.src = e1
	for _, dst := range []netip.Addr{ep2Addr, epGAddr, addrA.Addr(), addrG.Addr(), addrB.Addr(), netip.MustParseAddr("10.2.5.1")} {
		f.Add(udpTo(ep1Addr, dst, "seed"))
	}
	f.Add(udpTo(ep2Addr, addrB.Addr(), "forged"))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) > len(b.bufs[0])-headroom {
			return
		}
		b.reset()
		copy(b.bufs[0][headroom:], pkt)
		b.sizes[0] = len(pkt)
		before := sum(r.drops.Snapshot()) + e1.out.packets.Load() + uint64(r.pending.len())
		r.outbound(b, 1)
		after := sum(r.drops.Snapshot()) + e1.out.packets.Load() + uint64(r.pending.len())
		var v packet.IP
		parsed := v.Parse(pkt)
		if after == before && len(b.send) == 0 && !parsed {
			t.Fatalf("packet %x neither forwarded nor counted", pkt)
		}
		if len(b.send)+len(b.local) > 0 && v.SrcAddr() != ep1Addr {
			t.Fatalf("packet %x from another address forwarded", pkt)
		}
		for _, lp := range b.local {
			if lp.ep != nil && lp.ep.cfg.VNI != testVNI {
				t.Fatalf("packet %x switched to another network's endpoint", pkt)
			}
		}
		for _, d := range b.dsts {
			if d != vtepB {
				t.Fatalf("packet %x sent to %v", pkt, d)
			}
		}
		if len(b.send) > 0 {
			if vni, _, err := vxlan.Decap(b.send[0]); err != nil || vni != testVNI {
				t.Fatalf("packet %x sent on VNI %d", pkt, vni)
			}
		}
	})
}

// BenchmarkLocalSwitch is endpoint↔endpoint on one node: the source
// check, the endpoint lookup and the write to the other endpoint's device
// (a sink), for a batch of 64.
func BenchmarkLocalSwitch(b *testing.B) {
	for _, size := range []int{64, 1400, 8972} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			r := epRouter(b, Options{})
			e1 := addEP(b, r, "e1", testVNI, ep1Addr, newSink())
			addEP(b, r, "e2", testVNI, ep2Addr, newSink())
			const n = 64
			out := newOutBatchSized(n, endpointBufSize(9000))
			out.src = e1
			fillOut(out, ipv4UDP(ep1Addr, ep2Addr, 1, 2, make([]byte, size-28), false), n)
			b.ReportAllocs()
			b.SetBytes(int64(size * n))
			b.ResetTimer()
			for range b.N {
				out.reset()
				r.outbound(out, n)
				r.flushLocal(out.local, out.scratch, headroom)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pkt")
		})
	}
}

// One batch from an endpoint to several places: each packet goes where
// its destination says (the per-batch caches follow the destination), one
// Write per device, in order.
func TestEndpointMixedBatch(t *testing.T) {
	r := epRouter(t, Options{})
	d2, d3 := stacktest.NewPipe(), stacktest.NewPipe()
	e1 := addEP(t, r, "e1", testVNI, ep1Addr, newSink())
	addEP(t, r, "e2", testVNI, ep2Addr, d2)
	ep3Addr := netip.MustParseAddr("10.1.1.12")
	addEP(t, r, "e3", testVNI, ep3Addr, d3)
	var pkts [][]byte
	for i, dst := range []netip.Addr{ep2Addr, ep2Addr, addrA.Addr(), ep3Addr, ep2Addr, addrB.Addr(), netip.MustParseAddr("10.2.5.7"), ep3Addr, addrB.Addr(), ep2Addr} {
		pkts = append(pkts, udpTo(ep1Addr, dst, fmt.Sprint("packet ", i)))
	}
	b := sendFrom(r, e1, pkts...)
	if len(b.send) != 2 {
		t.Errorf("%d datagrams for the underlay, want 2", len(b.send))
	}
	for _, tt := range []struct {
		dev  *stacktest.Fake
		want []int
	}{{d2, []int{0, 1, 4, 9}}, {d3, []int{3, 7}}} {
		for _, i := range tt.want {
			if got := next(t, tt.dev); !bytes.Equal(got, pkts[i]) {
				t.Errorf("%v received %q, want packet %d", tt.dev.Name(), got[28:], i)
			}
		}
		if tt.dev.Written() != uint64(len(tt.want)) {
			t.Errorf("%d packets written, want %d", tt.dev.Written(), len(tt.want))
		}
	}
	if got := r.dev.(*sinkDev).written.Load(); got != 1 {
		t.Errorf("the attachment got %d packets, want 1", got)
	}
	if got := r.drops.Load(DropOtherNetwork); got != 1 {
		t.Errorf("%d other_network drops, want 1", got)
	}
	if st := r.Stats(); st.Local.Packets != 7 || st.Outbound.Packets != 2 || st.Endpoints["e1"].Outbound.Packets != 9 || st.Endpoints["e1"].OutboundDrops != 1 {
		t.Errorf("local %v, outbound %v, e1 %+v", st.Local, st.Outbound, st.Endpoints["e1"])
	}
}
