package packet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"pgregory.net/rapid"
)

// ext is one IPv6 extension header for ipv6: its type and its body after
// the next-header byte (the length byte included), which the helpers
// below build.
type ext struct {
	typ  uint8
	body []byte
}

// opts is a hop-by-hop or destination options header of 8*(n+1) bytes
// (PadN inside).
func opts(typ uint8, n int) ext {
	b := make([]byte, 8*(n+1)-1)
	b[0] = byte(n)
	b[1], b[2] = 1, byte(len(b)-3) // PadN
	return ext{typ, b}
}

// routing is a type 0-less routing header with segments left 0 (ignored).
func routing() ext {
	return ext{ExtRouting, []byte{2, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}
}

// fragHdr is a fragment header with offset off (bytes) and M.
func fragHdr(off int, more bool) ext {
	b := make([]byte, 7)
	w := uint16(off/8) << 3
	if more {
		w |= 1
	}
	binary.BigEndian.PutUint16(b[1:], w)
	binary.BigEndian.PutUint32(b[3:], 0xcafe)
	return ext{ExtFragment, b}
}

// ah is an authentication header with a 12-byte ICV (24 bytes).
func ah() ext {
	b := make([]byte, 23)
	b[0] = 4 // (24/4) - 2
	return ext{ExtAH, b}
}

// ipv6 returns an IPv6 packet from src to dst with the extension headers
// exts and then l4 as protocol proto.
func ipv6(src, dst string, proto uint8, l4 []byte, exts ...ext) []byte {
	var body []byte
	for i, e := range exts {
		next := proto
		if i+1 < len(exts) {
			next = exts[i+1].typ
		}
		body = append(body, next)
		body = append(body, e.body...)
	}
	body = append(body, l4...)
	p := make([]byte, 40+len(body))
	binary.BigEndian.PutUint32(p, 6<<28|0xbeef) // flow label
	binary.BigEndian.PutUint16(p[4:], uint16(len(body)))
	p[6] = proto
	if len(exts) > 0 {
		p[6] = exts[0].typ
	}
	p[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	copy(p[40:], body)
	return p
}

func icmp6(typ uint8, id uint16) []byte { return icmp(typ, id) }

// cut truncates an IPv6 packet to n bytes and sets its payload length
// to match: a chain that does not fit in its packet.
func cut(p []byte, n int) []byte {
	p = p[:n]
	binary.BigEndian.PutUint16(p[4:], uint16(n-40))
	return p
}

func tuple6(proto uint8, src, dst string) Tuple { return tuple(proto, src, dst) }

func chain(n int) []ext {
	e := []ext{opts(ExtHopByHop, 0)}
	for len(e) < n {
		e = append(e, opts(ExtDestOpts, len(e)%3))
	}
	return e
}

var parse6Tests = []struct {
	name   string
	pkt    []byte
	want   int
	tup    Tuple
	hdrLen int
}{
	{"tcp", ipv6("fd00::1", "fd00::2", TCP, tcp(40000, 80)), good, tuple6(TCP, "[fd00::1]:40000", "[fd00::2]:80"), 40},
	{"udp", ipv6("fd00::1", "fd00::2", UDP, udp(5353, 53, 1, 2, 3)), good, tuple6(UDP, "[fd00::1]:5353", "[fd00::2]:53"), 40},
	{"padding after payload", append(ipv6("fd00::1", "fd00::2", TCP, tcp(1, 2)), 0, 0, 0, 0), good, tuple6(TCP, "[fd00::1]:1", "[fd00::2]:2"), 40},
	{"icmpv6 echo", ipv6("fd00::1", "fd00::2", ICMPv6, icmp6(128, 77)), good, tuple6(ICMPv6, "[fd00::1]:77", "[fd00::2]:77"), 40},
	{"icmpv6 echo reply", ipv6("fd00::2", "fd00::1", ICMPv6, icmp6(129, 77)), good, tuple6(ICMPv6, "[fd00::2]:77", "[fd00::1]:77"), 40},
	{"icmpv6 unreachable", ipv6("fd00::2", "fd00::1", ICMPv6, icmp6(1, 77)), good, tuple6(ICMPv6, "[fd00::2]:0", "[fd00::1]:0"), 40},
	{"icmpv4 echo over ipv6: no ports", ipv6("fd00::2", "fd00::1", ICMP, icmp(8, 77)), good, tuple6(ICMP, "[fd00::2]:0", "[fd00::1]:0"), 40},
	{"sctp", ipv6("fd00::1", "fd00::2", SCTP, tcp(7, 8)[:12]), good, tuple6(SCTP, "[fd00::1]:7", "[fd00::2]:8"), 40},
	{"esp", ipv6("fd00::1", "fd00::2", 50, make([]byte, 16)), good, tuple6(50, "[fd00::1]:0", "[fd00::2]:0"), 40},
	{"no next header", ipv6("fd00::1", "fd00::2", NoNextHeader, nil), good, tuple6(NoNextHeader, "[fd00::1]:0", "[fd00::2]:0"), 40},
	{"link-local", ipv6("fe80::1", "fe80::2", UDP, udp(546, 547)), good, tuple6(UDP, "[fe80::1]:546", "[fe80::2]:547"), 40},
	{"hop-by-hop", ipv6("fd00::1", "fd00::2", TCP, tcp(1, 2), opts(ExtHopByHop, 0)), good, tuple6(TCP, "[fd00::1]:1", "[fd00::2]:2"), 48},
	{"hbh, dst opts, routing, dst opts", ipv6("fd00::1", "fd00::2", UDP, udp(1, 2), opts(ExtHopByHop, 1), opts(ExtDestOpts, 0), routing(), opts(ExtDestOpts, 2)),
		good, tuple6(UDP, "[fd00::1]:1", "[fd00::2]:2"), 40 + 16 + 8 + 24 + 24},
	{"ah", ipv6("fd00::1", "fd00::2", TCP, tcp(1, 2), ah()), good, tuple6(TCP, "[fd00::1]:1", "[fd00::2]:2"), 64},
	{"chain at the bound (8)", ipv6("fd00::1", "fd00::2", TCP, tcp(1, 2), chain(8)...), good, tuple6(TCP, "[fd00::1]:1", "[fd00::2]:2"), 40 + 8 + 8*(2+3+1+2+3+1+2)},
	{"atomic fragment", ipv6("fd00::1", "fd00::2", TCP, tcp(1, 2), fragHdr(0, false)), good, tuple6(TCP, "[fd00::1]:1", "[fd00::2]:2"), 48},
	{"first fragment", ipv6("fd00::1", "fd00::2", UDP, udp(1, 2, 9, 9, 9, 9, 9, 9, 9, 9), fragHdr(0, true)), good, tuple6(UDP, "[fd00::1]:0", "[fd00::2]:0"), 48},
	{"later fragment", ipv6("fd00::1", "fd00::2", UDP, []byte{9, 9, 9, 9}, fragHdr(1448, false)), good, tuple6(UDP, "[fd00::1]:0", "[fd00::2]:0"), 48},
	{"middle fragment after hbh", ipv6("fd00::1", "fd00::2", TCP, []byte{9, 9}, opts(ExtHopByHop, 0), fragHdr(8, true)), good, tuple6(TCP, "[fd00::1]:0", "[fd00::2]:0"), 56},
	{"first fragment, dst opts inside", ipv6("fd00::1", "fd00::2", TCP, tcp(1, 2), fragHdr(0, true), opts(ExtDestOpts, 0)),
		good, tuple6(ExtDestOpts, "[fd00::1]:0", "[fd00::2]:0"), 48},

	{"header only, short", ipv6("fd00::1", "fd00::2", TCP, nil)[:39], bad, Tuple{}, 0},
	{"payload length past end", ipv6("fd00::1", "fd00::2", TCP, tcp(1, 2))[:59], bad, Tuple{}, 0},
	{"mapped source", ipv6("::ffff:10.0.0.1", "fd00::2", TCP, tcp(1, 2)), bad, Tuple{}, 0},
	{"mapped destination", ipv6("fd00::1", "::ffff:10.0.0.2", TCP, tcp(1, 2)), bad, Tuple{}, 0},
	{"chain past the bound (9)", ipv6("fd00::1", "fd00::2", TCP, tcp(1, 2), chain(9)...), bad, Tuple{}, 0},
	{"hop-by-hop not first", ipv6("fd00::1", "fd00::2", TCP, tcp(1, 2), opts(ExtDestOpts, 0), opts(ExtHopByHop, 0)), bad, Tuple{}, 0},
	{"ext header cut short", cut(ipv6("fd00::1", "fd00::2", TCP, nil, opts(ExtHopByHop, 0)), 46), bad, Tuple{}, 0},
	{"ext header length past payload", cut(ipv6("fd00::1", "fd00::2", TCP, nil, opts(ExtDestOpts, 0), opts(ExtDestOpts, 3)), 40+8+16), bad, Tuple{}, 0},
	{"ah past payload", cut(ipv6("fd00::1", "fd00::2", TCP, nil, ah()), 60), bad, Tuple{}, 0},
	{"fragment header cut short", cut(ipv6("fd00::1", "fd00::2", UDP, nil, fragHdr(8, false)), 47), bad, Tuple{}, 0},
	{"jumbogram (payload length 0)", with(ipv6("fd00::1", "fd00::2", TCP, tcp(1, 2), opts(ExtHopByHop, 0)), func(p []byte) { p[4], p[5] = 0, 0 }), bad, Tuple{}, 0},
	{"tcp truncated", ipv6("fd00::1", "fd00::2", TCP, tcp(1, 2)[:19]), badL4, Tuple{}, 40},
	{"udp length past end", ipv6("fd00::1", "fd00::2", UDP, with(udp(1, 2), func(b []byte) { b[5] = 9 })), badL4, Tuple{}, 40},
	{"icmpv6 truncated", ipv6("fd00::1", "fd00::2", ICMPv6, icmp6(128, 1)[:7]), badL4, Tuple{}, 40},
	{"tcp after a chain, truncated", ipv6("fd00::1", "fd00::2", TCP, tcp(1, 2)[:12], opts(ExtHopByHop, 0), routing()), badL4, Tuple{}, 72},
}

func TestParse6(t *testing.T) {
	for _, tt := range parse6Tests {
		var p IP
		ok := p.Parse(tt.pkt)
		got := bad
		if ok {
			got = badL4
			if p.L4Valid() {
				got = good
			}
		}
		if got != tt.want {
			t.Errorf("%s: Parse(%x) = %v, L4Valid %v; want outcome %d, got %d", tt.name, tt.pkt, ok, p.L4Valid(), tt.want, got)
			continue
		}
		if !ok {
			continue
		}
		if got == good && p.Tuple != tt.tup {
			t.Errorf("%s: Tuple = %+v, want %+v", tt.name, p.Tuple, tt.tup)
		}
		if !p.Is6() || p.Version() != 6 || p.Tuple.Is4() || p.Len() != 40+int(binary.BigEndian.Uint16(tt.pkt[4:])) ||
			p.HeaderLen() != tt.hdrLen || len(p.Header())+len(p.Payload()) != p.Len() || !p.DontFragment() {
			t.Errorf("%s: Is6 %v Len %d HeaderLen %d (want %d) Payload %d DF %v", tt.name, p.Is6(), p.Len(), p.HeaderLen(), tt.hdrLen, len(p.Payload()), p.DontFragment())
		}
	}
}

func TestParse6Fragments(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pkt      []byte
		frag     bool
		offset   int
		more     bool
		wantPort bool
	}{
		{"no fragment header", ipv6("fd00::1", "fd00::2", UDP, udp(1, 2)), false, 0, false, true},
		{"atomic", ipv6("fd00::1", "fd00::2", UDP, udp(1, 2), fragHdr(0, false)), false, 0, false, true},
		{"first", ipv6("fd00::1", "fd00::2", UDP, udp(1, 2), fragHdr(0, true)), true, 0, true, false},
		{"middle", ipv6("fd00::1", "fd00::2", UDP, make([]byte, 8), fragHdr(1232, true)), true, 1232, true, false},
		{"last", ipv6("fd00::1", "fd00::2", UDP, make([]byte, 8), fragHdr(65528, false)), true, 65528, false, false},
	} {
		var p IP
		if !p.Parse(tc.pkt) || !p.L4Valid() {
			t.Fatalf("%s: Parse(%x) failed", tc.name, tc.pkt)
		}
		if p.Fragment() != tc.frag || p.FragmentOffset() != tc.offset || p.MoreFragments() != tc.more || !p.DontFragment() || (p.SPort != 0) != tc.wantPort {
			t.Errorf("%s: Fragment %v offset %d MF %v DF %v ports %d/%d", tc.name, p.Fragment(), p.FragmentOffset(), p.MoreFragments(), p.DontFragment(), p.SPort, p.DPort)
		}
		if p.Proto != UDP {
			t.Errorf("%s: Proto %d, want UDP", tc.name, p.Proto)
		}
	}
	// All fragments of one datagram are one flow.
	a := ipv6("fd00::1", "fd00::2", UDP, udp(1, 2, 3, 4, 5, 6, 7, 8), fragHdr(0, true))
	b := ipv6("fd00::1", "fd00::2", UDP, []byte{9, 9, 9, 9}, fragHdr(16, false))
	if Hash(a) != Hash(b) {
		t.Errorf("fragments of one datagram hash %#x and %#x", Hash(a), Hash(b))
	}
}

// TestRouted: a routing header with segments left makes the packet
// Routed (its destination is not the final one); none left, or IPv4's
// reserved flag, does not.
func TestRouted(t *testing.T) {
	left := routing()
	left.body = append([]byte(nil), left.body...)
	left.body[2] = 1 // segments left
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"segments left", ipv6("fd00::1", "fd00::2", TCP, tcp(1, 2), opts(ExtHopByHop, 0), left), true},
		{"no segment left", ipv6("fd00::1", "fd00::2", TCP, tcp(1, 2), routing()), false},
		{"no routing header", ipv6("fd00::1", "fd00::2", TCP, tcp(1, 2)), false},
		{"IPv4 with the reserved flag", with(ipv4("10.0.0.1", "10.0.0.2", TCP, tcp(1, 2)), func(p []byte) { p[6] = 0x80 }), false},
	} {
		var p IP
		if !p.Parse(tc.pkt) || p.Routed() != tc.want || (p.Is6() && (p.Fragment() || p.FragmentOffset() != 0 || !p.DontFragment())) {
			t.Errorf("%s: Routed() = %v, want %v (fragment %v)", tc.name, p.Routed(), tc.want, p.Fragment())
		}
	}
}

func TestTupleAddrs(t *testing.T) {
	k := TupleFrom(netip.MustParseAddrPort("10.0.0.1:5"), netip.MustParseAddrPort("10.0.0.2:6"), TCP)
	if !k.Is4() || k.SrcAddr() != netip.MustParseAddr("10.0.0.1") || !k.SrcAddr().Is4() || k.DstAddrPort() != netip.MustParseAddrPort("10.0.0.2:6") {
		t.Errorf("IPv4 tuple %+v: Is4 %v SrcAddr %v DstAddrPort %v", k, k.Is4(), k.SrcAddr(), k.DstAddrPort())
	}
	k6 := TupleFrom(netip.MustParseAddrPort("[fd00::1]:5"), netip.MustParseAddrPort("[fd00::2]:6"), UDP)
	if k6.Is4() || k6.SrcAddrPort() != netip.MustParseAddrPort("[fd00::1]:5") || k6.DstAddr() != netip.MustParseAddr("fd00::2") {
		t.Errorf("IPv6 tuple %+v", k6)
	}
	if r := k6.Reverse(); r.SrcAddrPort() != k6.DstAddrPort() || r.Reverse() != k6 || !r.SrcAddr().Is6() {
		t.Errorf("%+v reversed = %+v", k6, r)
	}
	if Is4(netip.MustParseAddr("::1").As16()) || Is4(netip.MustParseAddr("::").As16()) || !Is4(netip.MustParseAddr("0.0.0.0").As16()) {
		t.Error("Is4 of ::1, :: or 0.0.0.0 wrong")
	}
}

// TestHash6: the hash of an IPv6 flow is its tuple's, the same for every
// packet of the flow, and spreads flows that differ in the high words of
// their addresses (a /48 per site) or in their ports.
func TestHash6(t *testing.T) {
	a := ipv6("fd00::1", "fd00::2", TCP, tcp(40000, 80))
	b := ipv6("fd00::1", "fd00::2", TCP, append(tcp(40000, 80), "data"...), opts(ExtHopByHop, 0))
	if Hash(a) != Hash(b) || Hash(a) != tuple6(TCP, "[fd00::1]:40000", "[fd00::2]:80").Hash() {
		t.Errorf("one flow hashes %#x, %#x", Hash(a), Hash(b))
	}
	const flows, buckets = 1 << 14, 64
	for name, pkt := range map[string]func(i int) []byte{
		"site prefix": func(i int) []byte {
			return ipv6(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i), 15: 1}).String(), "fd00::2", UDP, udp(53, 53))
		},
		"sport": func(i int) []byte { return ipv6("fd00::1", "fd00::2", TCP, tcp(uint16(i), 443)) },
	} {
		var count [buckets]int
		for i := range flows {
			count[(Hash(pkt(i))&0xffff)%buckets]++
		}
		var chi float64
		e := float64(flows) / buckets
		for _, c := range count {
			chi += (float64(c) - e) * (float64(c) - e) / e
		}
		if chi > 130 {
			t.Errorf("%s: chi-square %.1f over %d buckets, want < 130", name, chi, buckets)
		}
	}
}

// TestParse6Property: any well-formed TCP/UDP packet over IPv6 behind a
// random chain of up to MaxExtHeaders headers gives its tuple, and the
// transport header at HeaderLen.
func TestParse6Property(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		src := netip.AddrFrom16([16]byte(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "src")))
		dst := netip.AddrFrom16([16]byte(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "dst")))
		if src.Is4In6() || dst.Is4In6() {
			t.Skip("mapped")
		}
		var exts []ext
		for i := range rapid.IntRange(0, MaxExtHeaders).Draw(t, "exts") {
			switch k := rapid.IntRange(0, 3).Draw(t, "kind"); {
			case i == 0 && k == 0:
				exts = append(exts, opts(ExtHopByHop, rapid.IntRange(0, 4).Draw(t, "len")))
			case k == 1:
				exts = append(exts, routing())
			case k == 2:
				exts = append(exts, ah())
			default:
				exts = append(exts, opts(ExtDestOpts, rapid.IntRange(0, 4).Draw(t, "len")))
			}
		}
		sp, dp := rapid.Uint16().Draw(t, "sport"), rapid.Uint16().Draw(t, "dport")
		proto, l4 := TCP, tcp(sp, dp)
		if rapid.Bool().Draw(t, "udp") {
			proto, l4 = UDP, udp(sp, dp, rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(t, "data")...)
		}
		pkt := ipv6(src.String(), dst.String(), proto, l4, exts...)
		var p IP
		want := TupleFrom(netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp), proto)
		if !p.Parse(pkt) || !p.L4Valid() || p.Tuple != want || !bytes.Equal(p.Payload(), l4) {
			t.Fatalf("Parse(%x) = %+v, HeaderLen %d; want %+v", pkt, p.Tuple, p.HeaderLen(), want)
		}
	})
}

func TestQuoted6(t *testing.T) {
	inner := ipv6("fd00::2", "fd00::9", UDP, udp(53, 4000, 1, 2), opts(ExtHopByHop, 0))
	errPkt := func(typ uint8, q []byte) []byte {
		return ipv6("fd00::9", "fd00::2", ICMPv6, append(icmp6(typ, 0), q...))
	}
	var p IP
	for _, typ := range []uint8{1, 2, 3, 4} {
		p.Parse(errPkt(typ, inner))
		q, ihl, tup, ok := p.Quoted()
		if !ok || ihl != 48 || len(q) != len(inner) || tup != tuple6(UDP, "[fd00::2]:53", "[fd00::9]:4000") {
			t.Errorf("type %d: Quoted() = %x, %d, %+v, %v", typ, q, ihl, tup, ok)
		}
	}
	for name, pkt := range map[string][]byte{
		"echo":                  errPkt(128, inner),
		"quote too short":       errPkt(1, inner[:48+7]),
		"quoted fragment":       errPkt(1, ipv6("fd00::2", "fd00::9", UDP, udp(53, 4000), fragHdr(0, true))),
		"quoted esp":            errPkt(1, ipv6("fd00::2", "fd00::9", 50, make([]byte, 8))),
		"not icmpv6":            inner,
		"quoted ipv4":           errPkt(1, ipv4("10.0.0.2", "10.0.0.9", UDP, udp(53, 4000))),
		"icmpv4 quoting ipv6":   ipv4("10.0.0.9", "10.0.0.2", ICMP, append(icmp(3, 0), inner...)),
		"quoted chain cut":      errPkt(1, inner[:44]),
		"quoted chain too long": errPkt(1, ipv6("fd00::2", "fd00::9", UDP, udp(53, 4000), chain(9)...)),
	} {
		p.Parse(pkt)
		if _, _, _, ok := p.Quoted(); ok {
			t.Errorf("%s: Quoted() ok", name)
		}
	}
}

// TestMayAnswer6: RFC 4443 §2.4(e).
func TestMayAnswer6(t *testing.T) {
	n64 := netip.MustParsePrefix("fd00:1::/64")
	for _, tt := range []struct {
		name    string
		pkt     []byte
		network netip.Prefix
		want    bool
	}{
		{"unicast", ipv6("fd00:1::5", "fd00:2::1", UDP, udp(1, 2)), n64, true},
		{"link-local source", ipv6("fe80::5", "fd00:2::1", UDP, udp(1, 2)), n64, true},
		{"an echo request", ipv6("fd00:1::5", "fd00:2::1", ICMPv6, icmp6(128, 1)), n64, true},
		{"an echo reply", ipv6("fd00:1::5", "fd00:2::1", ICMPv6, icmp6(129, 1)), n64, true},
		{"a neighbour solicitation (informational)", ipv6("fd00:1::5", "fd00:2::1", ICMPv6, icmp6(135, 0)), n64, true},
		{"from the subnet-router anycast, network unknown", ipv6("fd00:1::", "fd00:2::1", UDP, udp(1, 2)), netip.Prefix{}, true},
		{"a first fragment", ipv6("fd00:1::5", "fd00:2::1", UDP, udp(1, 2), fragHdr(0, true)), n64, true},

		{"an ICMPv6 error", ipv6("fd00:1::5", "fd00:2::1", ICMPv6, icmp6(1, 0)), n64, false},
		{"a packet too big", ipv6("fd00:1::5", "fd00:2::1", ICMPv6, icmp6(2, 0)), n64, false},
		{"an unknown error type", ipv6("fd00:1::5", "fd00:2::1", ICMPv6, icmp6(100, 0)), n64, false},
		{"a redirect", ipv6("fd00:1::5", "fd00:2::1", ICMPv6, icmp6(137, 0)), n64, false},
		{"an ICMPv6 without a type", ipv6("fd00:1::5", "fd00:2::1", ICMPv6, nil), n64, false},
		{"to multicast", ipv6("fd00:1::5", "ff02::1", UDP, udp(1, 2)), n64, false},
		{"from multicast", ipv6("ff0e::1", "fd00:2::1", UDP, udp(1, 2)), n64, false},
		{"from ::", ipv6("::", "fd00:2::1", UDP, udp(1, 2)), n64, false},
		{"to ::", ipv6("fd00:1::5", "::", UDP, udp(1, 2)), n64, false},
		{"from ::1", ipv6("::1", "fd00:2::1", UDP, udp(1, 2)), n64, false},
		{"from the subnet-router anycast", ipv6("fd00:1::", "fd00:2::1", UDP, udp(1, 2)), n64, false},
		{"to the subnet-router anycast", ipv6("fd00:2::1", "fd00:1::", UDP, udp(1, 2)), n64, false},
		{"a non-initial fragment", ipv6("fd00:1::5", "fd00:2::1", UDP, make([]byte, 8), fragHdr(8, false)), n64, false},
	} {
		var p IP
		if got := p.Parse(tt.pkt) && MayAnswer(&p, tt.network); got != tt.want {
			t.Errorf("%s: MayAnswer(%x, %v) = %v, want %v", tt.name, tt.pkt, tt.network, got, tt.want)
		}
	}
	var p IP
	p.Parse(ipv6("fd00:1::1", "fd00:2::1", UDP, udp(1, 2)))
	if !MayAnswer(&p, netip.MustParsePrefix("fd00:1::/127")) || !MayAnswer(&p, netip.MustParsePrefix("fd00:1::/128")) {
		t.Error("a /127 or /128 has no subnet-router anycast, yet fd00:1:: was refused")
	}
	// An IPv4 network does not make an IPv6 address an anycast one.
	p.Parse(ipv6("::a01:0", "fd00:2::1", UDP, udp(1, 2)))
	if !MayAnswer(&p, netip.MustParsePrefix("10.1.0.0/16")) {
		t.Error("::a01:0 refused for an IPv4 network")
	}
}

// icmp6Valid reports whether the ICMPv6 message in pkt, an IPv6 packet
// without extension headers, has a valid checksum (gVisor's).
func icmp6Valid(pkt []byte) bool {
	ip := header.IPv6(pkt)
	m := header.ICMPv6(ip.Payload())
	return checksum.Checksum(m, header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(m)))) == 0xffff
}

func TestBuildICMPv6Error(t *testing.T) {
	for _, size := range []int{0, 100, 1232 - 48, 1500, 9000} {
		pkt := ipv6("fd00:1::5", "fd00:2::1", UDP, udp(5353, 53, make([]byte, size)...))
		var p IP
		if !p.Parse(pkt) {
			t.Fatal("parse")
		}
		out := make([]byte, MaxAnswerLen)
		n, err := BuildAnswer(&p, netip.Prefix{}, AnswerTooBig, 1430, out)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if n > 1280 || n != 48+min(len(pkt), MaxICMPv6Quote) {
			t.Errorf("size %d: message of %d bytes", size, n)
		}
		var q IP
		if !q.Parse(out[:n]) || !q.Is6() || q.Proto != ICMPv6 || q.ICMPType != 2 || q.ICMPCode != 0 || !icmp6Valid(out[:n]) {
			t.Fatalf("size %d: answer %x does not parse as a valid packet too big", size, out[:n])
		}
		if binary.BigEndian.Uint32(out[44:]) != 1430 || out[7] != ReplyTTL {
			t.Errorf("MTU %d, hop limit %d", binary.BigEndian.Uint32(out[44:]), out[7])
		}
		if q.SrcAddr() != p.DstAddr() || q.DstAddr() != p.SrcAddr() || !bytes.Equal(out[48:n], pkt[:n-48]) {
			t.Errorf("answer %v → %v, or quote differs", q.SrcAddr(), q.DstAddr())
		}
		if _, _, tup, ok := q.Quoted(); !ok || tup != p.Tuple {
			t.Errorf("the answer's quote: %+v %v", tup, ok)
		}
	}
	var p IP
	p.Parse(ipv4("10.0.0.1", "10.0.0.2", UDP, udp(1, 2)))
	if _, err := BuildICMPv6Error(&p, netip.Prefix{}, ICMPv6DestUnreachable, 0, 0, make([]byte, 1280)); err != ErrFamily {
		t.Errorf("BuildICMPv6Error(IPv4) = %v, want ErrFamily", err)
	}
	p.Parse(ipv6("fd00::1", "fd00::2", UDP, udp(1, 2)))
	if _, err := BuildICMPError(&p, netip.Prefix{}, ICMPDestUnreachable, 0, 0, make([]byte, 576)); err != ErrFamily {
		t.Errorf("BuildICMPError(IPv6) = %v, want ErrFamily", err)
	}
	if _, err := BuildICMPv6Error(&p, netip.Prefix{}, ICMPv6DestUnreachable, 0, 0, make([]byte, 40+8+47)); err != ErrShortBuffer {
		t.Errorf("short buffer: %v", err)
	}
	// A buffer of 576 bytes takes a quote cut to fit.
	big := ipv6("fd00::1", "fd00::2", UDP, udp(1, 2, make([]byte, 1400)...))
	p.Parse(big)
	out := make([]byte, 576)
	if n, err := BuildAnswer(&p, netip.Prefix{}, AnswerTooBig, 1280, out); err != nil || n != 576 || !icmp6Valid(out) || !bytes.Equal(out[48:], big[:528]) {
		t.Errorf("too big into 576 bytes: %d, %v", n, err)
	}
}

// TestBuildAnswer: each answer is the message of the packet's family.
func TestBuildAnswer(t *testing.T) {
	for _, tc := range []struct {
		a           Answer
		typ4, code4 uint8
		typ6, code6 uint8
		reset       bool // a TCP segment, answered with a RST
	}{
		{AnswerTooBig, 3, 4, 2, 0, false},
		{AnswerNoRoute, 3, 0, 1, 0, false},
		{AnswerHostUnreachable, 3, 1, 1, 3, false},
		{AnswerPortUnreachable, 3, 3, 1, 4, false},
		{AnswerReset, 3, 3, 1, 4, false}, // UDP: port unreachable
		{AnswerReset, 0, 0, 0, 0, true},
	} {
		for _, six := range []bool{false, true} {
			pkt := ipv4("10.0.0.1", "10.0.0.2", UDP, udp(1, 2))
			if tc.reset {
				pkt = ipv4("10.0.0.1", "10.0.0.2", TCP, tcp(1, 2))
			}
			if six {
				pkt = ipv6("fd00::1", "fd00::2", pkt[9], pkt[20:])
			}
			var p, q IP
			p.Parse(pkt)
			out := make([]byte, MaxAnswerLen)
			n, err := BuildAnswer(&p, netip.Prefix{}, tc.a, 1400, out)
			if err != nil || !q.Parse(out[:n]) || q.Is6() != six || q.SrcAddr() != p.DstAddr() {
				t.Fatalf("answer %d (IPv6 %v): %v, %x", tc.a, six, err, out[:n])
			}
			if tc.reset {
				if q.Proto != TCP || q.TCPFlags&FlagRST == 0 || q.SPort != 2 || q.DPort != 1 {
					t.Errorf("reset (IPv6 %v): %+v flags %#x", six, q.Tuple, q.TCPFlags)
				}
				continue
			}
			typ, code := tc.typ4, tc.code4
			if six {
				typ, code = tc.typ6, tc.code6
			}
			if q.ICMPType != typ || q.ICMPCode != code {
				t.Errorf("answer %d (IPv6 %v): type %d code %d, want %d/%d", tc.a, six, q.ICMPType, q.ICMPCode, typ, code)
			}
		}
	}
	var p IP
	p.Parse(ipv6("fd00::1", "fd00::2", ICMPv6, icmp6(128, 1)))
	if _, err := BuildAnswer(&p, netip.Prefix{}, AnswerReset, 0, make([]byte, 1280)); err != ErrNoReply {
		t.Errorf("reset of an echo: %v, want ErrNoReply", err)
	}
	if _, err := BuildAnswer(&p, netip.Prefix{}, Answer(99), 0, make([]byte, 1280)); err != ErrNoReply {
		t.Errorf("unknown answer: %v, want ErrNoReply", err)
	}
}

func TestBuildTCPReset6(t *testing.T) {
	seg := tcp(40000, 80)
	binary.BigEndian.PutUint32(seg[4:], 1000)
	pkt := ipv6("fd00:1::5", "fd00:9::1", TCP, append(seg, "hello"...), opts(ExtHopByHop, 0))
	var p IP
	p.Parse(pkt)
	out := make([]byte, 60)
	n, err := BuildTCPReset(&p, netip.Prefix{}, out)
	if err != nil || n != 60 {
		t.Fatalf("BuildTCPReset = %d, %v", n, err)
	}
	ip := header.IPv6(out[:n])
	r := header.TCP(ip.Payload())
	if !r.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), 0, 0) {
		t.Error("bad TCP checksum")
	}
	if ip.SourceAddress() != tcpip.AddrFrom16(p.Dst) || r.SourcePort() != 80 || r.DestinationPort() != 40000 ||
		r.Flags() != header.TCPFlagRst|header.TCPFlagAck || r.AckNumber() != 1000+5+1 || ip.PayloadLength() != 20 || ip.NextHeader() != TCP {
		t.Errorf("RST %x", out[:n])
	}
	if _, err := BuildTCPReset(&p, netip.Prefix{}, out[:59]); err != ErrShortBuffer {
		t.Errorf("short buffer: %v", err)
	}
	p.Parse(ipv6("ff02::1", "fd00:9::1", TCP, seg))
	if _, err := BuildTCPReset(&p, netip.Prefix{}, out); err != ErrNoReply {
		t.Errorf("RST to multicast: %v", err)
	}
}

func TestAllocs6(t *testing.T) {
	v6 := ipv6("fd00::1", "fd00::2", TCP, tcp(40000, 80), opts(ExtHopByHop, 0), routing())
	udp6 := ipv6("fd00::1", "fd00::2", UDP, udp(1, 2, make([]byte, 1400)...))
	out := make([]byte, MaxAnswerLen)
	var p IP
	p.Parse(udp6)
	errPkt := make([]byte, MaxAnswerLen)
	errLen, err := BuildAnswer(&p, netip.Prefix{}, AnswerPortUnreachable, 0, errPkt)
	if err != nil {
		t.Fatal(err)
	}
	var sink uint64
	for name, f := range map[string]func(){
		"Parse": func() { p.Parse(v6); sink += uint64(p.SPort) },
		"Hash":  func() { sink += uint64(Hash(v6) + p.Hash()) },
		"builders": func() {
			p.Parse(v6)
			n, _ := BuildTCPReset(&p, netip.Prefix{}, out)
			p.Parse(udp6)
			m, _ := BuildAnswer(&p, netip.Prefix{}, AnswerTooBig, 1280, out)
			k, _ := BuildAnswer(&p, netip.Prefix{}, AnswerReset, 1280, out)
			sink += uint64(n + m + k)
		},
		"Quoted": func() {
			p.Parse(errPkt[:errLen])
			_, ihl, _, _ := p.Quoted()
			sink += uint64(ihl)
		},
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", name, n)
		}
	}
	_ = sink
}

func BenchmarkParse6(b *testing.B) {
	for _, bc := range []struct {
		name string
		pkt  []byte
	}{
		{"tcp", ipv6("fd00::1", "fd00::2", TCP, tcp(40000, 80))},
		{"hbh+routing+tcp", ipv6("fd00::1", "fd00::2", TCP, tcp(40000, 80), opts(ExtHopByHop, 0), routing())},
		{"chain-8", ipv6("fd00::1", "fd00::2", TCP, tcp(40000, 80), chain(8)...)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.pkt)))
			var p IP
			for b.Loop() {
				p.Parse(bc.pkt)
			}
		})
	}
	b.Run("hash", func(b *testing.B) {
		var p IP
		p.Parse(ipv6("fd00::1", "fd00::2", TCP, tcp(40000, 80)))
		b.ReportAllocs()
		var h uint32
		for b.Loop() {
			h += p.Hash()
		}
		_ = h
	})
	b.Run("too-big", func(b *testing.B) {
		var p IP
		p.Parse(ipv6("fd00::1", "fd00::2", UDP, udp(1, 2, make([]byte, 1400)...)))
		out := make([]byte, MaxAnswerLen)
		b.ReportAllocs()
		b.SetBytes(MaxAnswerLen)
		for b.Loop() {
			BuildAnswer(&p, netip.Prefix{}, AnswerTooBig, 1280, out)
		}
	})
}
