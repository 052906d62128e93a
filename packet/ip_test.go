package packet

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"pgregory.net/rapid"
)

// ipv4 returns an IPv4 packet (no options unless opts, checksum not set)
// carrying l4 as protocol proto.
func ipv4(src, dst string, proto uint8, l4 []byte, opts ...byte) []byte {
	hl := 20 + len(opts)
	p := make([]byte, hl+len(l4))
	p[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], 0x1234) // ID
	p[8] = 64
	p[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	copy(p[20:], opts)
	copy(p[hl:], l4)
	return p
}

func tcp(sport, dport uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12] = 5 << 4
	b[13] = FlagSYN
	return b
}

func udp(sport, dport uint16, data ...byte) []byte {
	b := make([]byte, 8+len(data))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], data)
	return b
}

func icmp(typ uint8, id uint16) []byte {
	b := make([]byte, 8)
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], id)
	return b
}

func with(p []byte, f func([]byte)) []byte {
	f(p)
	return p
}

func tuple(proto uint8, src, dst string) Tuple {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	return TupleFrom(s, d, proto)
}

// parse outcomes
const (
	bad   = iota // Parse reports false
	badL4        // Parse true, L4Valid false
	good         // Parse true, L4Valid true, Tuple as given
)

var parseTests = []struct {
	name string
	pkt  []byte
	want int
	tup  Tuple
}{
	{"tcp", ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 80)), good, tuple(6, "10.0.0.1:40000", "10.0.0.2:80")},
	{"udp", ipv4("10.0.0.1", "10.0.0.2", 17, udp(5353, 53, 1, 2, 3)), good, tuple(17, "10.0.0.1:5353", "10.0.0.2:53")},
	{"options", ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2), 1, 1, 1, 0), good, tuple(17, "10.0.0.1:1", "10.0.0.2:2")},
	{"padding after total length", append(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2)), 0, 0, 0, 0, 0, 0), good, tuple(6, "10.0.0.1:1", "10.0.0.2:2")},
	{"sctp", ipv4("10.0.0.1", "10.0.0.2", 132, tcp(7, 8)[:12]), good, tuple(132, "10.0.0.1:7", "10.0.0.2:8")},
	{"icmp echo", ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 77)), good, tuple(1, "10.0.0.1:77", "10.0.0.2:77")},
	{"icmp echo reply", ipv4("10.0.0.2", "10.0.0.1", 1, icmp(0, 77)), good, tuple(1, "10.0.0.2:77", "10.0.0.1:77")},
	{"icmp unreachable", ipv4("10.0.0.2", "10.0.0.1", 1, icmp(3, 77)), good, tuple(1, "10.0.0.2:0", "10.0.0.1:0")},
	{"gre", ipv4("10.0.0.1", "10.0.0.2", 47, []byte{0, 0, 8, 0}), good, tuple(47, "10.0.0.1:0", "10.0.0.2:0")},
	{"first fragment", with(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2)), func(p []byte) { p[6] = 0x20 }), good, tuple(17, "10.0.0.1:0", "10.0.0.2:0")},
	{"later fragment", with(ipv4("10.0.0.1", "10.0.0.2", 17, []byte{9, 9}), func(p []byte) { p[7] = 0x10 }), good, tuple(17, "10.0.0.1:0", "10.0.0.2:0")},
	{"DF", with(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2)), func(p []byte) { p[6] = 0x40 }), good, tuple(6, "10.0.0.1:1", "10.0.0.2:2")},

	{"empty", nil, bad, Tuple{}},
	{"version 6", with(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2)), func(p []byte) { p[0] = 0x65 }), bad, Tuple{}},
	{"version 5", with(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2)), func(p []byte) { p[0] = 0x55 }), bad, Tuple{}},
	{"short header", ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2))[:19], bad, Tuple{}},
	{"ihl 4", with(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2)), func(p []byte) { p[0] = 0x44 }), bad, Tuple{}},
	{"ihl past total", with(ipv4("10.0.0.1", "10.0.0.2", 6, nil), func(p []byte) { p[0] = 0x46 }), bad, Tuple{}},
	{"total length past end", ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2))[:39], bad, Tuple{}},
	{"tcp truncated", ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2)[:19]), badL4, Tuple{}},
	{"tcp data offset 4", ipv4("10.0.0.1", "10.0.0.2", 6, with(tcp(1, 2), func(b []byte) { b[12] = 4 << 4 })), badL4, Tuple{}},
	{"tcp data offset past end", ipv4("10.0.0.1", "10.0.0.2", 6, with(tcp(1, 2), func(b []byte) { b[12] = 6 << 4 })), badL4, Tuple{}},
	{"udp truncated", ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2)[:7]), badL4, Tuple{}},
	{"udp length past end", ipv4("10.0.0.1", "10.0.0.2", 17, with(udp(1, 2), func(b []byte) { b[5] = 9 })), badL4, Tuple{}},
	{"udp length 7", ipv4("10.0.0.1", "10.0.0.2", 17, with(udp(1, 2), func(b []byte) { b[5] = 7 })), badL4, Tuple{}},
	{"sctp truncated", ipv4("10.0.0.1", "10.0.0.2", 132, make([]byte, 11)), badL4, Tuple{}},
	{"icmp truncated", ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 1)[:7]), badL4, Tuple{}},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
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
		if got == good && p.Tuple != tt.tup {
			t.Errorf("%s: Tuple = %+v, want %+v", tt.name, p.Tuple, tt.tup)
		}
		if ok && (p.Len() != int(binary.BigEndian.Uint16(tt.pkt[2:])) || p.HeaderLen() != int(tt.pkt[0]&0xf)*4 ||
			len(p.Header())+len(p.Payload()) != p.Len()) {
			t.Errorf("%s: Len %d HeaderLen %d Payload %d", tt.name, p.Len(), p.HeaderLen(), len(p.Payload()))
		}
	}
}

func TestParseFields(t *testing.T) {
	var p IP
	if !p.Parse(with(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2)), func(b []byte) { b[6], b[7] = 0x20|0x01, 0x02 })) {
		t.Fatal("fragment did not parse")
	}
	if !p.Fragment() || !p.MoreFragments() || p.DontFragment() || p.FragmentOffset() != 0x102*8 {
		t.Errorf("fragment: Fragment %v MF %v DF %v offset %d", p.Fragment(), p.MoreFragments(), p.DontFragment(), p.FragmentOffset())
	}
	p.Parse(with(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2)), func(b []byte) { b[6] = 0x40; b[20+13] = FlagACK | FlagFIN }))
	if p.Fragment() || !p.DontFragment() || p.TCPFlags != FlagACK|FlagFIN {
		t.Errorf("DF TCP: Fragment %v DF %v flags %#x", p.Fragment(), p.DontFragment(), p.TCPFlags)
	}
	p.Parse(ipv4("10.0.0.1", "10.0.0.2", 1, with(icmp(3, 0), func(b []byte) { b[1] = 4 })))
	if p.ICMPType != 3 || p.ICMPCode != 4 {
		t.Errorf("ICMP type %d code %d, want 3/4", p.ICMPType, p.ICMPCode)
	}
	k := tuple(6, "10.0.0.1:40000", "10.0.0.2:80")
	if r := k.Reverse(); r != tuple(6, "10.0.0.2:80", "10.0.0.1:40000") || r.Reverse() != k {
		t.Errorf("%+v reversed = %+v", k, r)
	}
}

// TestHashGolden pins the flow hash to the values internal/flow.Hash gave
// before it moved here: the outer source ports of existing flows do not
// change across the upgrade.
func TestHashGolden(t *testing.T) {
	for _, tc := range []struct {
		pkt  []byte
		want uint32
	}{
		{ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 80)), 0x000ba2fc},
		{ipv4("10.0.0.1", "10.0.0.2", 17, udp(5353, 53, 1, 2, 3)), 0x1070220b},
		{ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 77)), 0xbe2f0054},
		{with(ipv4("10.0.0.1", "10.0.0.2", 17, []byte{9, 9}), func(p []byte) { p[7] = 0x10 }), 0x158dbec1},
		{ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2)[:19]), 0x435523da}, // not L4Valid: prefix hash
	} {
		if h := Hash(tc.pkt); h != tc.want {
			t.Errorf("Hash(%x) = %#08x, want %#08x", tc.pkt, h, tc.want)
		}
	}
}

// TestParseProperty: any well-formed TCP/UDP packet gives its tuple, and
// its hash is the tuple's.
func TestParseProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		src := [4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "src"))
		dst := [4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "dst"))
		sp := rapid.Uint16().Draw(t, "sport")
		dp := rapid.Uint16().Draw(t, "dport")
		proto := rapid.SampledFrom([]uint8{TCP, UDP}).Draw(t, "proto")
		l4 := tcp(sp, dp)
		if proto == UDP {
			l4 = udp(sp, dp, rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(t, "data")...)
		}
		pkt := ipv4(netip.AddrFrom4(src).String(), netip.AddrFrom4(dst).String(), proto, l4)
		want := Tuple{Src: netip.AddrFrom4(src).As16(), Dst: netip.AddrFrom4(dst).As16(), SPort: sp, DPort: dp, Proto: proto}
		var p IP
		if !p.Parse(pkt) || !p.L4Valid() || p.Tuple != want {
			t.Fatalf("Parse(%x) = %+v, want %+v", pkt, p.Tuple, want)
		}
		if Hash(pkt) != want.Hash() || p.Hash() != want.Hash() {
			t.Fatalf("Hash(%x) = %#x, want %#x", pkt, Hash(pkt), want.Hash())
		}
	})
}

func TestHashSameFlow(t *testing.T) {
	a := ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 80))
	b := with(ipv4("10.0.0.1", "10.0.0.2", 6, append(tcp(40000, 80), "payload"...)), func(p []byte) {
		p[4], p[8] = 0x99, 3 // other ID and TTL
	})
	if Hash(a) != Hash(b) {
		t.Errorf("Hash(%x) = %#x, Hash(%x) = %#x, want equal (one flow)", a, Hash(a), b, Hash(b))
	}
	c := ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40001, 80))
	if Hash(a) == Hash(c) {
		t.Errorf("Hash(%x) == Hash(%x) = %#x, want different flows to differ", a, c, Hash(a))
	}
	for _, tt := range parseTests {
		Hash(tt.pkt) // never panics, malformed or not
	}
	if Hash([]byte{1, 2, 3}) == Hash([]byte{1, 2, 4}) || Hash(nil) == Hash([]byte{0}) {
		t.Errorf("prefix hash ignores bytes or length")
	}
	long := make([]byte, 200)
	for i := range long {
		long[i] = byte(i)
	}
	if h := Hash(long); h != Hash(append([]byte(nil), long...)) || Hash(long[:64]) == Hash(long[:65]) {
		t.Errorf("prefix hash of long input unstable or ignores length")
	}
}

// TestHashSpread: flows that differ in one field (the usual case: source
// ports of one client, or clients of one server) spread evenly over the 16
// bits that become the outer UDP source port.
func TestHashSpread(t *testing.T) {
	const flows, buckets = 1 << 16, 64
	for _, tc := range []struct {
		name string
		pkt  func(i int) []byte
	}{
		{"sport", func(i int) []byte { return ipv4("10.0.0.1", "10.0.0.2", 6, tcp(uint16(i), 80)) }},
		{"src addr", func(i int) []byte {
			return ipv4(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String(), "10.0.0.2", 17, udp(53, 53))
		}},
		{"dport", func(i int) []byte { return ipv4("10.0.0.1", "10.0.0.2", 17, udp(1000, uint16(i))) }},
	} {
		var count [buckets]int
		var ones [32]int
		for i := range flows {
			h := Hash(tc.pkt(i))
			count[(h&0xffff)%buckets]++
			for b := range 32 {
				ones[b] += int(h >> b & 1)
			}
		}
		// Chi-square over 63 degrees of freedom; p = 1e-6 is about 130.
		var chi float64
		e := float64(flows) / buckets
		for _, c := range count {
			chi += (float64(c) - e) * (float64(c) - e) / e
		}
		if chi > 130 {
			t.Errorf("%s: chi-square of low 16 bits over %d buckets = %.1f, want < 130: %v", tc.name, buckets, chi, count)
		}
		for b, n := range ones {
			if n < flows/2-flows/50 || n > flows/2+flows/50 {
				t.Errorf("%s: bit %d set in %d of %d hashes", tc.name, b, n, flows)
			}
		}
	}
}

func TestAllocs(t *testing.T) {
	v4 := ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 80))
	bad := []byte{0x45, 1, 2}
	out := make([]byte, 576)
	var sink uint64
	var p IP
	for name, f := range map[string]func(){
		"Parse": func() { p.Parse(v4); sink += uint64(p.SPort) },
		"Hash":  func() { sink += uint64(Hash(v4) + Hash(bad) + p.Hash()) },
		"builders": func() {
			p.Parse(v4)
			n, _ := BuildTCPReset(&p, netip.Prefix{}, out)
			m, _ := BuildICMPError(&p, netip.Prefix{}, ICMPDestUnreachable, ICMPHostUnreachable, 0, out)
			sink += uint64(n + m)
		},
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", name, n)
		}
	}
	_ = sink
}

// FuzzParse: Parse never panics; what it accepts stays within pkt, and
// the builders never panic or overrun on it.
func FuzzParse(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.pkt)
	}
	for _, tt := range parse6Tests {
		f.Add(tt.pkt)
	}
	f.Add(ipv6("fd00::9", "fd00::2", ICMPv6, append(icmp(1, 0), ipv6("fd00::2", "fd00::9", UDP, udp(1, 2), opts(ExtHopByHop, 0))...)))
	out := make([]byte, MaxAnswerLen)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		h := Hash(pkt)
		var p IP
		if !p.Parse(pkt) {
			if h != prefixHash(pkt) {
				t.Fatalf("Hash(%x) of an unparsed packet is not its prefix hash", pkt)
			}
			return
		}
		var two IP
		two.Parse([]byte{0x45}) // a stale view must not leak into the next
		if !two.ParseHeader(pkt) || two.L4Valid() || two.SPort != 0 {
			t.Fatalf("ParseHeader(%x) = %+v", pkt, two)
		}
		two.ParseTransport()
		two.ParseTransport()
		if two.Tuple != p.Tuple || two.L4Valid() != p.L4Valid() || two.TCPFlags != p.TCPFlags || two.ICMPType != p.ICMPType || two.Hash() != p.Hash() {
			t.Fatalf("ParseHeader+ParseTransport(%x) = %+v, Parse = %+v", pkt, two, p)
		}
		if p.Len() > len(pkt) || p.HeaderLen() < 20 || p.HeaderLen() > p.Len() {
			t.Fatalf("Parse(%x): Len %d HeaderLen %d", pkt, p.Len(), p.HeaderLen())
		}
		if p.Is6() {
			if pkt[0]>>4 != 6 || p.HeaderLen() < 40 || p.SrcAddr() != netip.AddrFrom16([16]byte(pkt[8:24])) || p.DstAddr() != netip.AddrFrom16([16]byte(pkt[24:40])) ||
				p.Tuple.Is4() || !p.DontFragment() {
				t.Fatalf("Parse(%x): IPv6 view %+v, HeaderLen %d", pkt, p.Tuple, p.HeaderLen())
			}
		} else if pkt[0]>>4 != 4 || !p.Tuple.Is4() || p.SrcAddr() != netip.AddrFrom4([4]byte(pkt[12:16])) || p.DstAddr() != netip.AddrFrom4([4]byte(pkt[16:20])) || p.Proto != pkt[9] {
			t.Fatalf("Parse(%x): tuple %+v", pkt, p.Tuple)
		}
		if p.Hash() != h {
			t.Fatalf("Hash(%x) = %#x, view hash %#x", pkt, h, p.Hash())
		}
		if q, ihl, _, ok := p.Quoted(); ok && (len(q) < ihl+8 || ihl < 20) {
			t.Fatalf("Quoted(%x) = %x, ihl %d", pkt, q, ihl)
		}
		if p.Fragment() && (p.SPort != 0 || p.DPort != 0) {
			t.Fatalf("fragment %x has ports %+v", pkt, p.Tuple)
		}
		limit := 576
		if p.Is6() {
			limit = MaxAnswerLen
		}
		for _, b := range []func() (int, error){
			func() (int, error) { return BuildTCPReset(&p, netip.Prefix{}, out) },
			func() (int, error) { return BuildICMPPortUnreachable(&p, netip.Prefix{}, out) },
			func() (int, error) {
				return BuildICMPError(&p, netip.Prefix{}, ICMPDestUnreachable, ICMPFragNeeded, 1400, out)
			},
			func() (int, error) {
				return BuildICMPv6Error(&p, netip.Prefix{}, ICMPv6PacketTooBig, 0, 1280, out)
			},
			func() (int, error) { return BuildAnswer(&p, netip.Prefix{}, AnswerTooBig, 1280, out) },
			func() (int, error) { return BuildAnswer(&p, netip.Prefix{}, AnswerReset, 0, out) },
		} {
			if n, err := b(); err == nil && (n < 28 || n > limit) {
				t.Fatalf("builder wrote %d bytes about %x", n, pkt)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	pkt := ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 80))
	b.ReportAllocs()
	var p IP
	for b.Loop() {
		p.Parse(pkt)
	}
}

func BenchmarkHash(b *testing.B) {
	for _, bc := range []struct {
		name string
		pkt  []byte
	}{
		{"ipv4-tcp", ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 80))},
		{"non-ip", make([]byte, 1400)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var h uint32
			for b.Loop() {
				h += Hash(bc.pkt)
			}
			_ = h
		})
	}
	b.Run("parsed", func(b *testing.B) {
		var p IP
		p.Parse(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 80)))
		b.ReportAllocs()
		var h uint32
		for b.Loop() {
			h += p.Hash()
		}
		_ = h
	})
}

func TestQuoted(t *testing.T) {
	inner := ipv4("10.0.0.2", "10.0.0.9", UDP, udp(53, 4000, 1, 2))
	errPkt := func(typ uint8, q []byte) []byte {
		return ipv4("10.0.0.9", "10.0.0.2", ICMP, append(icmp(typ, 0), q...))
	}
	var p IP
	p.Parse(errPkt(3, inner))
	q, ihl, tup, ok := p.Quoted()
	if !ok || ihl != 20 || len(q) != len(inner) || tup != tuple(UDP, "10.0.0.2:53", "10.0.0.9:4000") {
		t.Errorf("Quoted() = %x, %d, %+v, %v", q, ihl, tup, ok)
	}
	for name, pkt := range map[string][]byte{
		"echo":             errPkt(8, inner),
		"quote too short":  errPkt(3, inner[:27]),
		"quoted fragment":  errPkt(11, with(append([]byte(nil), inner...), func(b []byte) { b[7] = 1 })),
		"quoted gre":       errPkt(3, ipv4("10.0.0.2", "10.0.0.9", 47, make([]byte, 8))),
		"not icmp":         inner,
		"quoted not ipv4":  errPkt(3, with(append([]byte(nil), inner...), func(b []byte) { b[0] = 0x65 })),
		"quoted ihl short": errPkt(3, with(append([]byte(nil), inner...), func(b []byte) { b[0] = 0x44 })),
	} {
		p.Parse(pkt)
		if _, _, _, ok := p.Quoted(); ok {
			t.Errorf("%s: Quoted() ok", name)
		}
	}
}
