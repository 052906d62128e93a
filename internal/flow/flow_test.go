package flow

import (
	"encoding/binary"
	"math/bits"
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

// ipv6 returns an IPv6 packet whose first next-header is next.
func ipv6(src, dst string, next uint8, payload []byte) []byte {
	p := make([]byte, 40+len(payload))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(len(payload)))
	p[6] = next
	p[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	copy(p[40:], payload)
	return p
}

func tcp(sport, dport uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12] = 5 << 4
	b[13] = 0x02 // SYN
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

// ext returns an IPv6 extension header of n 8-byte units with next header next.
func ext(next uint8, n int, rest []byte) []byte {
	b := make([]byte, n*8, n*8+len(rest))
	b[0] = next
	b[1] = byte(n - 1)
	return append(b, rest...)
}

// frag6 returns an IPv6 Fragment header.
func frag6(next uint8, offset uint16, more bool, rest []byte) []byte {
	b := make([]byte, 8, 8+len(rest))
	b[0] = next
	v := offset << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	return append(b, rest...)
}

func with(p []byte, f func([]byte)) []byte {
	f(p)
	return p
}

func key(proto uint8, src, dst string) Key {
	return MakeKey(proto, netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst))
}

var fromPacketTests = []struct {
	name string
	pkt  []byte
	want Key // zero: FromPacket must report false
}{
	{"ipv4 tcp", ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 80)), key(6, "10.0.0.1:40000", "10.0.0.2:80")},
	{"ipv4 udp", ipv4("10.0.0.1", "10.0.0.2", 17, udp(5353, 53, 1, 2, 3)), key(17, "10.0.0.1:5353", "10.0.0.2:53")},
	{"ipv4 options", ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2), 1, 1, 1, 0), key(17, "10.0.0.1:1", "10.0.0.2:2")},
	{"ipv4 padding after total length", append(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2)), 0, 0, 0, 0, 0, 0), key(6, "10.0.0.1:1", "10.0.0.2:2")},
	{"ipv4 sctp", ipv4("10.0.0.1", "10.0.0.2", 132, tcp(7, 8)[:12]), key(132, "10.0.0.1:7", "10.0.0.2:8")},
	{"ipv4 icmp echo", ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 77)), key(1, "10.0.0.1:77", "10.0.0.2:77")},
	{"ipv4 icmp echo reply", ipv4("10.0.0.2", "10.0.0.1", 1, icmp(0, 77)), key(1, "10.0.0.2:77", "10.0.0.1:77")},
	{"ipv4 icmp unreachable", ipv4("10.0.0.2", "10.0.0.1", 1, icmp(3, 77)), key(1, "10.0.0.2:0", "10.0.0.1:0")},
	{"ipv4 gre", ipv4("10.0.0.1", "10.0.0.2", 47, []byte{0, 0, 8, 0}), key(47, "10.0.0.1:0", "10.0.0.2:0")},
	{"ipv4 first fragment", with(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2)), func(p []byte) { p[6] = 0x20 }), key(17, "10.0.0.1:0", "10.0.0.2:0")},
	{"ipv4 later fragment", with(ipv4("10.0.0.1", "10.0.0.2", 17, []byte{9, 9}), func(p []byte) { p[7] = 0x10 }), key(17, "10.0.0.1:0", "10.0.0.2:0")},
	{"ipv4 DF", with(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2)), func(p []byte) { p[6] = 0x40 }), key(6, "10.0.0.1:1", "10.0.0.2:2")},
	{"ipv6 tcp", ipv6("fd00::1", "fd00::2", 6, tcp(40000, 443)), key(6, "[fd00::1]:40000", "[fd00::2]:443")},
	{"ipv6 v4-mapped stays ipv6", ipv6("::ffff:10.0.0.1", "::ffff:10.0.0.2", 6, tcp(1, 2)), key(6, "[::ffff:10.0.0.1]:1", "[::ffff:10.0.0.2]:2")},
	{"ipv6 hop-by-hop dstopts udp", ipv6("fd00::1", "fd00::2", 0, ext(60, 1, ext(17, 2, udp(1000, 2000)))), key(17, "[fd00::1]:1000", "[fd00::2]:2000")},
	{"ipv6 routing tcp", ipv6("fd00::1", "fd00::2", 43, ext(6, 3, tcp(3, 4))), key(6, "[fd00::1]:3", "[fd00::2]:4")},
	{"ipv6 auth header", ipv6("fd00::1", "fd00::2", 51, with(make([]byte, 12), func(b []byte) { b[0], b[1] = 6, 1 })), Key{}}, // AH then truncated TCP
	{"ipv6 auth header tcp", ipv6("fd00::1", "fd00::2", 51, append(with(make([]byte, 12), func(b []byte) { b[0], b[1] = 6, 1 }), tcp(5, 6)...)), key(6, "[fd00::1]:5", "[fd00::2]:6")},
	{"ipv6 atomic fragment", ipv6("fd00::1", "fd00::2", 44, frag6(17, 0, false, udp(1, 2))), key(17, "[fd00::1]:1", "[fd00::2]:2")},
	{"ipv6 first fragment", ipv6("fd00::1", "fd00::2", 44, frag6(17, 0, true, udp(1, 2))), key(17, "[fd00::1]:0", "[fd00::2]:0")},
	{"ipv6 later fragment", ipv6("fd00::1", "fd00::2", 44, frag6(17, 100, false, []byte{1, 2, 3})), key(17, "[fd00::1]:0", "[fd00::2]:0")},
	{"ipv6 icmpv6 echo", ipv6("fd00::1", "fd00::2", 58, icmp(128, 9)), key(58, "[fd00::1]:9", "[fd00::2]:9")},
	{"ipv6 icmpv6 echo reply", ipv6("fd00::2", "fd00::1", 58, icmp(129, 9)), key(58, "[fd00::2]:9", "[fd00::1]:9")},
	{"ipv6 icmpv6 neighbor solicitation", ipv6("fd00::2", "fd00::1", 58, icmp(135, 9)), key(58, "[fd00::2]:0", "[fd00::1]:0")},
	{"ipv6 icmpv4 inside is portless", ipv6("fd00::2", "fd00::1", 1, icmp(8, 9)), key(1, "[fd00::2]:0", "[fd00::1]:0")},
	{"ipv6 no next header", ipv6("fd00::1", "fd00::2", 59, nil), key(59, "[fd00::1]:0", "[fd00::2]:0")},

	{"empty", nil, Key{}},
	{"version 5", with(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2)), func(p []byte) { p[0] = 0x55 }), Key{}},
	{"ipv4 short header", ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2))[:19], Key{}},
	{"ipv4 ihl 4", with(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2)), func(p []byte) { p[0] = 0x44 }), Key{}},
	{"ipv4 ihl past total", with(ipv4("10.0.0.1", "10.0.0.2", 6, nil), func(p []byte) { p[0] = 0x46 }), Key{}},
	{"ipv4 total length past end", ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2))[:39], Key{}},
	{"ipv4 tcp truncated", ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2)[:19]), Key{}},
	{"ipv4 tcp data offset 4", ipv4("10.0.0.1", "10.0.0.2", 6, with(tcp(1, 2), func(b []byte) { b[12] = 4 << 4 })), Key{}},
	{"ipv4 tcp data offset past end", ipv4("10.0.0.1", "10.0.0.2", 6, with(tcp(1, 2), func(b []byte) { b[12] = 6 << 4 })), Key{}},
	{"ipv4 udp truncated", ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2)[:7]), Key{}},
	{"ipv4 udp length past end", ipv4("10.0.0.1", "10.0.0.2", 17, with(udp(1, 2), func(b []byte) { b[5] = 9 })), Key{}},
	{"ipv4 udp length 7", ipv4("10.0.0.1", "10.0.0.2", 17, with(udp(1, 2), func(b []byte) { b[5] = 7 })), Key{}},
	{"ipv4 sctp truncated", ipv4("10.0.0.1", "10.0.0.2", 132, make([]byte, 11)), Key{}},
	{"ipv4 icmp truncated", ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 1)[:7]), Key{}},
	{"ipv6 short header", ipv6("fd00::1", "fd00::2", 6, nil)[:39], Key{}},
	{"ipv6 payload length past end", ipv6("fd00::1", "fd00::2", 6, tcp(1, 2))[:59], Key{}},
	{"ipv6 ext header past end", ipv6("fd00::1", "fd00::2", 0, ext(6, 1, nil)[:7]), Key{}},
	{"ipv6 ext length past end", ipv6("fd00::1", "fd00::2", 0, with(ext(6, 1, tcp(1, 2)), func(b []byte) { b[1] = 9 })), Key{}},
	{"ipv6 fragment truncated", ipv6("fd00::1", "fd00::2", 44, frag6(17, 0, false, nil)[:7]), Key{}},
	{"ipv6 nine ext headers", ipv6("fd00::1", "fd00::2", 60, ext(60, 1, ext(60, 1, ext(60, 1, ext(60, 1, ext(60, 1, ext(60, 1, ext(60, 1, ext(60, 1, ext(17, 1, udp(1, 2))))))))))), Key{}},
	{"ipv6 icmpv6 truncated", ipv6("fd00::1", "fd00::2", 58, icmp(128, 1)[:4]), Key{}},
}

func TestFromPacket(t *testing.T) {
	for _, tt := range fromPacketTests {
		got, ok := FromPacket(tt.pkt)
		if ok != tt.want.IsValid() || got != tt.want {
			t.Errorf("%s: FromPacket(%x) = %v, %v, want %v, %v", tt.name, tt.pkt, got, ok, tt.want, tt.want.IsValid())
		}
	}
}

func TestKey(t *testing.T) {
	k := key(6, "10.0.0.1:40000", "10.0.0.2:80")
	if got, want := k.String(), "tcp 10.0.0.1:40000 -> 10.0.0.2:80"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if !k.Is4() || k.Proto() != 6 {
		t.Errorf("%v: Is4() = %v, Proto() = %d", k, k.Is4(), k.Proto())
	}
	r := k.Reverse()
	if r.Src() != k.Dst() || r.Dst() != k.Src() || r.Reverse() != k || r == k {
		t.Errorf("%v.Reverse() = %v", k, r)
	}
	got, _ := FromPacket(ipv4("10.0.0.2", "10.0.0.1", 6, tcp(80, 40000)))
	if got != r {
		t.Errorf("FromPacket(reply) = %v, want %v", got, r)
	}
	echo, _ := FromPacket(ipv6("fd00::1", "fd00::2", 58, icmp(128, 9)))
	reply, _ := FromPacket(ipv6("fd00::2", "fd00::1", 58, icmp(129, 9)))
	if echo.Reverse() != reply {
		t.Errorf("echo %v reversed = %v, want reply %v", echo, echo.Reverse(), reply)
	}
	if (Key{}).IsValid() || (Key{}).String() != "invalid" || (Key{}).Src().IsValid() {
		t.Errorf("zero Key is valid")
	}
	if k6 := key(17, "[fd00::1]:1", "[fd00::2]:2"); k6.Is4() || k6.String() != "udp [fd00::1]:1 -> [fd00::2]:2" {
		t.Errorf("ipv6 key %v: Is4() = %v", k6, k6.Is4())
	}
	if key(99, "1.1.1.1:0", "2.2.2.2:0").String() != "proto-99 1.1.1.1:0 -> 2.2.2.2:0" {
		t.Errorf("String() = %q", key(99, "1.1.1.1:0", "2.2.2.2:0"))
	}
	m := map[Key]int{k: 1, r: 2}
	if m[key(6, "10.0.0.1:40000", "10.0.0.2:80")] != 1 || len(m) != 2 {
		t.Errorf("Key as map key: %v", m)
	}
}

// TestFromPacketProperty: any well-formed TCP/UDP packet gives the key
// MakeKey gives for its tuple, and the key's accessors give the tuple back.
func TestFromPacketProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v6 := rapid.Bool().Draw(t, "v6")
		n := 4
		if v6 {
			n = 16
		}
		sb := rapid.SliceOfN(rapid.Byte(), n, n).Draw(t, "src")
		db := rapid.SliceOfN(rapid.Byte(), n, n).Draw(t, "dst")
		src, _ := netip.AddrFromSlice(sb)
		dst, _ := netip.AddrFromSlice(db)
		sp := rapid.Uint16().Draw(t, "sport")
		dp := rapid.Uint16().Draw(t, "dport")
		proto := rapid.SampledFrom([]uint8{6, 17}).Draw(t, "proto")
		l4 := tcp(sp, dp)
		if proto == 17 {
			l4 = udp(sp, dp, rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(t, "data")...)
		}
		var pkt []byte
		if v6 {
			pkt = ipv6(src.String(), dst.String(), proto, l4)
		} else {
			pkt = ipv4(src.String(), dst.String(), proto, l4)
		}
		want := MakeKey(proto, netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp))
		got, ok := FromPacket(pkt)
		if !ok || got != want {
			t.Fatalf("FromPacket(%x) = %v, %v, want %v, true", pkt, got, ok, want)
		}
		if got.Src() != netip.AddrPortFrom(src, sp) || got.Dst() != netip.AddrPortFrom(dst, dp) || got.Proto() != proto {
			t.Fatalf("%v: Src() = %v, Dst() = %v, Proto() = %d", got, got.Src(), got.Dst(), got.Proto())
		}
		if Hash(pkt) != got.hash32() {
			t.Fatalf("Hash(%x) = %#x, want %#x", pkt, Hash(pkt), got.hash32())
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
	for _, tt := range fromPacketTests {
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
		{"ipv6 dport", func(i int) []byte { return ipv6("fd00::1", "fd00::2", 17, udp(1000, uint16(i))) }},
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

// siphash is the reference SipHash-c-d over bytes, to check sip13.
func siphash(k0, k1 uint64, msg []byte, c, d int) uint64 {
	v := [4]uint64{k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d, k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573}
	round := func() { v[0], v[1], v[2], v[3] = sipRound(v[0], v[1], v[2], v[3]) }
	n := len(msg)
	for ; len(msg) >= 8; msg = msg[8:] {
		m := binary.LittleEndian.Uint64(msg)
		v[3] ^= m
		for range c {
			round()
		}
		v[0] ^= m
	}
	m := uint64(n) << 56
	for i, b := range msg {
		m |= uint64(b) << (8 * i)
	}
	v[3] ^= m
	for range c {
		round()
	}
	v[0] ^= m
	v[2] ^= 0xff
	for range d {
		round()
	}
	return v[0] ^ v[1] ^ v[2] ^ v[3]
}

func TestSipHash(t *testing.T) {
	// Reference vectors of SipHash-2-4 (key 00..0f, message 00..n-1).
	k0, k1 := uint64(0x0706050403020100), uint64(0x0f0e0d0c0b0a0908)
	msg := make([]byte, 16)
	for i := range msg {
		msg[i] = byte(i)
	}
	for _, v := range []struct {
		n    int
		want uint64
	}{{0, 0x726fdb47dd0e0e31}, {8, 0x93f5f5799a932462}} {
		if got := siphash(k0, k1, msg[:v.n], 2, 4); got != v.want {
			t.Fatalf("siphash-2-4(%x) = %#x, want %#x", msg[:v.n], got, v.want)
		}
	}
	for i := range 1000 {
		seed := uint64(i) * 0x9e3779b97f4a7c15
		k := key(uint8(i), "[fd00::1]:1", netip.AddrPortFrom(netip.AddrFrom16([16]byte{15: byte(i)}), uint16(i)).String())
		if i%2 == 0 {
			k = key(6, "10.0.0.1:1234", netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 80).String())
		}
		var enc []byte
		for _, w := range []uint64{k.srcHi, k.srcLo, k.dstHi, k.dstLo} {
			enc = binary.LittleEndian.AppendUint64(enc, w)
		}
		enc = binary.LittleEndian.AppendUint16(enc, k.sport)
		enc = binary.LittleEndian.AppendUint16(enc, k.dport)
		enc = append(enc, k.proto, k.family, 0, 0)
		if got, want := k.Hash(seed), siphash(seed, seed^p0, enc, 1, 3); got != want {
			t.Fatalf("%v.Hash(%#x) = %#x, want SipHash-1-3 %#x", k, seed, got, want)
		}
	}
}

func TestKeyHashSeeded(t *testing.T) {
	a := key(6, "10.0.0.1:1", "10.0.0.2:2")
	b := key(6, "10.0.0.1:2", "10.0.0.2:1")
	if h := a.Hash(1); h != a.Hash(1) {
		t.Errorf("Hash not deterministic")
	}
	if a.Hash(1) == a.Hash(2) || a.Hash(1) == b.Hash(1) || a.Hash(1) == a.Reverse().Hash(1) {
		t.Errorf("Hash ignores seed or tuple: %#x %#x %#x %#x", a.Hash(1), a.Hash(2), b.Hash(1), a.Reverse().Hash(1))
	}
	// Flipping any input bit flips about half the output bits.
	var total int
	const trials = 4*64 + 48
	for i := range trials {
		c := a
		switch w, bit := i/64, uint(i%64); w {
		case 0:
			c.srcHi ^= 1 << bit
		case 1:
			c.srcLo ^= 1 << bit
		case 2:
			c.dstHi ^= 1 << bit
		case 3:
			c.dstLo ^= 1 << bit
		default:
			switch {
			case bit < 16:
				c.sport ^= 1 << bit
			case bit < 32:
				c.dport ^= 1 << (bit - 16)
			case bit < 40:
				c.proto ^= 1 << (bit - 32)
			default:
				c.family ^= 1 << (bit - 40)
			}
		}
		total += bits.OnesCount64(a.Hash(7) ^ c.Hash(7))
	}
	if avg := float64(total) / trials; avg < 28 || avg > 36 {
		t.Errorf("average output bits flipped by one input bit = %.1f, want about 32", avg)
	}
}

func TestAllocs(t *testing.T) {
	v4 := ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 80))
	v6 := ipv6("fd00::1", "fd00::2", 0, ext(17, 1, udp(1, 2)))
	bad := []byte{0x45, 1, 2}
	var sink uint64
	for name, f := range map[string]func(){
		"FromPacket ipv4": func() { k, _ := FromPacket(v4); sink += uint64(k.sport) },
		"FromPacket ipv6": func() { k, _ := FromPacket(v6); sink += uint64(k.sport) },
		"Hash":            func() { sink += uint64(Hash(v4) + Hash(v6) + Hash(bad)) },
		"Key.Hash":        func() { k, _ := FromPacket(v6); sink += k.Hash(sink) },
		"MakeKey Reverse": func() {
			k := MakeKey(6, netip.AddrPortFrom(netip.AddrFrom4([4]byte{1, 2, 3, 4}), 1), netip.AddrPort{})
			sink += uint64(k.Reverse().Src().Port())
		},
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", name, n)
		}
	}
	_ = sink
}

func FuzzFromPacket(f *testing.F) {
	for _, tt := range fromPacketTests {
		f.Add(tt.pkt)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		h := Hash(pkt)
		k, ok := FromPacket(pkt)
		if !ok {
			if k != (Key{}) {
				t.Fatalf("FromPacket(%x) = %v, false, want the zero Key", pkt, k)
			}
			return
		}
		if !k.IsValid() || k.Is4() != (pkt[0]>>4 == 4) {
			t.Fatalf("FromPacket(%x) = %v: IsValid() = %v, Is4() = %v", pkt, k, k.IsValid(), k.Is4())
		}
		if h != k.hash32() {
			t.Fatalf("Hash(%x) = %#x, want %#x (hash of %v)", pkt, h, k.hash32(), k)
		}
		if m := MakeKey(k.Proto(), k.Src(), k.Dst()); m != k {
			t.Fatalf("MakeKey(%v) = %v, want %v", k, m, k)
		}
		if k.Reverse().Reverse() != k {
			t.Fatalf("%v reversed twice = %v", k, k.Reverse().Reverse())
		}
	})
}

func BenchmarkFromPacket(b *testing.B) {
	for _, bc := range []struct {
		name string
		pkt  []byte
	}{
		{"ipv4-tcp", ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 80))},
		{"ipv6-udp-ext", ipv6("fd00::1", "fd00::2", 0, ext(17, 1, udp(1, 2)))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var k Key
			for b.Loop() {
				k, _ = FromPacket(bc.pkt)
			}
			_ = k
		})
	}
}

func BenchmarkHash(b *testing.B) {
	for _, bc := range []struct {
		name string
		pkt  []byte
	}{
		{"ipv4-tcp", ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 80))},
		{"ipv6-udp", ipv6("fd00::1", "fd00::2", 17, udp(1, 2))},
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
}

func BenchmarkKeyHash(b *testing.B) {
	k := key(6, "[fd00::1]:40000", "[fd00::2]:443")
	b.ReportAllocs()
	var h uint64
	for b.Loop() {
		h += k.Hash(h)
	}
}
