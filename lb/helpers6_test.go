package lb

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/packet"
)

var (
	vip6    = netip.MustParseAddr("fd00:96::10")
	client6 = netip.MustParseAddr("fd00:1::5")
	be61    = netip.MustParseAddrPort("[fd00:3::1]:8080")
	be62    = netip.MustParseAddrPort("[fd00:3::2]:8080")
	be63    = netip.MustParseAddrPort("[fd00:3::3]:8080")
)

func addr16(a netip.Addr) tcpip.Address { return tcpip.AddrFrom16(a.As16()) }

// web6 is web over IPv6.
func web6(bs ...Backend) []Service {
	return []Service{{Network: "n", Name: "web6", VIP: vip6, Ports: []PortProto{{80, TCP}, {53, UDP}}, Backends: bs}}
}

// ext6 is an extension header for ipv6pkt: its type and its bytes after
// the next-header byte.
type ext6 struct {
	typ  uint8
	body []byte
}

// hbh is a hop-by-hop options header of 8 bytes (PadN).
func hbh() ext6 { return ext6{packet.ExtHopByHop, []byte{0, 1, 4, 0, 0, 0, 0}} }

// frag6 is a fragment header at offset off with M.
func frag6(off int, more bool) ext6 {
	w := uint16(off/8) << 3
	if more {
		w |= 1
	}
	return ext6{packet.ExtFragment, []byte{0, byte(w >> 8), byte(w), 0, 0, 0, 7}}
}

// srh is a routing header (type 4) with segLeft segments left and one
// segment.
func srh(segLeft byte) ext6 {
	b := make([]byte, 23)
	b[0], b[1], b[2] = 2, 4, segLeft
	return ext6{packet.ExtRouting, b}
}

// ipv6pkt returns an IPv6 packet from src to dst carrying l4 as proto,
// behind exts.
func ipv6pkt(src, dst netip.Addr, proto uint8, l4 []byte, exts ...ext6) []byte {
	var body []byte
	for i, e := range exts {
		next := proto
		if i+1 < len(exts) {
			next = exts[i+1].typ
		}
		body = append(append(body, next), e.body...)
	}
	body = append(body, l4...)
	pkt := make([]byte, header.IPv6MinimumSize+len(body))
	ip := header.IPv6(pkt)
	first := proto
	if len(exts) > 0 {
		first = exts[0].typ
	}
	ip.Encode(&header.IPv6Fields{PayloadLength: uint16(len(body)), TransportProtocol: tcpip.TransportProtocolNumber(first), HopLimit: 64,
		SrcAddr: addr16(src), DstAddr: addr16(dst)})
	copy(pkt[header.IPv6MinimumSize:], body)
	return pkt
}

func tcpSeg6(src, dst netip.AddrPort, flags header.TCPFlags, seq, ack uint32, payload []byte) []byte {
	t := make(header.TCP, header.TCPMinimumSize+len(payload))
	t.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: seq, AckNum: ack, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	copy(t.Payload(), payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, addr16(src.Addr()), addr16(dst.Addr()), uint16(len(t)))
	t.SetChecksum(^t.CalculateChecksum(checksum.Checksum(payload, xsum)))
	return t
}

func tcpPkt6(src, dst netip.AddrPort, flags header.TCPFlags, payload ...byte) []byte {
	return ipv6pkt(src.Addr(), dst.Addr(), uint8(TCP), tcpSeg6(src, dst, flags, 1000, 2000, payload))
}

func udpDgram6(src, dst netip.AddrPort, payload []byte) []byte {
	u := make(header.UDP, header.UDPMinimumSize+len(payload))
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(len(u))})
	copy(u.Payload(), payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, addr16(src.Addr()), addr16(dst.Addr()), uint16(len(u)))
	c := ^u.CalculateChecksum(checksum.Checksum(payload, xsum))
	if c == 0 {
		c = 0xffff
	}
	u.SetChecksum(c)
	return u
}

func udpPkt6(src, dst netip.AddrPort, payload ...byte) []byte {
	return ipv6pkt(src.Addr(), dst.Addr(), uint8(UDP), udpDgram6(src, dst, payload))
}

// icmp6Err builds an ICMPv6 error from src to dst quoting quoted.
func icmp6Err(src, dst netip.Addr, typ header.ICMPv6Type, code header.ICMPv6Code, quoted []byte) []byte {
	m := make(header.ICMPv6, header.ICMPv6MinimumSize+len(quoted))
	m.SetType(typ)
	m.SetCode(code)
	if typ == header.ICMPv6PacketTooBig {
		binary.BigEndian.PutUint32(m[4:], 1400)
	}
	copy(m[header.ICMPv6MinimumSize:], quoted)
	xsum := header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, addr16(src), addr16(dst), uint16(len(m)))
	m.SetChecksum(^checksum.Checksum(m, xsum))
	return ipv6pkt(src, dst, uint8(header.ICMPv6ProtocolNumber), m)
}

// checkSums6 verifies every checksum of an IPv6 TCP, UDP or ICMPv6 packet
// by recomputing it in full, including the packet quoted in an ICMPv6
// error.
func checkSums6(t testing.TB, pkt []byte) {
	t.Helper()
	if err := sums6Err(pkt); err != "" {
		t.Fatalf("%s in %x", err, pkt)
	}
}

// l4Sum reports whether l4, the transport header and payload of proto
// between src and dst, has a valid checksum.
func l4Sum(proto uint8, src, dst []byte, l4 []byte) bool {
	xsum := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto), tcpip.AddrFrom16([16]byte(src)), tcpip.AddrFrom16([16]byte(dst)), uint16(len(l4)))
	return checksum.Checksum(l4, xsum) == 0xffff
}

func sums6Err(pkt []byte) string {
	var p packet.IP
	if !p.Parse(pkt) || !p.Is6() {
		return "not an IPv6 packet"
	}
	b, l4 := p.Bytes(), p.Payload()
	if !l4Sum(p.Proto, b[8:24], b[24:40], l4) {
		return "bad transport checksum"
	}
	if inner, ihl, tup, ok := p.Quoted(); ok {
		plen := int(binary.BigEndian.Uint16(inner[4:]))
		if len(inner) < header.IPv6MinimumSize+plen {
			return "" // truncated quote: its checksum cannot be verified
		}
		if !l4Sum(tup.Proto, inner[8:24], inner[24:40], inner[ihl:header.IPv6MinimumSize+plen]) {
			return "quoted packet: bad transport checksum"
		}
	}
	return ""
}

// addrs6 returns an IPv6 packet's source and destination (ports 0 for
// ICMPv6). A packet cut short (a quote) is read without extension
// headers.
func addrs6(pkt []byte) (src, dst netip.AddrPort) {
	s, d := netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40]))
	proto, l4 := pkt[6], pkt[40:]
	var p packet.IP
	if p.Parse(pkt) {
		proto, l4 = p.Proto, p.Payload()
	}
	if proto == packet.ICMPv6 {
		return netip.AddrPortFrom(s, 0), netip.AddrPortFrom(d, 0)
	}
	return netip.AddrPortFrom(s, binary.BigEndian.Uint16(l4)), netip.AddrPortFrom(d, binary.BigEndian.Uint16(l4[2:]))
}

// answer is packet.BuildAnswer(AnswerReset) on raw bytes.
func answer(t testing.TB, pkt []byte) []byte {
	t.Helper()
	var p packet.IP
	if !p.Parse(pkt) {
		t.Fatalf("answer: %x does not parse", pkt)
	}
	out := make([]byte, packet.MaxAnswerLen)
	n, err := packet.BuildAnswer(&p, netip.Prefix{}, packet.AnswerReset, 0, out)
	if err != nil {
		t.Fatalf("BuildAnswer(reset): %v", err)
	}
	return out[:n]
}
