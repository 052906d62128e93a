package router

import (
	"net/netip"
	"testing"

	"github.com/overlayd/overlayd/stack/stacktest"
	"github.com/overlayd/overlayd/udp/udptest"
	"github.com/overlayd/overlayd/vxlan"
)

var (
	addrA6  = netip.MustParsePrefix("fd00:1::1:1/64")
	addrB6  = netip.MustParsePrefix("fd00:1::2:1/64")
	route6B = netip.MustParsePrefix("fd00:1::2:0/112") // B's, as 10.1.2.0/24
	ep6Addr = netip.MustParseAddr("fd00:1::1:10")      // an endpoint of A's
)

// hotRouter6 is hotRouter on a dual-stack network: A has addrA and
// addrA6, B's routes of both families lead to vtepB, B's MACs are known.
func hotRouter6(tb testing.TB) *Router {
	tb.Helper()
	r, err := New(stacktest.NewPipe(), udptest.NewNetwork().Conn(vtepA), Options{
		Networks: []Network{{VNI: testVNI, Addrs: []netip.Prefix{addrA, addrA6}}},
		PathMTU:  9000,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.SetRoutes([]Route{
		{Prefix: netip.MustParsePrefix("10.1.2.0/24"), VTEP: vtepB, VNI: testVNI},
		{Prefix: route6B, VTEP: vtepB, VNI: testVNI},
	}, nil); err != nil {
		tb.Fatal(err)
	}
	r.neigh.set(neighKey{vni: testVNI, ip: addrB.Addr()}, macB)
	r.neigh.set(neighKey{vni: testVNI, ip: addrB6.Addr()}, macB)
	tb.Cleanup(func() { r.Close() })
	return r
}

// ndpFrame is a VXLAN datagram on testVNI carrying an NDP message that
// encode writes, from srcMAC to dstMAC, with the trailer when trailer.
func ndpFrame(srcMAC, dstMAC vxlan.MAC, trailer bool, encode func(vxlan.NDP)) []byte {
	buf := make([]byte, 64+vxlan.NDPLen+vxlan.TrailerLen)
	encode(vxlan.NDP(buf[64 : 64+vxlan.NDPLen]))
	n := vxlan.NDPLen
	if trailer {
		vxlan.EncodeTrailer(buf[64+vxlan.NDPLen:], vxlan.TrailerPartial)
		n += vxlan.TrailerLen
	}
	return vxlan.Encap(buf, 64, n, testVNI, dstMAC, srcMAC, vxlan.EtherTypeIPv6)
}

// solicit is a multicast solicitation from B's macB/src for target.
func solicit(src, target netip.Addr, trailer bool) []byte {
	return ndpFrame(macB, vxlan.MulticastMAC(vxlan.SolicitedNode(target)), trailer, func(n vxlan.NDP) {
		n.EncodeSolicit(macB, src, target)
	})
}

// advert is B's advertisement that target is at mac, to A.
func advert(mac vxlan.MAC, target netip.Addr, to vxlan.MAC) []byte {
	return ndpFrame(mac, to, false, func(n vxlan.NDP) { n.EncodeAdvert(mac, target, addrA6.Addr(), true) })
}

// oneAdvert checks that b answered with one advertisement to vtep, for
// target, to dst at dstMAC, from A's MAC, with the trailer.
func oneAdvert(t *testing.T, r *Router, b *inBatch, vtep netip.AddrPort, target, dst netip.Addr, dstMAC vxlan.MAC) {
	t.Helper()
	if len(b.reply.send) != 1 || b.reply.dsts[0] != vtep {
		t.Fatalf("%d answers (to %v), want one to %v", len(b.reply.send), b.reply.dsts, vtep)
	}
	vni, f, err := vxlan.Decap(b.reply.send[0])
	n := vxlan.NDP(f.Payload())
	if err != nil || vni != testVNI || f.Type() != vxlan.EtherTypeIPv6 || f.Dst() != dstMAC || f.Src() != r.MAC() || !n.IsValid() {
		t.Fatalf("answer %x: vni %d, err %v", b.reply.send[0], vni, err)
	}
	mac, ok := n.LinkAddr()
	if n.Type() != vxlan.NDPAdvert || n.Target() != target || n.Src() != target || n.Dst() != dst || !n.Solicited() || !n.Override() || !ok || mac != r.MAC() {
		t.Errorf("advertisement %x", []byte(n))
	}
	if caps, ok := n.Trailer(); !ok || caps&vxlan.TrailerPartial == 0 {
		t.Errorf("the advertisement's trailer: %#x, %v", caps, ok)
	}
}

// A solicitation for the node's IPv6 address is answered to the VTEP of
// the sender's route, with the node's MAC; the sender is learned, its
// VTEP's capability taken from the trailer.
func TestNDPAnswer(t *testing.T) {
	r := hotRouter6(t)
	r.neigh = newShardedMap[neighKey, vxlan.MAC](16)      // nothing known
	srcPort := netip.MustParseAddrPort("192.0.2.2:60001") // B's IP, a per-flow source port
	b := recvFrom(r, srcPort, solicit(addrB6.Addr(), addrA6.Addr(), true))
	oneAdvert(t, r, b, vtepB, addrA6.Addr(), addrB6.Addr(), macB)
	if mac := r.Neighbors()[addrB6.Addr()]; mac != macB {
		t.Errorf("learned %v for %v, want %v", mac, addrB6.Addr(), macB)
	}
	if !r.caps.partial(vtepB) {
		t.Error("the trailer's capability was not taken")
	}
	if r.Stats().ARPAnswers != 1 {
		t.Errorf("answers = %d, want 1", r.Stats().ARPAnswers)
	}
	// Without the trailer (a kernel vxlan device), the VTEP is taken out.
	recvFrom(r, vtepB, solicit(addrB6.Addr(), addrA6.Addr(), false))
	if r.caps.partial(vtepB) {
		t.Error("a solicitation without the trailer left the capability")
	}
}

// A hosted endpoint's IPv6 address is answered for as the node's is.
func TestNDPAnswerForEndpoint(t *testing.T) {
	r := hotRouter6(t)
	must(t, r.AddEndpoint(EndpointConfig{ID: "e6", VNI: testVNI, Addrs: []netip.Addr{ep1Addr, ep6Addr}, Device: newSink()}))
	b := recvFrom(r, vtepB, solicit(addrB6.Addr(), ep6Addr, false))
	oneAdvert(t, r, b, vtepB, ep6Addr, addrB6.Addr(), macB)
}

// A Linux host confirms a neighbour with a unicast solicitation from its
// link-local address: it is answered, to the VTEP it came from, and
// nothing is learned of the link-local address.
func TestNDPLinkLocalSolicit(t *testing.T) {
	r := hotRouter6(t)
	ll := netip.MustParseAddr("fe80::9c8a:5fff:fe1c:2b3d")
	d := ndpFrame(macB, r.MAC(), false, func(n vxlan.NDP) { n.EncodeSolicit(macB, ll, addrA6.Addr()) })
	b := recvFrom(r, vtepB, d)
	oneAdvert(t, r, b, vtepB, addrA6.Addr(), ll, macB)
	if _, ok := r.Neighbors()[ll]; ok {
		t.Error("a link-local address was learned")
	}
	// From no VTEP of ours: dropped.
	b = recvFrom(r, netip.MustParseAddrPort("192.0.2.77:4789"), d)
	if len(b.reply.send) != 0 {
		t.Error("a stranger's solicitation was answered")
	}
}

// What the router must not take: an address another VTEP owns, the
// node's own or an endpoint's address claimed, duplicate address
// detection (the unspecified source), a malformed message. Each is
// dropped and counted, and re-points nothing.
func TestNDPRefused(t *testing.T) {
	r := hotRouter6(t)
	must(t, r.AddEndpoint(EndpointConfig{ID: "e6", VNI: testVNI, Addrs: []netip.Addr{ep6Addr}, Device: newSink()}))
	evil := vxlan.MAC{2, 0xee, 0, 0, 0, 1}
	vtepC := netip.MustParseAddrPort("192.0.2.3:4789")
	must(t, r.SetRoutes(append(r.Routes(), Route{Prefix: netip.MustParsePrefix("fd00:1::3:0/112"), VTEP: vtepC, VNI: testVNI}), nil))
	bad := solicit(addrB6.Addr(), addrA6.Addr(), false)
	bad[len(bad)-1] ^= 0xff // the MAC, under the checksum
	for _, tt := range []struct {
		name string
		from netip.AddrPort
		d    []byte
		why  DropReason
	}{
		{"C claims B's address", vtepC, advert(evil, addrB6.Addr(), r.MAC()), DropNotOwner},
		{"C solicits as B", vtepC, ndpFrame(evil, r.MAC(), false, func(n vxlan.NDP) { n.EncodeSolicit(evil, addrB6.Addr(), addrA6.Addr()) }), DropNotOwner},
		{"B claims the node's address", vtepB, advert(evil, addrA6.Addr(), r.MAC()), DropNotForUs},
		{"B claims the endpoint's address", vtepB, advert(evil, ep6Addr, r.MAC()), DropNotForUs},
		{"B claims an address off the network", vtepB, advert(evil, netip.MustParseAddr("fd00:9::1"), r.MAC()), DropNotForUs},
		{"duplicate address detection", vtepB, solicit(netip.IPv6Unspecified(), addrA6.Addr(), false), DropNotForUs},
		{"bad checksum", vtepB, bad, DropMalformed},
	} {
		before := r.drops.Load(tt.why)
		b := recvFrom(r, tt.from, tt.d)
		if r.drops.Load(tt.why) != before+1 || len(b.reply.send) != 0 {
			t.Errorf("%s: %v drops %d → %d, %d answers", tt.name, tt.why, before, r.drops.Load(tt.why), len(b.reply.send))
		}
		if mac := r.Neighbors()[addrB6.Addr()]; mac != macB {
			t.Fatalf("%s re-pointed B to %v", tt.name, mac)
		}
	}
	for _, a := range []netip.Addr{addrA6.Addr(), ep6Addr} {
		if _, ok := r.Neighbors()[a]; ok {
			t.Errorf("%v was learned", a)
		}
	}
}

// An advertisement from the owner's VTEP teaches the target's MAC (from
// its option), and a solicitation for another address teaches its
// sender without being answered.
func TestNDPLearn(t *testing.T) {
	r := hotRouter6(t)
	r.neigh = newShardedMap[neighKey, vxlan.MAC](16)
	macB2 := vxlan.MAC{2, 0xbb, 0, 0, 0, 3}
	recvFrom(r, vtepB, advert(macB2, addrB6.Addr(), r.MAC()))
	if mac := r.Neighbors()[addrB6.Addr()]; mac != macB2 {
		t.Errorf("learned %v from the advertisement, want %v", mac, macB2)
	}
	other := netip.MustParseAddr("fd00:1::2:99")
	b := recvFrom(r, vtepB, solicit(other, addrB6.Addr(), false))
	if len(b.reply.send) != 0 {
		t.Errorf("a solicitation for B's address was answered")
	}
	if mac := r.Neighbors()[other]; mac != macB {
		t.Errorf("learned %v for the solicitation's sender, want %v", mac, macB)
	}
}

// queueSolicit asks for an IPv6 neighbour with a solicitation to its
// solicited-node group, from the node's IPv6 address, with the trailer;
// for an IPv4 one it is an ARP request.
func TestQueueSolicit(t *testing.T) {
	r := hotRouter6(t)
	b := newOutBatch(2)
	target := netip.MustParseAddr("fd00:1::2:7")
	r.queueSolicit(b, neighKey{vni: testVNI, ip: target}, vtepB)
	r.queueSolicit(b, neighKey{vni: testVNI, ip: netip.MustParseAddr("10.1.2.7")}, vtepB)
	if len(b.send) != 2 || b.dsts[0] != vtepB || b.dsts[1] != vtepB {
		t.Fatalf("%d requests, want 2 to %v", len(b.send), vtepB)
	}
	_, f, err := vxlan.Decap(b.send[0])
	n := vxlan.NDP(f.Payload())
	if err != nil || f.Type() != vxlan.EtherTypeIPv6 || f.Dst().String() != "33:33:ff:02:00:07" || !n.IsValid() ||
		n.Type() != vxlan.NDPSolicit || n.Src() != addrA6.Addr() || n.Target() != target || n.Dst() != vxlan.SolicitedNode(target) {
		t.Fatalf("solicitation %x (%v)", b.send[0], err)
	}
	if mac, ok := n.LinkAddr(); !ok || mac != r.MAC() {
		t.Errorf("source link-layer address %v, %v", mac, ok)
	}
	if caps, ok := n.Trailer(); !ok || caps&vxlan.TrailerPartial == 0 {
		t.Errorf("trailer %#x, %v", caps, ok)
	}
	if _, f, _ := vxlan.Decap(b.send[1]); f.Type() != vxlan.EtherTypeARP {
		t.Errorf("IPv4: EtherType %#x, want ARP", f.Type())
	}
	// A network without an IPv6 address asks nothing.
	r4 := hotRouter(t)
	defer r4.Close()
	b = newOutBatch(1)
	r4.queueSolicit(b, neighKey{vni: testVNI, ip: target}, vtepB)
	if len(b.send) != 0 {
		t.Error("an IPv4-only network sent a solicitation")
	}
}
