package vxlan

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var (
	ndpMAC    = MAC{0x0a, 0x58, 0, 0, 0, 1}
	ndpSrc    = netip.MustParseAddr("fd00:10::1")
	ndpTarget = netip.MustParseAddr("fd00:10::ab:cdef")
)

// gvisorNDP checks b as gVisor reads it: a valid IPv6 header, an ICMPv6
// checksum that gVisor computes the same, well-formed options, and
// returns the target and the link-layer address option's MAC.
func gvisorNDP(t *testing.T, b []byte) (target netip.Addr, ll MAC) {
	t.Helper()
	ip := header.IPv6(b)
	if !ip.IsValid(len(b)) || ip.TransportProtocol() != header.ICMPv6ProtocolNumber {
		t.Fatalf("gVisor: %x is no IPv6/ICMPv6 packet", b)
	}
	icmp := header.ICMPv6(ip.Payload())
	want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: ip.SourceAddress(), Dst: ip.DestinationAddress()})
	if icmp.Checksum() != want {
		t.Fatalf("gVisor: checksum %#04x, want %#04x", icmp.Checksum(), want)
	}
	var opts header.NDPOptions
	var taddr tcpip.Address
	switch icmp.Type() {
	case header.ICMPv6NeighborSolicit:
		ns := header.NDPNeighborSolicit(icmp.MessageBody())
		opts, taddr = ns.Options(), ns.TargetAddress()
	case header.ICMPv6NeighborAdvert:
		na := header.NDPNeighborAdvert(icmp.MessageBody())
		opts, taddr = na.Options(), na.TargetAddress()
	default:
		t.Fatalf("gVisor: ICMPv6 type %d", icmp.Type())
	}
	// gVisor also checks the bodies of options it knows that have no
	// place in these messages (RFC 4861 §4.3: ignored), which overlayd
	// does not; a malformed header is an error to both.
	it, err := opts.Iter(false)
	if err != nil {
		t.Fatalf("gVisor: options: %v", err)
	}
	for {
		o, done, err := it.Next()
		if errors.Is(err, header.ErrNDPOptMalformedHeader) {
			t.Fatalf("gVisor: options: %v", err)
		}
		if done || err != nil {
			break
		}
		switch o := o.(type) {
		case header.NDPSourceLinkLayerAddressOption:
			ll = MAC([]byte(o.EthernetAddress()))
		case header.NDPTargetLinkLayerAddressOption:
			ll = MAC([]byte(o.EthernetAddress()))
		}
	}
	return netip.AddrFrom16(taddr.As16()), ll
}

func TestNDPSolicit(t *testing.T) {
	b := NDP(make([]byte, NDPLen))
	b.EncodeSolicit(ndpMAC, ndpSrc, ndpTarget)
	if !b.IsValid() || !IsNDP(b) {
		t.Fatalf("EncodeSolicit wrote %x, which is not valid", []byte(b))
	}
	mac, ok := b.LinkAddr()
	if b.Type() != NDPSolicit || b.Src() != ndpSrc || b.Target() != ndpTarget || !ok || mac != ndpMAC {
		t.Errorf("read back type %d src %v target %v mac %v %v", b.Type(), b.Src(), b.Target(), mac, ok)
	}
	if want := netip.MustParseAddr("ff02::1:ffab:cdef"); b.Dst() != want || SolicitedNode(ndpTarget) != want {
		t.Errorf("Dst() = %v, SolicitedNode = %v; want %v", b.Dst(), SolicitedNode(ndpTarget), want)
	}
	if got := MulticastMAC(b.Dst()); got.String() != "33:33:ff:ab:cd:ef" || !got.IsMulticast() {
		t.Errorf("MulticastMAC(%v) = %v, want 33:33:ff:ab:cd:ef", b.Dst(), got)
	}
	if target, ll := gvisorNDP(t, b); target != ndpTarget || ll != ndpMAC {
		t.Errorf("gVisor reads target %v, source link-layer %v", target, ll)
	}
}

func TestNDPAdvert(t *testing.T) {
	for _, solicited := range []bool{true, false} {
		b := NDP(make([]byte, NDPLen+TrailerLen))
		b.EncodeAdvert(ndpMAC, ndpTarget, ndpSrc, solicited)
		if _, ok := b.Trailer(); ok {
			t.Error("zero bytes after the packet read as a trailer")
		}
		EncodeTrailer(b[NDPLen:], TrailerPartial)
		if !b.IsValid() {
			t.Fatalf("EncodeAdvert wrote %x, which is not valid", []byte(b))
		}
		mac, ok := b.LinkAddr()
		if b.Type() != NDPAdvert || b.Src() != ndpTarget || b.Dst() != ndpSrc || b.Target() != ndpTarget || !ok || mac != ndpMAC ||
			b.Solicited() != solicited || !b.Override() || b.Router() {
			t.Errorf("read back %x", []byte(b))
		}
		if caps, ok := b.Trailer(); !ok || caps != TrailerPartial {
			t.Errorf("Trailer() = %#x, %v", caps, ok)
		}
		if target, ll := gvisorNDP(t, b[:NDPLen]); target != ndpTarget || ll != ndpMAC {
			t.Errorf("gVisor reads target %v, target link-layer %v", target, ll)
		}
	}
	// To all nodes, unsolicited: valid; solicited to a group: not.
	b := NDP(make([]byte, NDPLen))
	b.EncodeAdvert(ndpMAC, ndpTarget, AllNodes, false)
	if !b.IsValid() || b.Dst().String() != "ff02::1" {
		t.Errorf("an unsolicited advertisement to %v is not valid", b.Dst())
	}
	b.EncodeAdvert(ndpMAC, ndpTarget, AllNodes, true)
	if b.IsValid() {
		t.Error("a solicited advertisement to a group is valid")
	}
}

// A solicitation laid out as Linux sends one for fd00:10::2 from
// fd00:10::1 (ping6 on a vxlan device): no extension headers, traffic
// class and flow label zero, its source link-layer option.
const linuxNS = "6000000000203aff fd000010000000000000000000000001 ff0200000000000000000001ff000002" +
	"870056e500000000 fd000010000000000000000000000002 0101 9e8a5f1c2b3d"

func TestNDPLinux(t *testing.T) {
	b := NDP(unhexString(t, linuxNS))
	// The checksum is gVisor's, computed here.
	ip := header.IPv6(b)
	icmp := header.ICMPv6(ip.Payload())
	icmp.SetChecksum(0)
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: ip.SourceAddress(), Dst: ip.DestinationAddress()}))
	if !b.IsValid() {
		t.Fatalf("NDP(%x).IsValid() = false", []byte(b))
	}
	mac, ok := b.LinkAddr()
	if b.Target() != netip.MustParseAddr("fd00:10::2") || mac.String() != "9e:8a:5f:1c:2b:3d" || !ok {
		t.Errorf("target %v mac %v %v", b.Target(), mac, ok)
	}
	// Padding of a minimum Ethernet frame after the packet is ignored.
	if !NDP(append(append([]byte{}, b...), 0, 0, 0, 0)).IsValid() {
		t.Error("padding after the packet made it invalid")
	}
}

func TestNDPInvalid(t *testing.T) {
	good := make([]byte, NDPLen)
	NDP(good).EncodeSolicit(ndpMAC, ndpSrc, ndpTarget)
	// resum rewrites the checksum so that only the change under test is wrong.
	resum := func(b []byte) []byte {
		n := NDP(b)
		if len(b) < ipv6HeaderLen+4 || n.end() > len(b) {
			return b
		}
		b[42], b[43] = 0, 0
		s := ^n.sum(n.end() - ipv6HeaderLen)
		b[42], b[43] = byte(s>>8), byte(s)
		return b
	}
	for _, tt := range []struct {
		name string
		mod  func([]byte) []byte
	}{
		{"short", func(b []byte) []byte { return b[:ipv6HeaderLen+ndpMsgLen-1] }},
		{"version 4", func(b []byte) []byte { b[0] = 0x40; return b }},
		{"hop-by-hop first", func(b []byte) []byte { b[6] = 0; return b }},
		{"hop limit 254", func(b []byte) []byte { b[7] = 254; return resum(b) }},
		{"code 1", func(b []byte) []byte { b[41] = 1; return resum(b) }},
		{"bad checksum", func(b []byte) []byte { b[43] ^= 1; return b }},
		{"payload past the end", func(b []byte) []byte { b[5] += 8; return b }},
		{"payload shorter than the message", func(b []byte) []byte { b[5] = ndpMsgLen - 1; return b }},
		{"multicast target", func(b []byte) []byte { b[48] = 0xff; return resum(b) }},
		{"option length 0", func(b []byte) []byte { b[65] = 0; return resum(b) }},
		{"option past the payload", func(b []byte) []byte { b[65] = 2; return resum(b) }},
		{"half an option", func(b []byte) []byte { b[5]--; return resum(b[:len(b)-1]) }},
		{"echo request", func(b []byte) []byte { b[40] = 128; return resum(b) }},
	} {
		b := tt.mod(append([]byte{}, good...))
		if NDP(b).IsValid() {
			t.Errorf("%s: NDP(%x).IsValid() = true", tt.name, b)
		}
	}
	// No link-layer option: valid, and LinkAddr says there is none.
	b := append([]byte{}, good[:ipv6HeaderLen+ndpMsgLen]...)
	b[5] = ndpMsgLen
	if b = resum(b); !NDP(b).IsValid() {
		t.Fatal("a solicitation without options is not valid")
	}
	if _, ok := NDP(b).LinkAddr(); ok {
		t.Error("LinkAddr found an option where there is none")
	}
}

func TestNDPAllocs(t *testing.T) {
	b := NDP(make([]byte, NDPLen+TrailerLen))
	var sink int
	if n := testing.AllocsPerRun(100, func() {
		b.EncodeAdvert(ndpMAC, ndpTarget, ndpSrc, true)
		if b.IsValid() {
			m, _ := b.LinkAddr()
			c, _ := b.Trailer()
			sink += int(m[5]) + int(c) + int(b.Target().As16()[15]) + int(MulticastMAC(SolicitedNode(b.Src()))[5])
		}
	}); n != 0 {
		t.Errorf("NDP views and builders: %v allocs per run, want 0", n)
	}
	_ = sink
}

// FuzzNDP: IsValid never panics and agrees with gVisor on what a valid
// one holds; a valid message's fields re-encode into a valid message.
func FuzzNDP(f *testing.F) {
	b := make([]byte, NDPLen+TrailerLen)
	NDP(b).EncodeSolicit(ndpMAC, ndpSrc, ndpTarget)
	f.Add(append([]byte{}, b[:NDPLen]...))
	NDP(b).EncodeAdvert(ndpMAC, ndpTarget, ndpSrc, true)
	EncodeTrailer(b[NDPLen:], TrailerPartial)
	f.Add(append([]byte{}, b...))
	f.Add(unhexString(f, linuxNS))
	f.Add([]byte{0x60, 0, 0, 0, 0, 0, 58, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		checkNDP(t, b)
		// Again with the checksum made right, so the fuzzer reaches
		// the options and the flags without having to find it.
		if len(b) >= ipv6HeaderLen+4 && NDP(b).end() <= len(b) {
			c := append([]byte{}, b...)
			n := NDP(c)
			c[42], c[43] = 0, 0
			s := ^n.sum(n.end() - ipv6HeaderLen)
			c[42], c[43] = byte(s>>8), byte(s)
			checkNDP(t, c)
		}
	})
}

func checkNDP(t *testing.T, b []byte) {
	{
		n := NDP(b)
		if !n.IsValid() {
			return
		}
		target, ll := gvisorNDP(t, b[:n.end()])
		mac, ok := n.LinkAddr()
		if target != n.Target() || (ok && ll != (MAC{}) && mac != ll) {
			t.Fatalf("NDP(%x): target %v mac %v, gVisor reads %v %v", b, n.Target(), mac, target, ll)
		}
		n.Trailer()
		if !n.Src().Is6() || !n.Dst().Is6() || !target.Is6() || !ok {
			return
		}
		again := NDP(make([]byte, NDPLen))
		if n.Type() == NDPSolicit {
			again.EncodeSolicit(mac, n.Src(), target)
		} else {
			again.EncodeAdvert(mac, target, n.Dst(), n.Solicited())
		}
		if !again.IsValid() || again.Target() != target || !bytes.Equal(again[8:24], b[8:24]) && n.Type() == NDPSolicit {
			t.Fatalf("re-encoding NDP(%x) gave %x", b, []byte(again))
		}
	}
}
