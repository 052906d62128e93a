package vxlan

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"pgregory.net/rapid"
)

func unhexString(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConstants(t *testing.T) {
	if EncapLen != 22 || Overhead != 50 || MaxVNI != 0xffffff || DefaultPort != 4789 {
		t.Errorf("EncapLen, Overhead, MaxVNI, DefaultPort = %d, %d, %#x, %d", EncapLen, Overhead, MaxVNI, DefaultPort)
	}
	if 1500-Overhead != 1450 {
		t.Errorf("overlay MTU on a 1500 underlay = %d, want 1450", 1500-Overhead)
	}
}

func TestHeader(t *testing.T) {
	for _, tt := range []struct {
		vni  uint32
		want string
	}{
		{0, "08000000 00000000"},
		{1, "08000000 00000100"},
		{42, "08000000 00002a00"},
		{MaxVNI, "08000000 ffffff00"},
		{MaxVNI + 1, "08000000 00000000"}, // documented: high bits dropped
	} {
		h := Header(bytes.Repeat([]byte{0xee}, HeaderLen))
		h.Encode(tt.vni)
		if want := unhexString(t, tt.want); !bytes.Equal(h, want) {
			t.Errorf("Encode(%d) = %x, want %x", tt.vni, []byte(h), want)
		}
		if h.Flags() != FlagI || !h.Valid() || h.VNI() != tt.vni&MaxVNI {
			t.Errorf("Encode(%d): Flags() = %#x, Valid() = %v, VNI() = %d", tt.vni, h.Flags(), h.Valid(), h.VNI())
		}
	}
}

// frame22 is a VXLAN header for VNI 42 and an Ethernet header from
// 0a:58:0a:00:00:01 to 0a:58:0a:00:00:02, IPv4.
const frame22 = "08000000 00002a00  0a580a000002 0a580a000001 0800"

func TestDecap(t *testing.T) {
	for _, tt := range []struct {
		name string
		pkt  string
		vni  uint32
		err  error
	}{
		{"empty", "", 0, ErrShort},
		{"vxlan header only", "08000000 00002a00", 0, ErrShort},
		{"one byte short", frame22[:len(frame22)-2], 0, ErrShort},
		{"headers only", frame22, 42, nil},
		{"with payload", frame22 + "4500", 42, nil},
		{"I flag clear", "00000000 00002a00 0a580a000002 0a580a000001 0800", 0, ErrFlags},
		{"other flags only", "f7ffffff 00002aff 0a580a000002 0a580a000001 0800", 0, ErrFlags},
		{"reserved bits ignored", "ffffffff 00002aff 0a580a000002 0a580a000001 0800", 42, nil},
		{"max vni", "08000000 ffffff00 0a580a000002 0a580a000001 0800", MaxVNI, nil},
	} {
		pkt := unhexString(t, tt.pkt)
		vni, frame, err := Decap(pkt)
		if vni != tt.vni || err != tt.err {
			t.Errorf("%s: Decap(%x) = %d, %x, %v, want %d, _, %v", tt.name, pkt, vni, []byte(frame), err, tt.vni, tt.err)
			continue
		}
		if err != nil {
			if frame != nil {
				t.Errorf("%s: Decap(%x) frame = %x, want nil on drop", tt.name, pkt, []byte(frame))
			}
			continue
		}
		if !bytes.Equal(frame, pkt[HeaderLen:]) || frame.Dst() != (MAC{0x0a, 0x58, 10, 0, 0, 2}) || frame.Src() != (MAC{0x0a, 0x58, 10, 0, 0, 1}) || frame.Type() != EtherTypeIPv4 {
			t.Errorf("%s: Decap(%x) frame = %x (dst %v src %v type %#x)", tt.name, pkt, []byte(frame), frame.Dst(), frame.Src(), frame.Type())
		}
	}
}

func TestEncap(t *testing.T) {
	inner := []byte{0x45, 0, 0, 20, 1, 2, 3, 4}
	buf := make([]byte, 64+len(inner))
	copy(buf[64:], inner)
	dst, src := MAC{0x0a, 0x58, 10, 0, 0, 2}, MAC{0x0a, 0x58, 10, 0, 0, 1}
	got := Encap(buf, 64, len(inner), 42, dst, src, EtherTypeIPv4)
	want := append(unhexString(t, frame22), inner...)
	if !bytes.Equal(got, want) {
		t.Errorf("Encap(_, 64, %d, 42, %v, %v, IPv4) = %x, want %x", len(inner), dst, src, got, want)
	}
	if &got[0] != &buf[64-EncapLen] || &got[EncapLen] != &buf[64] {
		t.Errorf("Encap did not write into the headroom of buf in place")
	}
	if !bytes.Equal(buf[:64-EncapLen], make([]byte, 64-EncapLen)) {
		t.Errorf("Encap wrote before the headroom it needs: %x", buf[:64-EncapLen])
	}
	// Exactly EncapLen of headroom, empty inner packet.
	if got := Encap(make([]byte, EncapLen), EncapLen, 0, 42, dst, src, EtherTypeIPv4); !bytes.Equal(got, unhexString(t, frame22)) {
		t.Errorf("Encap(headers only) = %x", got)
	}
}

func TestEncapPanicsWithoutHeadroom(t *testing.T) {
	defer func() {
		r := recover()
		if s, _ := r.(string); !strings.HasPrefix(s, "vxlan: Encap needs 22 bytes of headroom") {
			t.Errorf("Encap with offset 21 panicked with %v, want the headroom message", r)
		}
	}()
	Encap(make([]byte, 100), EncapLen-1, 10, 1, MAC{}, MAC{}, EtherTypeIPv4)
}

// TestEncapDecapProperty: whatever Encap writes, Decap reads back, with the
// inner packet untouched and not copied.
func TestEncapDecapProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		offset := rapid.IntRange(EncapLen, 128).Draw(t, "offset")
		inner := rapid.SliceOfN(rapid.Byte(), 0, 2000).Draw(t, "inner")
		vni := rapid.Uint32Range(0, MaxVNI).Draw(t, "vni")
		dst := MAC(rapid.SliceOfN(rapid.Byte(), 6, 6).Draw(t, "dst"))
		src := MAC(rapid.SliceOfN(rapid.Byte(), 6, 6).Draw(t, "src"))
		typ := rapid.Uint16().Draw(t, "type")
		buf := make([]byte, offset+len(inner)+rapid.IntRange(0, 16).Draw(t, "tailroom"))
		copy(buf[offset:], inner)
		pkt := Encap(buf, offset, len(inner), vni, dst, src, typ)
		gotVNI, frame, err := Decap(pkt)
		if err != nil || gotVNI != vni || frame.Dst() != dst || frame.Src() != src || frame.Type() != typ {
			t.Fatalf("Decap(Encap(%d, %v, %v, %#x)) = %d, %v, %v, %#x, %v", vni, dst, src, typ, gotVNI, frame.Dst(), frame.Src(), frame.Type(), err)
		}
		if p := frame.Payload(); !bytes.Equal(p, inner) || len(inner) > 0 && &p[0] != &buf[offset] {
			t.Fatalf("payload after round trip = %x, want %x in place", p, inner)
		}
	})
}

func TestMAC(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    MAC
		wantErr bool
	}{
		{"0a:58:0a:00:00:01", MAC{0x0a, 0x58, 10, 0, 0, 1}, false},
		{"FF-FF-FF-FF-FF-FF", Broadcast, false},
		{"01:00:5E:7f:ff:fa", MAC{1, 0, 0x5e, 0x7f, 0xff, 0xfa}, false},
		{"", MAC{}, true},
		{"0a:58:0a:00:00", MAC{}, true},
		{"0a:58:0a:00:00:01:02", MAC{}, true},
		{"0a:58-0a:00:00:01", MAC{}, true},
		{"0a.58.0a.00.00.01", MAC{}, true},
		{"0g:58:0a:00:00:01", MAC{}, true},
		{"0a:58:0a:00:00:1", MAC{}, true},
		{"0a:58:0a:00:00:010", MAC{}, true},
	} {
		got, err := ParseMAC(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseMAC(%q) = %v, %v, want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "vxlan: ") {
			t.Errorf("ParseMAC(%q) error %q lacks the package prefix", tt.in, err)
		}
		if err == nil {
			if back, _ := ParseMAC(got.String()); back != got || got.String() != strings.ToLower(strings.ReplaceAll(tt.in, "-", ":")) {
				t.Errorf("ParseMAC(%q).String() = %q", tt.in, got.String())
			}
		}
	}
	if !Broadcast.IsBroadcast() || !Broadcast.IsMulticast() || Broadcast.String() != "ff:ff:ff:ff:ff:ff" {
		t.Errorf("Broadcast = %v: IsBroadcast() = %v, IsMulticast() = %v", Broadcast, Broadcast.IsBroadcast(), Broadcast.IsMulticast())
	}
	if m := (MAC{0x01, 0, 0x5e, 0, 0, 1}); !m.IsMulticast() || m.IsBroadcast() {
		t.Errorf("%v: IsMulticast() = %v, IsBroadcast() = %v", m, m.IsMulticast(), m.IsBroadcast())
	}
	if m := NodeMAC(netip.MustParseAddr("10.0.0.1")); m.IsMulticast() {
		t.Errorf("%v.IsMulticast() = true", m)
	}
	// JSON, also as a map key.
	in := map[MAC]MAC{{0x0a, 0x58, 10, 0, 0, 1}: Broadcast}
	b, err := json.Marshal(in)
	if err != nil || string(b) != `{"0a:58:0a:00:00:01":"ff:ff:ff:ff:ff:ff"}` {
		t.Errorf("json.Marshal(%v) = %s, %v", in, b, err)
	}
	var out map[MAC]MAC
	if err := json.Unmarshal(b, &out); err != nil || len(out) != 1 || out[MAC{0x0a, 0x58, 10, 0, 0, 1}] != Broadcast {
		t.Errorf("json.Unmarshal(%s) = %v, %v", b, out, err)
	}
	if err := json.Unmarshal([]byte(`"nope"`), new(MAC)); err == nil {
		t.Errorf("json.Unmarshal of a bad MAC succeeded")
	}
}

func TestNodeMAC(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want string
	}{
		{"10.0.0.1", "0a:58:0a:00:00:01"},
		{"192.168.255.254", "0a:58:c0:a8:ff:fe"},
		{"::ffff:10.0.0.1", "0a:58:0a:00:00:01"},
		{"fd00::1", "0a:58:00:00:00:01"},
		{"fd00:10::a:5", "0a:58:00:0a:00:05"},
		{"2001:db8::c0a8:1fe", "0a:58:c0:a8:01:fe"},
	} {
		if got := NodeMAC(netip.MustParseAddr(tt.addr)); got.String() != tt.want {
			t.Errorf("NodeMAC(%s) = %v, want %s", tt.addr, got, tt.want)
		}
	}
	a, b := NodeMAC(netip.MustParseAddr("fd00::1")), NodeMAC(netip.MustParseAddr("fd00::2"))
	if a == b || a != NodeMAC(netip.MustParseAddr("fd00::1")) || a[0] != 0x0a || a[1] != 0x58 {
		t.Errorf("NodeMAC(fd00::1) = %v, NodeMAC(fd00::2) = %v, want stable, distinct, 0a:58:...", a, b)
	}
	if got := NodeMAC(netip.Addr{}); got != (MAC{0x0a, 0x58}) {
		t.Errorf("NodeMAC(invalid) = %v", got)
	}
	// Locally administered unicast.
	if m := NodeMAC(netip.MustParseAddr("10.1.2.3")); m[0]&2 == 0 || m[0]&1 != 0 {
		t.Errorf("NodeMAC = %v, want a locally administered unicast MAC", m)
	}
}

func TestEthernet(t *testing.T) {
	e := Ethernet(make([]byte, EthernetLen+2))
	e.Payload()[0], e.Payload()[1] = 0xab, 0xcd
	e.Encode(Broadcast, MAC{0x0a, 0x58, 1, 2, 3, 4}, EtherTypeARP)
	want := unhexString(t, "ffffffffffff 0a5801020304 0806 abcd")
	if !bytes.Equal(e, want) || e.Dst() != Broadcast || e.Src() != (MAC{0x0a, 0x58, 1, 2, 3, 4}) || e.Type() != EtherTypeARP || !e.Valid() {
		t.Errorf("Encode(broadcast, 0a:58:01:02:03:04, ARP) = %x, want %x", []byte(e), want)
	}
	if Ethernet(make([]byte, 13)).Valid() {
		t.Errorf("13-byte Ethernet is Valid")
	}
}

func TestARP(t *testing.T) {
	me, peer := MAC{0x0a, 0x58, 10, 0, 0, 1}, MAC{0x0a, 0x58, 10, 0, 0, 2}
	meIP, peerIP := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")

	a := ARP(bytes.Repeat([]byte{0xee}, ARPLen))
	a.EncodeRequest(me, meIP, peerIP)
	want := unhexString(t, "0001 0800 06 04 0001 0a580a000001 0a000001 000000000000 0a000002")
	if !bytes.Equal(a, want) {
		t.Errorf("EncodeRequest(%v, %v, %v) = %x, want %x", me, meIP, peerIP, []byte(a), want)
	}
	if !a.IsValid() || a.Op() != ARPRequest || a.SenderMAC() != me || a.SenderIP() != meIP || a.TargetMAC() != (MAC{}) || a.TargetIP() != peerIP {
		t.Errorf("request %x reads back as op %d %v %v -> %v %v", []byte(a), a.Op(), a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP())
	}
	g := header.ARP(a)
	if !g.IsValid() || g.Op() != header.ARPRequest || !bytes.Equal(g.HardwareAddressSender(), me[:]) || !bytes.Equal(g.ProtocolAddressTarget(), peerIP.AsSlice()) {
		t.Errorf("gVisor reads request %x differently", []byte(a))
	}

	a.EncodeReply(peer, peerIP, me, meIP)
	want = unhexString(t, "0001 0800 06 04 0002 0a580a000002 0a000002 0a580a000001 0a000001")
	if !bytes.Equal(a, want) {
		t.Errorf("EncodeReply(%v, %v, %v, %v) = %x, want %x", peer, peerIP, me, meIP, []byte(a), want)
	}
	if g := header.ARP(a); !g.IsValid() || g.Op() != header.ARPReply || !bytes.Equal(g.HardwareAddressTarget(), me[:]) {
		t.Errorf("gVisor reads reply %x differently", []byte(a))
	}
	// Padded to the Ethernet minimum, as received.
	if padded := ARP(append(append([]byte{}, a...), make([]byte, 18)...)); !padded.IsValid() || padded.TargetIP() != meIP {
		t.Errorf("padded ARP not valid")
	}

	for _, tt := range []struct {
		name string
		mod  func(ARP) ARP
	}{
		{"short", func(a ARP) ARP { return a[:ARPLen-1] }},
		{"htype 6", func(a ARP) ARP { a[1] = 6; return a }},
		{"ptype ipv6", func(a ARP) ARP { a[2], a[3] = 0x86, 0xdd; return a }},
		{"hlen 8", func(a ARP) ARP { a[4] = 8; return a }},
		{"plen 16", func(a ARP) ARP { a[5] = 16; return a }},
	} {
		b := ARP(append([]byte{}, want...))
		if b = tt.mod(b); b.IsValid() {
			t.Errorf("%s: ARP(%x).IsValid() = true, want false", tt.name, []byte(b))
		}
	}
}

func TestAllocs(t *testing.T) {
	buf := make([]byte, 2048)
	dst, src := MAC{0x0a, 0x58, 10, 0, 0, 2}, MAC{0x0a, 0x58, 10, 0, 0, 1}
	ip := netip.MustParseAddr("10.0.0.1")
	var sink int
	Encap(buf, 64, 1400, 42, dst, src, EtherTypeIPv4) // so Decap has a frame whatever runs first
	arpBuf := make([]byte, ARPLen)
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"Encap", func() { sink += len(Encap(buf, 64, 1400, 42, dst, src, EtherTypeIPv4)) }},
		{"Decap", func() {
			vni, frame, _ := Decap(buf[64-EncapLen : 64+1400])
			sink += int(vni) + len(frame.Payload()) + int(frame.Type()) + int(frame.Dst()[0])
		}},
		{"ARP", func() {
			a := ARP(arpBuf)
			a.EncodeReply(src, ip, dst, ip)
			if a.IsValid() && a.SenderIP() == ip && a.TargetMAC() == dst {
				sink++
			}
		}},
		{"NodeMAC", func() { sink += int(NodeMAC(ip)[5]) }},
	} {
		if n := testing.AllocsPerRun(100, c.f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", c.name, n)
		}
	}
	_ = sink
}

func FuzzDecap(f *testing.F) {
	f.Add(unhexString(f, frame22+"45000014"))
	f.Add(unhexString(f, "ffffffff ffffffff ffffffffffff ffffffffffff ffff"))
	f.Add(unhexString(f, "00000000 00002a00 0a580a000002 0a580a000001 0800"))
	f.Add([]byte{8, 0, 0, 0})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		vni, frame, err := Decap(pkt)
		switch {
		case len(pkt) < EncapLen:
			if err != ErrShort {
				t.Fatalf("Decap(%x) = %v, want %v", pkt, err, ErrShort)
			}
			return
		case pkt[0]&FlagI == 0:
			if err != ErrFlags {
				t.Fatalf("Decap(%x) = %v, want %v", pkt, err, ErrFlags)
			}
			return
		case err != nil || vni > MaxVNI:
			t.Fatalf("Decap(%x) = %d, %v, want a VNI and no error", pkt, vni, err)
		}
		// Re-encoding what Decap read gives the datagram back, with the
		// reserved bits (which receivers ignore) zero.
		buf := make([]byte, len(pkt))
		copy(buf[EncapLen:], frame.Payload())
		got := Encap(buf, EncapLen, len(pkt)-EncapLen, vni, frame.Dst(), frame.Src(), frame.Type())
		want := append([]byte{FlagI, 0, 0, 0, pkt[4], pkt[5], pkt[6], 0}, pkt[HeaderLen:]...)
		if !bytes.Equal(got, want) {
			t.Fatalf("Encap(Decap(%x)) = %x, want %x", pkt, got, want)
		}
	})
}

func FuzzEthernet(f *testing.F) {
	f.Add(unhexString(f, "ffffffffffff 0a5801020304 0806 abcd"))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		e := Ethernet(b)
		if !e.Valid() {
			if len(b) >= EthernetLen {
				t.Fatalf("Ethernet(%x).Valid() = false", b)
			}
			return
		}
		got := Ethernet(make([]byte, len(b)))
		copy(got.Payload(), e.Payload())
		got.Encode(e.Dst(), e.Src(), e.Type())
		if !bytes.Equal(got, b) {
			t.Fatalf("Encode(Ethernet(%x) fields) = %x", b, []byte(got))
		}
	})
}

func FuzzARP(f *testing.F) {
	f.Add(unhexString(f, "0001 0800 06 04 0001 0a580a000001 0a000001 000000000000 0a000002"))
	f.Add(unhexString(f, "0001 0800 06 04 0002 0a580a000002 0a000002 0a580a000001 0a000001 0000"))
	f.Add(unhexString(f, "0001 86dd 06 10 0001"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a := ARP(b)
		if a.IsValid() != header.ARP(b).IsValid() {
			t.Fatalf("ARP(%x).IsValid() = %v, gVisor says %v", b, a.IsValid(), header.ARP(b).IsValid())
		}
		if !a.IsValid() {
			return
		}
		if caps, ok := a.Trailer(); ok != (len(b) >= ARPLen+TrailerLen && string(b[ARPLen:ARPLen+4]) == "ovld" && b[ARPLen+4] == 1) || (ok && caps != b[ARPLen+5]) {
			t.Fatalf("ARP(%x).Trailer() = %#x, %v", b, caps, ok)
		}
		got := ARP(make([]byte, ARPLen))
		got.encode(a.Op(), a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP())
		if !bytes.Equal(got, b[:ARPLen]) {
			t.Fatalf("encode(ARP(%x) fields) = %x", b, []byte(got))
		}
		switch a.Op() {
		case ARPRequest:
			got.EncodeRequest(a.SenderMAC(), a.SenderIP(), a.TargetIP())
			if got.TargetMAC() != (MAC{}) {
				t.Fatalf("EncodeRequest left target MAC %v", got.TargetMAC())
			}
		case ARPReply:
			got.EncodeReply(a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP())
			if got.TargetMAC() != a.TargetMAC() {
				t.Fatalf("EncodeReply wrote target MAC %v, want %v", got.TargetMAC(), a.TargetMAC())
			}
		default:
			return
		}
		if got.Op() != a.Op() || got.SenderMAC() != a.SenderMAC() || got.SenderIP() != a.SenderIP() || got.TargetIP() != a.TargetIP() {
			t.Fatalf("re-encoding %x as op %d gave %x", b, a.Op(), []byte(got))
		}
	})
}

// The trailer reads back what was written, a frame's zero padding is no
// trailer, and FlagPartial sits in the first reserved byte without
// touching the I flag or the VNI.
func TestTrailerAndPartialFlag(t *testing.T) {
	a := ARP(make([]byte, ARPLen+TrailerLen))
	a.EncodeRequest(MAC{2, 0, 0, 0, 0, 1}, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
	if _, ok := a.Trailer(); ok {
		t.Error("zero padding read as a trailer")
	}
	EncodeTrailer(a[ARPLen:], TrailerPartial)
	if caps, ok := a.Trailer(); !ok || caps != TrailerPartial {
		t.Errorf("Trailer() = %#x, %v; want %#x, true", caps, ok, TrailerPartial)
	}
	if _, ok := a[:ARPLen+TrailerLen-1].Trailer(); ok {
		t.Error("a cut trailer read as one")
	}
	h := Header(make([]byte, HeaderLen))
	h.Encode(0xabcdef)
	if h.Partial() {
		t.Error("Encode sets FlagPartial")
	}
	h.SetPartial()
	if !h.Partial() || !h.Valid() || h.VNI() != 0xabcdef {
		t.Errorf("after SetPartial: partial %v, valid %v, VNI %#x", h.Partial(), h.Valid(), h.VNI())
	}
	vni, _, err := Decap(append(h, make([]byte, EthernetLen)...))
	if err != nil || vni != 0xabcdef {
		t.Errorf("Decap of a partial-flagged datagram = %#x, %v; want it read as any other", vni, err)
	}
}
