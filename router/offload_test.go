package router

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/vxlan"
)

// partialTCP is a TCP segment (1000 bytes of payload) as a TUN with
// offloads reads it: its checksum field the pseudo-header sum.
func partialTCP(src, dst netip.AddrPort) []byte {
	pkt := ipv4TCP(src, dst, header.TCPFlagAck, 1)
	pkt = append(pkt, make([]byte, 1000)...)
	for i := range 1000 {
		pkt[40+i] = byte(i)
	}
	ip := header.IPv4(pkt)
	ip.SetTotalLength(uint16(len(pkt)))
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	binary.BigEndian.PutUint16(pkt[36:], stack.PseudoSum(pkt, len(pkt)-20))
	return pkt
}

// checksumAll is the ones' complement sum of seg, from initial.
func checksumAll(seg []byte, initial uint16) uint16 {
	s := uint32(initial)
	for i := 0; i+1 < len(seg); i += 2 {
		s += uint32(binary.BigEndian.Uint16(seg[i:]))
	}
	if len(seg)%2 == 1 {
		s += uint32(seg[len(seg)-1]) << 8
	}
	for s>>16 != 0 {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// A partial segment goes to a VTEP that said it takes them flagged and
// untouched, else complete and unflagged, as RFC 7348 peers need it.
func TestOutboundPartial(t *testing.T) {
	r := hotRouter(t)
	pkt := partialTCP(netip.AddrPortFrom(addrA.Addr(), 40000), netip.AddrPortFrom(addrB.Addr(), 5201))
	for _, capable := range []bool{false, true} {
		r.caps.set(vtepB, capable)
		b := newOutBatch(4)
		fillOut(b, pkt, 4)
		for i := range 4 {
			b.partial[i] = true
		}
		b.reset()
		r.outbound(b, 4)
		if len(b.send) != 4 {
			t.Fatalf("capable %v: sent %d datagrams, want 4", capable, len(b.send))
		}
		for i, d := range b.send {
			inner := d[vxlan.EncapLen:]
			if got := vxlan.Header(d).Partial(); got != capable {
				t.Errorf("capable %v: datagram %d flagged partial %v", capable, i, got)
			}
			if valid := checksumAll(inner[20:], stack.PseudoSum(inner, len(inner)-20)) == 0xffff; valid == capable {
				t.Errorf("capable %v: datagram %d: inner checksum complete = %v", capable, i, valid)
			}
		}
	}
	// To a capable peer, the partial path allocates nothing either.
	b := newOutBatch(64)
	fillOut(b, pkt, 64)
	for i := range 64 {
		b.partial[i] = true
	}
	if allocs := testing.AllocsPerRun(100, func() { b.reset(); r.outbound(b, 64) }); allocs != 0 {
		t.Errorf("partial outbound: %v allocs per batch, want 0", allocs)
	}
}

// fakePartialWriter records what WritePartial was given.
type fakePartialWriter struct{ partial []bool }

func (f *fakePartialWriter) WritePartial(bufs [][]byte, partial []bool, offset int) (int, error) {
	f.partial = append(f.partial[:0], partial[:len(bufs)]...)
	return len(bufs), nil
}

// A flagged datagram's segment reaches a device that takes partial
// segments as one, and any other device complete; a flagged datagram
// that holds no TCP segment is dropped as malformed.
func TestInboundPartial(t *testing.T) {
	r := hotRouter(t)
	pkt := partialTCP(netip.AddrPortFrom(addrB.Addr(), 5201), netip.AddrPortFrom(addrA.Addr(), 40000))
	for _, pw := range []*fakePartialWriter{nil, {}} {
		b := newInBatch(4)
		if pw != nil {
			b.pw = pw
		}
		fillIn(r, b, pkt, 4)
		for i := range 4 {
			vxlan.Header(b.rbufs[i]).SetPartial()
		}
		r.inbound(b, 4)
		if len(b.deliver) != 4 || len(b.partial) != 4 {
			t.Fatalf("delivered %d (%d flags), want 4", len(b.deliver), len(b.partial))
		}
		for i, d := range b.deliver {
			inner := d[headroom+vxlan.EncapLen:]
			complete := checksumAll(inner[20:], stack.PseudoSum(inner, len(inner)-20)) == 0xffff
			if b.partial[i] != (pw != nil) || complete != (pw == nil) {
				t.Errorf("writer %v: packet %d partial %v, checksum complete %v", pw != nil, i, b.partial[i], complete)
			}
		}
	}
	b := newInBatch(1)
	fillIn(r, b, ipv4UDP(addrB.Addr(), addrA.Addr(), 1, 2, make([]byte, 100), false), 1)
	vxlan.Header(b.rbufs[0]).SetPartial()
	before := r.drops.Snapshot()["malformed"]
	r.inbound(b, 1)
	if len(b.deliver) != 0 || r.drops.Snapshot()["malformed"] != before+1 {
		t.Errorf("a flagged UDP datagram: delivered %d, malformed drops %d → %d; want dropped", len(b.deliver), before, r.drops.Snapshot()["malformed"])
	}
}

// An ARP with overlayd's trailer makes its VTEP one that takes partial
// segments, and the answer carries the trailer; one without it (a kernel
// vxlan device's) takes the VTEP out again.
func TestARPTrailerCapability(t *testing.T) {
	r := hotRouter(t)
	for _, trailer := range []bool{true, false} {
		b := newInBatch(1)
		n := vxlan.ARPLen
		a := b.bufs[0][headroom+vxlan.EncapLen:]
		vxlan.ARP(a).EncodeRequest(macB, addrB.Addr(), addrA.Addr())
		if trailer {
			vxlan.EncodeTrailer(a[vxlan.ARPLen:], vxlan.TrailerPartial)
			n += vxlan.TrailerLen
		}
		d := vxlan.Encap(b.bufs[0], headroom+vxlan.EncapLen, n, testVNI, vxlan.Broadcast, macB, vxlan.EtherTypeARP)
		b.sizes[0], b.srcs[0] = len(d), vtepB
		b.reply.reset()
		r.inbound(b, 1)
		if got := r.caps.partial(vtepB); got != trailer {
			t.Errorf("ARP with trailer %v: VTEP takes partial = %v", trailer, got)
		}
		if len(b.reply.send) != 1 {
			t.Fatalf("ARP request: %d answers, want 1", len(b.reply.send))
		}
		ans := vxlan.ARP(b.reply.send[0][vxlan.EncapLen:])
		if caps, ok := ans.Trailer(); !ok || caps&vxlan.TrailerPartial == 0 {
			t.Errorf("the answer's trailer: %v, %v; want the partial capability", caps, ok)
		}
	}
}

// lb's NAT of a partial segment leaves a checksum that completes right.
func TestPartialThroughNAT(t *testing.T) {
	bal, err := lb.New(lb.Options{})
	must(t, err)
	vip := netip.MustParseAddrPort("10.1.200.1:80")
	backend := netip.AddrPortFrom(addrB.Addr(), 8080)
	must(t, bal.Set([]lb.Service{{Name: "web", VIP: vip.Addr(), Ports: []lb.PortProto{{Port: 80, Proto: lb.TCP}},
		Backends: []lb.Backend{{Addr: backend, Weight: 1}}}}))
	r := hotRouter(t)
	r.lb = bal
	r.caps.set(vtepB, true)
	syn := partialTCP(netip.AddrPortFrom(addrA.Addr(), 40000), vip)
	syn[33] = byte(header.TCPFlagSyn)
	binary.BigEndian.PutUint16(syn[36:], stack.PseudoSum(syn, len(syn)-20))
	b := newOutBatch(1)
	fillOut(b, syn, 1)
	b.partial[0] = true
	b.reset()
	r.outbound(b, 1)
	if len(b.send) != 1 || !vxlan.Header(b.send[0]).Partial() {
		t.Fatalf("sent %d datagrams, want 1, flagged partial", len(b.send))
	}
	inner := b.send[0][vxlan.EncapLen:]
	if got := netip.AddrFrom4([4]byte(inner[16:20])); got != backend.Addr() {
		t.Fatalf("DNATed to %v, want %v", got, backend.Addr())
	}
	stack.CompleteChecksum(inner)
	if checksumAll(inner[20:], stack.PseudoSum(inner, len(inner)-20)) != 0xffff {
		t.Error("the DNATed partial segment's checksum is wrong once completed")
	}
}
