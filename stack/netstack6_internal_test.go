package stack

import (
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// ipv6With builds an IPv6 packet whose chain is exts (each an extension
// header's protocol number and length in bytes) then proto with l4 bytes.
func ipv6With(exts [][2]int, proto uint8, l4 int) []byte {
	n := ipv6HeaderLen + l4
	for _, e := range exts {
		n += e[1]
	}
	p := make([]byte, n)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(n-ipv6HeaderLen))
	p[8], p[24] = 0xfd, 0xfd
	p[23], p[39] = 1, 2
	at, off := 6, ipv6HeaderLen
	for _, e := range exts {
		p[at] = uint8(e[0])
		at = off
		if e[0] == 51 {
			p[off+1] = uint8(e[1]/4 - 2)
		} else {
			p[off+1] = uint8(e[1]/8 - 1)
		}
		off += e[1]
	}
	p[at] = proto
	return p
}

// tcp6Segment is a TCP segment over IPv6 behind exts, its checksum right.
func tcp6Segment(exts [][2]int, payload int) []byte {
	p := ipv6With(exts, 6, 20+payload)
	off := len(p) - 20 - payload
	p[off+12] = 5 << 4
	for i := range payload {
		p[off+20+i] = byte(i)
	}
	ip := header.IPv6(p)
	x := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(20+payload))
	binary.BigEndian.PutUint16(p[off+16:], ^checksum.Checksum(p[off:], x))
	return p
}

func TestChecksumsValidIPv6(t *testing.T) {
	good := tcp6Segment([][2]int{{0, 8}, {60, 8}}, 100)
	if !checksumsValid(good, header.IPv6ProtocolNumber) {
		t.Error("a TCP segment behind two extension headers, its checksum right: not valid")
	}
	bad := append([]byte(nil), good...)
	bad[len(bad)-1] ^= 1
	if checksumsValid(bad, header.IPv6ProtocolNumber) {
		t.Error("a TCP segment behind two extension headers, its checksum wrong: valid")
	}
	udp0 := ipv6With(nil, 17, 8+10)
	if checksumsValid(udp0, header.IPv6ProtocolNumber) {
		t.Error("a UDP datagram over IPv6 with checksum 0: valid (RFC 8200 §8.1 says drop it)")
	}
	frag := ipv6With([][2]int{{44, 8}}, 6, 20)
	frag[ipv6HeaderLen+3] = 1 // M: more fragments follow
	if !checksumsValid(frag, header.IPv6ProtocolNumber) {
		t.Error("a first fragment: not valid (it cannot be checked, and is let through as IPv4's are)")
	}
	atomic := ipv6With([][2]int{{44, 8}}, 6, 20)
	if checksumsValid(atomic, header.IPv6ProtocolNumber) {
		t.Error("an atomic fragment (offset 0, no M) with a wrong TCP checksum: valid (it is a whole packet and is checked)")
	}
	nine := make([][2]int, 9)
	for i := range nine {
		nine[i] = [2]int{60, 8}
	}
	if checksumsValid(ipv6With(nine, 58, 8), header.IPv6ProtocolNumber) {
		t.Error("nine extension headers: valid (more than packet.MaxExtHeaders)")
	}
}

func TestChecksumsValidAllocatesNothing(t *testing.T) {
	v6 := tcp6Segment([][2]int{{60, 8}}, 1400)
	allocs := testing.AllocsPerRun(100, func() {
		if !checksumsValid(v6, header.IPv6ProtocolNumber) {
			t.Fatal("not valid")
		}
	})
	if allocs != 0 {
		t.Errorf("checksumsValid(IPv6 TCP): %v allocs, want 0", allocs)
	}
}

// BenchmarkChecksumsValid checks a 1448-byte TCP payload of each family,
// what the netstack's Write does to every packet it is given.
func BenchmarkChecksumsValid(b *testing.B) {
	v4 := make([]byte, 20+20+1448)
	v4[0], v4[8], v4[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(v4[2:], uint16(len(v4)))
	copy(v4[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	ipv4HeaderChecksum(v4[:20])
	v4[32] = 5 << 4
	x := header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpip.AddrFrom4([4]byte{10, 0, 0, 1}), tcpip.AddrFrom4([4]byte{10, 0, 0, 2}), 20+1448)
	binary.BigEndian.PutUint16(v4[36:], ^checksum.Checksum(v4[20:], x))
	for _, tc := range []struct {
		name  string
		pkt   []byte
		proto tcpip.NetworkProtocolNumber
	}{
		{"v4", v4, header.IPv4ProtocolNumber},
		{"v6", tcp6Segment(nil, 1448), header.IPv6ProtocolNumber},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.pkt)))
			for b.Loop() {
				if !checksumsValid(tc.pkt, tc.proto) {
					b.Fatal("not valid")
				}
			}
		})
	}
}
