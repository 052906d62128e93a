package router

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/packet"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/stack/stacktest"
	"github.com/overlayd/overlayd/udp/udptest"
	"github.com/overlayd/overlayd/vxlan"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	_ Underlay = (*udptest.Conn)(nil)

	vtepA = netip.MustParseAddrPort("192.0.2.1:4789")
	vtepB = netip.MustParseAddrPort("192.0.2.2:4789")
	addrA = netip.MustParsePrefix("10.1.1.1/16")
	addrB = netip.MustParsePrefix("10.1.2.1/16")
)

const testVNI = 42

// ipv4UDP builds an IPv4/UDP packet with valid checksums.
func ipv4UDP(src, dst netip.Addr, sport, dport uint16, payload []byte, df bool) []byte {
	total := header.IPv4MinimumSize + header.UDPMinimumSize + len(payload)
	pkt := make([]byte, total)
	ip := header.IPv4(pkt)
	var flags uint8
	if df {
		flags = header.IPv4FlagDontFragment
	}
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(total), TTL: 64, Protocol: uint8(header.UDPProtocolNumber), Flags: flags,
		SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(pkt[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(header.UDPMinimumSize + len(payload))})
	copy(u.Payload(), payload)
	return pkt
}

type pair struct {
	net        *udptest.Network
	devA, devB *stacktest.Fake
	ulA, ulB   *udptest.Conn
	rtA, rtB   *Router
	cancel     context.CancelFunc
}

// newPair wires two L3 routers over an in-memory underlay, each with a
// route to the other, and starts them.
func newPair(t *testing.T, opts Options) *pair {
	t.Helper()
	p := &pair{net: udptest.NewNetwork()}
	p.devA, p.devB = stacktest.NewPipe(), stacktest.NewPipe()
	p.ulA, p.ulB = p.net.Conn(vtepA), p.net.Conn(vtepB)
	var err error
	oa, ob := opts, opts
	oa.Networks = []Network{{VNI: testVNI, Addrs: []netip.Prefix{addrA}}}
	ob.Networks = []Network{{VNI: testVNI, Addrs: []netip.Prefix{addrB}}}
	if p.rtA, err = New(p.devA, p.ulA, oa); err != nil {
		t.Fatal(err)
	}
	if p.rtB, err = New(p.devB, p.ulB, ob); err != nil {
		t.Fatal(err)
	}
	must(t, p.rtA.SetRoutes([]Route{{Prefix: netip.MustParsePrefix("10.1.2.0/24"), VTEP: vtepB, VNI: testVNI, Owner: "test"}}, nil))
	must(t, p.rtB.SetRoutes([]Route{{Prefix: netip.MustParsePrefix("10.1.1.0/24"), VTEP: vtepA, VNI: testVNI, Owner: "test"}}, nil))
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.rtA.Start(ctx)
	p.rtB.Start(ctx)
	t.Cleanup(func() {
		cancel()
		for _, c := range []interface{ Close() error }{p.devA, p.devB, p.ulA, p.ulB, p.rtA, p.rtB} {
			c.Close()
		}
	})
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func next(t *testing.T, d *stacktest.Fake) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := d.Next(ctx)
	if err != nil {
		t.Fatalf("no packet on %s: %v", d.Name(), err)
	}
	return p
}

// waitDrops waits until rt has counted want drops for reason.
func waitDrops(t *testing.T, rt *Router, what string, reason DropReason, want uint64) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, what, func() error {
		if got := rt.drops.Load(reason); got != want {
			return fmt.Errorf("%d %v drops, want %d", got, reason, want)
		}
		return nil
	})
}

// A packet crosses from A's attachment to B's byte-exact, after ARP
// resolves B's MAC; the reply needs no ARP (B learned A from the packet).
func TestForwardBothWays(t *testing.T) {
	p := newPair(t, Options{})
	out := ipv4UDP(addrA.Addr(), addrB.Addr(), 1000, 2000, []byte("hello overlay"), false)
	must(t, p.devA.Inject(out))
	if got := next(t, p.devB); !bytes.Equal(got, out) {
		t.Fatalf("B received %x, want %x", got, out)
	}
	back := ipv4UDP(addrB.Addr(), addrA.Addr(), 2000, 1000, []byte("hello back"), false)
	must(t, p.devB.Inject(back))
	if got := next(t, p.devA); !bytes.Equal(got, back) {
		t.Fatalf("A received %x, want %x", got, back)
	}
	sa, sb := p.rtA.Stats(), p.rtB.Stats()
	if sa.ARPAsked != 1 || sb.ARPAnswers != 1 || sb.ARPAsked != 0 {
		t.Errorf("ARP: A asked %d, B answered %d, B asked %d; want 1, 1, 0", sa.ARPAsked, sb.ARPAnswers, sb.ARPAsked)
	}
	if sa.Outbound.Packets != 1 || sb.Inbound.Packets != 1 || sb.Outbound.Packets != 1 || sa.Inbound.Packets != 1 {
		t.Errorf("counters: A %+v, B %+v", sa, sb)
	}
	if pa, pb := sa.PerNetwork[testVNI], sb.PerNetwork[testVNI]; pa.Outbound != sa.Outbound || pa.Inbound != sa.Inbound ||
		pb.Outbound != sb.Outbound || pb.Inbound != sb.Inbound || len(sa.PerNetwork) != 1 {
		t.Errorf("per-network counters: A %+v, B %+v; want the totals under VNI %d", sa.PerNetwork, sb.PerNetwork, testVNI)
	}
	if sa.Outbound.Bytes != uint64(len(out)) || sb.Inbound.Bytes != uint64(len(out)) {
		t.Errorf("bytes: A out %d, B in %d, want %d", sa.Outbound.Bytes, sb.Inbound.Bytes, len(out))
	}
	if mac := p.rtA.Neighbors()[addrB.Addr()]; mac != p.rtB.MAC() {
		t.Errorf("A learned %v for B, want %v", mac, p.rtB.MAC())
	}
	if len(sa.Drops)+len(sb.Drops) != 0 {
		t.Errorf("drops: A %v, B %v", sa.Drops, sb.Drops)
	}
}

// ICMP errors for the attachment: no route, and too big with DF.
func TestICMPErrors(t *testing.T) {
	p := newPair(t, Options{PathMTU: 1400})
	tests := []struct {
		name     string
		pkt      []byte
		code     uint8
		mtu      uint16
		reason   DropReason
		wantICMP bool
	}{
		{"no route", ipv4UDP(addrA.Addr(), netip.MustParseAddr("10.9.9.9"), 1, 2, []byte("x"), false), packet.ICMPNetUnreachable, 0, DropNoRoute, true},
		{"too big with DF", ipv4UDP(addrA.Addr(), addrB.Addr(), 1, 2, make([]byte, 1450), true), packet.ICMPFragNeeded, 1400, DropTooBig, true},
		{"too big without DF", ipv4UDP(addrA.Addr(), addrB.Addr(), 1, 2, make([]byte, 1450), false), 0, 0, DropTooBig, false},
	}
	for _, tt := range tests {
		before := p.rtA.drops.Load(tt.reason)
		must(t, p.devA.Inject(tt.pkt))
		waitDrops(t, p.rtA, tt.name+" drop", tt.reason, before+1)
		if !tt.wantICMP {
			expectOnlyMarkerICMP(t, p, tt.name)
			continue
		}
		got := next(t, p.devA)
		ip := header.IPv4(got)
		if !ip.IsValid(len(got)) || ip.CalculateChecksum() != 0xffff || ip.Protocol() != uint8(header.ICMPv4ProtocolNumber) {
			t.Fatalf("%s: bad IP header in %x", tt.name, got)
		}
		if netip.AddrFrom4(ip.DestinationAddress().As4()) != addrA.Addr() || ip.SourceAddress() != header.IPv4(tt.pkt).DestinationAddress() {
			t.Errorf("%s: ICMP %v → %v", tt.name, ip.SourceAddress(), ip.DestinationAddress())
		}
		ic := header.ICMPv4(ip.Payload())
		if ic.Type() != header.ICMPv4DstUnreachable || uint8(ic.Code()) != tt.code || ic.MTU() != tt.mtu {
			t.Errorf("%s: ICMP type %d code %d mtu %d, want 3/%d/%d", tt.name, ic.Type(), ic.Code(), ic.MTU(), tt.code, tt.mtu)
		}
		if !bytes.Equal(ic.Payload(), tt.pkt[:len(ic.Payload())]) || len(ic.Payload()) < 28 {
			t.Errorf("%s: ICMP quotes %x", tt.name, ic.Payload())
		}
		if len(got) > 576 {
			t.Errorf("%s: ICMP error is %d bytes, more than 576 (RFC 1812 §4.3.2.3)", tt.name, len(got))
		}
	}
	// No ICMP error about an ICMP error.
	icmpErr := ipv4UDP(addrA.Addr(), netip.MustParseAddr("10.9.9.9"), 1, 2, nil, false)
	icmpErr[9] = uint8(header.ICMPv4ProtocolNumber)
	icmpErr = append(icmpErr[:header.IPv4MinimumSize], 3, 1, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(icmpErr[2:], uint16(len(icmpErr)))
	header.IPv4(icmpErr).SetChecksum(0)
	header.IPv4(icmpErr).SetChecksum(^header.IPv4(icmpErr).CalculateChecksum())
	before := p.rtA.drops.Load(DropNoRoute)
	must(t, p.devA.Inject(icmpErr))
	waitDrops(t, p.rtA, "no-route drop", DropNoRoute, before+1)
	expectOnlyMarkerICMP(t, p, "an ICMP error")
}

// expectOnlyMarkerICMP checks that the packet injected last into A got
// no ICMP error: it injects a marker that does get one (no route to
// 10.9.9.8), and the first error A's attachment receives must be the
// marker's, which comes after anything the earlier packet caused.
func expectOnlyMarkerICMP(t *testing.T, p *pair, what string) {
	t.Helper()
	marker := netip.MustParseAddr("10.9.9.8")
	must(t, p.devA.Inject(ipv4UDP(addrA.Addr(), marker, 7, 7, []byte("marker"), false)))
	got := next(t, p.devA)
	if src := header.IPv4(got).SourceAddress(); src != tcpip.AddrFrom4(marker.As4()) {
		t.Errorf("%s: got an ICMP error %x before the marker's, want none", what, got)
		next(t, p.devA) // the marker's
	}
}

// Datagrams that must not be delivered are dropped and counted by reason.
func TestInboundDrops(t *testing.T) {
	p := newPair(t, Options{})
	stranger := p.net.Conn(netip.MustParseAddrPort("198.51.100.9:4789"))
	defer stranger.Close()
	peer := p.net.Conn(netip.MustParseAddrPort("192.0.2.2:5555")) // B's IP, another port: a peer
	defer peer.Close()

	inner := ipv4UDP(addrB.Addr(), addrA.Addr(), 1, 2, []byte("x"), false)
	frame := func(vni uint32, dst vxlan.MAC, ipPkt []byte) []byte {
		buf := make([]byte, 64+len(ipPkt))
		copy(buf[64:], ipPkt)
		return vxlan.Encap(buf, 64, len(ipPkt), vni, dst, vxlan.NodeMAC(addrB.Addr()), vxlan.EtherTypeIPv4)
	}
	good := frame(testVNI, p.rtA.MAC(), inner)
	noI := append([]byte(nil), good...)
	noI[0] = 0
	notUs := frame(testVNI, p.rtA.MAC(), ipv4UDP(addrB.Addr(), netip.MustParseAddr("10.1.1.2"), 1, 2, nil, false))
	otherMAC := frame(testVNI, vxlan.MAC{2, 0, 0, 0, 0, 1}, inner)
	badIP := frame(testVNI, p.rtA.MAC(), append([]byte{0x45, 0, 0, 200}, make([]byte, 30)...))
	tests := []struct {
		name   string
		from   *udptest.Conn
		d      []byte
		reason DropReason
	}{
		{"not a peer", stranger, good, DropNotPeer},
		{"short", peer, good[:10], DropShort},
		{"I flag clear", peer, noI, DropFlags},
		{"unknown VNI", peer, frame(7, p.rtA.MAC(), inner), DropUnknownVNI},
		{"not our IP", peer, notUs, DropNotForUs},
		{"not our MAC", peer, otherMAC, DropNotForUs},
		{"malformed IP", peer, badIP, DropMalformed},
	}
	for _, tt := range tests {
		before := p.rtA.drops.Load(tt.reason)
		if _, err := tt.from.WriteBatch([][]byte{tt.d}, []netip.AddrPort{vtepA}, nil); err != nil {
			t.Fatal(err)
		}
		waitDrops(t, p.rtA, tt.name, tt.reason, before+1)
	}
	// And the good one from a peer's other port is delivered.
	if _, err := peer.WriteBatch([][]byte{good}, []netip.AddrPort{vtepA}, nil); err != nil {
		t.Fatal(err)
	}
	if got := next(t, p.devA); !bytes.Equal(got, inner) {
		t.Fatalf("delivered %x, want %x", got, inner)
	}
}

// An ARP request for our address from a peer is answered to the VTEP of
// the sender's route, not to the datagram's source port.
func TestARPAnswerGoesToRouteVTEP(t *testing.T) {
	p := newPair(t, Options{})
	srcPort := p.net.Conn(netip.MustParseAddrPort("192.0.2.2:60001")) // B's IP, a per-flow source port
	defer srcPort.Close()
	buf := make([]byte, 64+vxlan.ARPLen)
	macB := vxlan.MAC{2, 0xaa, 0, 0, 0, 2}
	vxlan.ARP(buf[64:]).EncodeRequest(macB, addrB.Addr(), addrA.Addr())
	d := vxlan.Encap(buf, 64, vxlan.ARPLen, testVNI, vxlan.Broadcast, macB, vxlan.EtherTypeARP)
	// B's router is the route VTEP; stop it from consuming so we can read.
	p.ulB.Close()
	p.devB.Close()
	p.rtB.Close()
	probe := p.net.Conn(netip.MustParseAddrPort("192.0.2.2:4789"))
	defer probe.Close()
	if _, err := srcPort.WriteBatch([][]byte{d}, []netip.AddrPort{vtepA}, nil); err != nil {
		t.Fatal(err)
	}
	bufs, sizes, srcs := [][]byte{make([]byte, 2048)}, []int{0}, []netip.AddrPort{{}}
	done := make(chan error, 1)
	go func() { _, err := probe.ReadBatch(bufs, sizes, srcs); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ARP reply at the route's VTEP")
	}
	vni, f, err := vxlan.Decap(bufs[0][:sizes[0]])
	a := vxlan.ARP(f.Payload())
	if err != nil || vni != testVNI || f.Type() != vxlan.EtherTypeARP || !a.IsValid() ||
		a.Op() != vxlan.ARPReply || a.SenderIP() != addrA.Addr() || a.SenderMAC() != p.rtA.MAC() ||
		a.TargetMAC() != macB || f.Dst() != macB {
		t.Fatalf("reply %x: vni %d, err %v", bufs[0][:sizes[0]], vni, err)
	}
	if mac := p.rtA.Neighbors()[addrB.Addr()]; mac != macB {
		t.Errorf("A learned %v from the request, want %v", mac, macB)
	}
}

// Packets to an unresolved neighbour wait for its ARP answer, and are
// dropped and counted after the retries run out.
func TestARPUnresolved(t *testing.T) {
	p := newPair(t, Options{})
	p.ulB.Close() // nobody answers
	p.devB.Close()
	p.rtB.Close()
	for range 3 {
		must(t, p.devA.Inject(ipv4UDP(addrA.Addr(), addrB.Addr(), 1, 2, []byte("lost"), false)))
	}
	waitDrops(t, p.rtA, "three pending packets dropped", DropARPUnresolved, 3)
	if asked := p.rtA.Stats().ARPAsked; asked != arpTries {
		t.Errorf("A asked %d times, want %d", asked, arpTries)
	}
}

func TestTableLookup(t *testing.T) {
	v := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	tab, err := buildTable([]Route{
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), VTEP: v("192.0.2.1:4789")},
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), VTEP: v("192.0.2.2:4789")},
		{Prefix: netip.MustParsePrefix("10.1.2.3/32"), VTEP: v("192.0.2.3:4789")},
		{Prefix: netip.MustParsePrefix("10.1.2.0/24"), VTEP: v("192.0.2.4:4789")},
	}, []netip.AddrPort{v("198.51.100.1:4789")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dst  string
		want string
	}{
		{"10.1.2.3", "192.0.2.3:4789"},
		{"10.1.2.4", "192.0.2.4:4789"},
		{"10.1.3.1", "192.0.2.2:4789"},
		{"10.200.0.1", "192.0.2.1:4789"},
		{"11.0.0.1", ""},
	}
	for _, tt := range tests {
		r, ok := tab.lookup(netip.MustParseAddr(tt.dst))
		got := ""
		if ok {
			got = r.VTEP.String()
		}
		if got != tt.want {
			t.Errorf("lookup(%s) = %q, want %q", tt.dst, got, tt.want)
		}
	}
	if !tab.isPeer(v("198.51.100.1:1234")) || !tab.isPeer(v("192.0.2.3:9")) || tab.isPeer(v("203.0.113.1:4789")) {
		t.Error("isPeer wrong")
	}
	if _, err := buildTable([]Route{
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), VTEP: v("192.0.2.1:4789")},
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), VTEP: v("192.0.2.2:4789")},
	}, nil); err == nil {
		t.Error("one prefix at two VTEPs accepted")
	}
	if _, err := buildTable([]Route{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}, nil); err == nil {
		t.Error("a route without a VTEP accepted")
	}
}

func TestNewErrors(t *testing.T) {
	dev, ul := stacktest.NewPipe(), udptest.NewNetwork().Conn(vtepA)
	defer dev.Close()
	defer ul.Close()
	tests := []Options{
		{},
		{Networks: []Network{{VNI: 1 << 24, Addrs: []netip.Prefix{addrA}}}},
		{Networks: []Network{{VNI: 1, Addrs: []netip.Prefix{netip.MustParsePrefix("fd00::1/64"), addrA}}}},
		{Networks: []Network{{VNI: 1}}},
		{Networks: []Network{{VNI: 1, Addrs: []netip.Prefix{addrA}}, {VNI: 1, Addrs: []netip.Prefix{addrB}}}},
		{Networks: []Network{{VNI: 1, Addrs: []netip.Prefix{addrA}}}, PathMTU: 100},
	}
	for _, o := range tests {
		if _, err := New(dev, ul, o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
	r, err := New(dev, ul, Options{Networks: []Network{{VNI: 1, Addrs: []netip.Prefix{addrA}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetRoutes([]Route{{Prefix: netip.MustParsePrefix("10.2.0.0/16"), VTEP: vtepB, VNI: 2}}, nil); err == nil {
		t.Error("a route on a network the node is not on was accepted")
	}
}

// L2: broadcast frames are flooded to every VTEP of the network; a MAC
// learned from an inbound frame is then reached by unicast.
func TestL2FloodAndLearn(t *testing.T) {
	nw := udptest.NewNetwork()
	dev := stacktest.New(stacktest.Options{Layer: stack.L2})
	ul := nw.Conn(vtepA)
	peers := []*udptest.Conn{nw.Conn(vtepB), nw.Conn(netip.MustParseAddrPort("192.0.2.3:4789"))}
	r, err := New(dev, ul, Options{Networks: []Network{{VNI: testVNI, Addrs: []netip.Prefix{addrA}}}})
	must(t, err)
	must(t, r.SetRoutes([]Route{
		{Prefix: netip.MustParsePrefix("10.1.2.0/24"), VTEP: vtepB, VNI: testVNI},
		{Prefix: netip.MustParsePrefix("10.1.3.0/24"), VTEP: peers[1].LocalAddr(), VNI: testVNI},
	}, nil))
	ctx, cancel := context.WithCancel(context.Background())
	r.Start(ctx)
	defer func() {
		cancel()
		dev.Close()
		ul.Close()
		for _, c := range peers {
			c.Close()
		}
		r.Close()
	}()

	read := func(c *udptest.Conn) []byte {
		t.Helper()
		bufs, sizes, srcs := [][]byte{make([]byte, 2048)}, []int{0}, []netip.AddrPort{{}}
		done := make(chan error, 1)
		go func() { _, err := c.ReadBatch(bufs, sizes, srcs); done <- err }()
		select {
		case err := <-done:
			must(t, err)
		case <-time.After(5 * time.Second):
			t.Fatalf("nothing arrived at %v", c.LocalAddr())
		}
		return bufs[0][:sizes[0]]
	}
	hostMAC, remoteMAC := vxlan.MAC{2, 1, 1, 1, 1, 1}, vxlan.MAC{2, 2, 2, 2, 2, 2}
	bcast := make([]byte, 60)
	vxlan.Ethernet(bcast).Encode(vxlan.Broadcast, hostMAC, vxlan.EtherTypeARP)
	must(t, dev.Inject(bcast))
	for _, c := range peers {
		d := read(c)
		if _, f, err := vxlan.Decap(d); err != nil || !bytes.Equal(f, bcast) {
			t.Fatalf("flooded frame at %v = %x", c.LocalAddr(), d)
		}
	}
	// remoteMAC speaks from B: learned, then unicast goes only to B.
	in := make([]byte, vxlan.HeaderLen+60)
	vxlan.Header(in).Encode(testVNI)
	vxlan.Ethernet(in[vxlan.HeaderLen:]).Encode(hostMAC, remoteMAC, vxlan.EtherTypeIPv4)
	_, err = peers[0].WriteBatch([][]byte{in}, []netip.AddrPort{vtepA}, nil)
	must(t, err)
	if got := next(t, dev); !bytes.Equal(got, in[vxlan.HeaderLen:]) {
		t.Fatalf("TAP got %x", got)
	}
	uni := make([]byte, 60)
	vxlan.Ethernet(uni).Encode(remoteMAC, hostMAC, vxlan.EtherTypeIPv4)
	must(t, dev.Inject(uni))
	if _, f, _ := vxlan.Decap(read(peers[0])); !bytes.Equal(f, uni) {
		t.Fatalf("unicast frame = %x", f)
	}
	if st := r.Stats(); st.FDB != 1 || st.Outbound.Packets != 2 || st.Inbound.Packets != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// A third member cannot re-point a neighbour: a frame (IPv4 or ARP) from
// C's VTEP that claims B's address is dropped as not_owner, A keeps B's
// MAC, and A's traffic still reaches B; C's frames from its own address
// are delivered as before.
func TestForgedFrameFromThirdMember(t *testing.T) {
	p := newPair(t, Options{})
	vtepC := netip.MustParseAddrPort("192.0.2.3:4789")
	addrC := netip.MustParseAddr("10.1.3.1")
	must(t, p.rtA.SetRoutes([]Route{
		{Prefix: netip.MustParsePrefix("10.1.2.0/24"), VTEP: vtepB, VNI: testVNI, Owner: "b"},
		{Prefix: netip.MustParsePrefix("10.1.3.0/24"), VTEP: vtepC, VNI: testVNI, Owner: "c"},
	}, nil))
	c := p.net.Conn(vtepC)
	defer c.Close()

	// A learns B's MAC the honest way.
	hello := ipv4UDP(addrA.Addr(), addrB.Addr(), 1, 2, []byte("hello"), false)
	must(t, p.devA.Inject(hello))
	if got := next(t, p.devB); !bytes.Equal(got, hello) {
		t.Fatalf("B received %x, want %x", got, hello)
	}
	if mac := p.rtA.Neighbors()[addrB.Addr()]; mac != p.rtB.MAC() {
		t.Fatalf("A learned %v for B, want %v", mac, p.rtB.MAC())
	}

	evil := vxlan.MAC{2, 0xee, 0, 0, 0, 3}
	ipFrame := func(src netip.Addr, payload string) []byte {
		pkt := ipv4UDP(src, addrA.Addr(), 1, 2, []byte(payload), false)
		buf := make([]byte, 64+len(pkt))
		copy(buf[64:], pkt)
		return vxlan.Encap(buf, 64, len(pkt), testVNI, p.rtA.MAC(), evil, vxlan.EtherTypeIPv4)
	}
	arpBuf := make([]byte, 64+vxlan.ARPLen)
	vxlan.ARP(arpBuf[64:]).EncodeReply(evil, addrB.Addr(), p.rtA.MAC(), addrA.Addr())
	forgedARP := vxlan.Encap(arpBuf, 64, vxlan.ARPLen, testVNI, p.rtA.MAC(), evil, vxlan.EtherTypeARP)
	own := ipv4UDP(addrC, addrA.Addr(), 1, 2, []byte("from c"), false)

	// Two forgeries, then C's own packet: once that is delivered, the
	// forgeries (sent before it, in order) have been handled.
	for _, d := range [][]byte{ipFrame(addrB.Addr(), "forged"), forgedARP, ipFrame(addrC, "from c")} {
		if _, err := c.WriteBatch([][]byte{d}, []netip.AddrPort{vtepA}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := next(t, p.devA); !bytes.Equal(got, own) {
		t.Fatalf("A delivered %x, want C's own packet %x (a forgery got through?)", got, own)
	}
	if n := p.rtA.drops.Load(DropNotOwner); n != 2 {
		t.Errorf("not_owner drops = %d, want 2", n)
	}
	if mac := p.rtA.Neighbors()[addrB.Addr()]; mac != p.rtB.MAC() {
		t.Errorf("after the forgeries A has %v for B, want B's %v", mac, p.rtB.MAC())
	}
	if mac := p.rtA.Neighbors()[addrC]; mac != evil {
		t.Errorf("A has %v for C, want C's own %v", mac, evil)
	}
	// And A's traffic still reaches B (B would drop a frame to another
	// MAC as not_for_us).
	again := ipv4UDP(addrA.Addr(), addrB.Addr(), 1, 2, []byte("still you?"), false)
	must(t, p.devA.Inject(again))
	if got := next(t, p.devB); !bytes.Equal(got, again) {
		t.Fatalf("B received %x, want %x", got, again)
	}
	if n := p.rtB.drops.Load(DropNotForUs); n != 0 {
		t.Errorf("B dropped %d frames as not_for_us", n)
	}
}

// The router answers by the network's real prefix (addrA is in a /16):
// 10.1.2.255 is a host there and gets "fragmentation needed"; 10.1.255.255
// is the broadcast and gets no "net unreachable".
func TestICMPErrorsFollowTheNetworksPrefix(t *testing.T) {
	p := newPair(t, Options{PathMTU: 1400})
	host255 := netip.MustParseAddr("10.1.2.255")
	big := ipv4UDP(addrA.Addr(), host255, 1, 2, make([]byte, 1450), true)
	must(t, p.devA.Inject(big))
	got := next(t, p.devA)
	if ic := header.ICMPv4(header.IPv4(got).Payload()); header.IPv4(got).Protocol() != uint8(header.ICMPv4ProtocolNumber) ||
		uint8(ic.Code()) != packet.ICMPFragNeeded || header.IPv4(got).SourceAddress() != tcpip.AddrFrom4(host255.As4()) {
		t.Fatalf("answer to a too-big packet for %v: %x, want fragmentation needed from it", host255, got)
	}
	// To the broadcast: dropped without an answer.
	must(t, p.devA.Inject(ipv4UDP(addrA.Addr(), netip.MustParseAddr("10.1.255.255"), 1, 2, []byte("x"), false)))
	expectOnlyMarkerICMP(t, p, "a packet to the /16's broadcast")
	if n := p.rtA.drops.Load(DropNoRoute); n != 2 {
		t.Errorf("no_route drops = %d, want 2 (the broadcast's and the marker's)", n)
	}
}
