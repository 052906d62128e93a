package lb

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/packet"
)

var (
	vip     = netip.MustParseAddr("10.96.0.10")
	client  = netip.MustParseAddr("10.0.1.5")
	client2 = netip.MustParseAddr("10.0.2.7")
	be1     = netip.MustParseAddrPort("10.0.3.1:8080")
	be2     = netip.MustParseAddrPort("10.0.3.2:8080")
	be3     = netip.MustParseAddrPort("10.0.3.3:8080")
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func newFakeClock() *fakeClock               { c := &fakeClock{}; c.ns.Store(1e18); return c }
func addr4(a netip.Addr) tcpip.Address       { return tcpip.AddrFrom4(a.As4()) }
func ap(s string) netip.AddrPort             { return netip.MustParseAddrPort(s) }
func web(bs ...Backend) []Service {
	return []Service{{Network: "n", Name: "web", VIP: vip, Ports: []PortProto{{80, TCP}, {53, UDP}}, Backends: bs}}
}
func bk(a netip.AddrPort, w uint32) Backend { return Backend{Addr: a, Weight: w} }
func mustNew(t testing.TB, opts Options) *Balancer {
	t.Helper()
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustSet(t testing.TB, b *Balancer, svcs []Service) {
	t.Helper()
	if err := b.Set(svcs); err != nil {
		t.Fatal(err)
	}
}

// ipv4 writes an IPv4 header with optLen bytes of options (NOPs) in front
// of payload and returns the packet.
func ipv4(src, dst netip.Addr, proto uint8, optLen int, payload []byte) []byte {
	hl := header.IPv4MinimumSize + optLen
	pkt := make([]byte, hl+len(payload))
	pkt[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(pkt[4:], 0x1234)
	pkt[6] = 0x40 // DF
	pkt[8] = 64
	pkt[9] = proto
	s, d := src.As4(), dst.As4()
	copy(pkt[12:], s[:])
	copy(pkt[16:], d[:])
	for i := header.IPv4MinimumSize; i < hl; i++ {
		pkt[i] = 1 // NOP
	}
	ip := header.IPv4(pkt)
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(pkt[hl:], payload)
	return pkt
}

func tcpSeg(src, dst netip.AddrPort, flags header.TCPFlags, seq, ack uint32, payload []byte) []byte {
	t := make(header.TCP, header.TCPMinimumSize+len(payload))
	t.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: seq, AckNum: ack, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	copy(t.Payload(), payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, addr4(src.Addr()), addr4(dst.Addr()), uint16(len(t)))
	xsum = checksum.Checksum(payload, xsum)
	t.SetChecksum(^t.CalculateChecksum(xsum))
	return t
}

// tcpPkt, udpPkt, checkSums and addrs take either family (IPv6 by
// tcpPkt6, udpPkt6, checkSums6, addrs6).
func tcpPkt(src, dst netip.AddrPort, flags header.TCPFlags, payload ...byte) []byte {
	if src.Addr().Is6() {
		return tcpPkt6(src, dst, flags, payload...)
	}
	return ipv4(src.Addr(), dst.Addr(), uint8(TCP), 0, tcpSeg(src, dst, flags, 1000, 2000, payload))
}

func udpDgram(src, dst netip.AddrPort, payload []byte, noChecksum bool) []byte {
	u := make(header.UDP, header.UDPMinimumSize+len(payload))
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(len(u))})
	copy(u.Payload(), payload)
	if !noChecksum {
		xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, addr4(src.Addr()), addr4(dst.Addr()), uint16(len(u)))
		xsum = checksum.Checksum(payload, xsum)
		c := ^u.CalculateChecksum(xsum)
		if c == 0 {
			c = 0xffff
		}
		u.SetChecksum(c)
	}
	return u
}

func udpPkt(src, dst netip.AddrPort, payload ...byte) []byte {
	if src.Addr().Is6() {
		return udpPkt6(src, dst, payload...)
	}
	return ipv4(src.Addr(), dst.Addr(), uint8(UDP), 0, udpDgram(src, dst, payload, false))
}

// icmpErr builds an ICMP error from src to dst quoting quoted.
func icmpErr(src, dst netip.Addr, typ header.ICMPv4Type, code header.ICMPv4Code, quoted []byte) []byte {
	m := make(header.ICMPv4, header.ICMPv4MinimumSize+len(quoted))
	m.SetType(typ)
	m.SetCode(code)
	if typ == header.ICMPv4DstUnreachable && code == header.ICMPv4FragmentationNeeded {
		m.SetMTU(1400)
	}
	copy(m[header.ICMPv4MinimumSize:], quoted)
	m.SetChecksum(^checksum.Checksum(m, 0))
	return ipv4(src, dst, uint8(icmpProto), 0, m)
}

// checkSums verifies every checksum of an IPv4 TCP, UDP or ICMP packet by
// recomputing it in full with gVisor's helpers, including the packet
// quoted in an ICMP error.
func checkSums(t testing.TB, pkt []byte) {
	t.Helper()
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		checkSums6(t, pkt)
		return
	}
	if err := sumsErr(pkt, false); err != "" {
		t.Fatalf("%s in %x", err, pkt)
	}
}

func sumsErr(pkt []byte, quoted bool) string {
	ip := header.IPv4(pkt)
	if !ip.IsChecksumValid() {
		return "bad IPv4 header checksum"
	}
	hl := int(ip.HeaderLength())
	end := int(ip.TotalLength())
	if quoted {
		end = len(pkt)
	}
	l4 := pkt[hl:end]
	src, dst := ip.SourceAddress(), ip.DestinationAddress()
	switch ip.Protocol() {
	case uint8(TCP):
		if quoted && len(l4) < int(ip.TotalLength())-hl {
			return "" // truncated quote: the checksum cannot be verified
		}
		tcp := header.TCP(l4)
		pl := tcp.Payload()
		if !tcp.IsChecksumValid(src, dst, checksum.Checksum(pl, 0), uint16(len(pl))) {
			return "bad TCP checksum"
		}
	case uint8(UDP):
		u := header.UDP(l4)
		if u.Checksum() == 0 || (quoted && len(l4) < int(u.Length())) {
			return ""
		}
		xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, u.Length())
		if u.CalculateChecksum(checksum.Checksum(u.Payload(), xsum)) != 0xffff {
			return "bad UDP checksum"
		}
	case uint8(icmpProto):
		if checksum.Checksum(l4, 0) != 0xffff {
			return "bad ICMP checksum"
		}
		var p packet.IP
		if !quoted && p.Parse(pkt) {
			if _, _, _, ok := p.Quoted(); ok {
				if e := sumsErr(l4[header.ICMPv4MinimumSize:], true); e != "" {
					return "quoted packet: " + e
				}
			}
		}
	}
	return ""
}

// addrs returns a packet's source and destination.
func addrs(pkt []byte) (src, dst netip.AddrPort) {
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		return addrs6(pkt)
	}
	ip := header.IPv4(pkt)
	l4 := pkt[ip.HeaderLength():]
	s := netip.AddrFrom4([4]byte(pkt[12:16]))
	d := netip.AddrFrom4([4]byte(pkt[16:20]))
	if ip.Protocol() == uint8(icmpProto) {
		return netip.AddrPortFrom(s, 0), netip.AddrPortFrom(d, 0)
	}
	return netip.AddrPortFrom(s, binary.BigEndian.Uint16(l4)), netip.AddrPortFrom(d, binary.BigEndian.Uint16(l4[2:]))
}

// BuildTCPReset is packet.BuildTCPReset on raw bytes, for the tests of
// the answers to Reset verdicts.
func BuildTCPReset(pkt, out []byte) (int, error) {
	var p packet.IP
	if !p.Parse(pkt) {
		return 0, packet.ErrNotTCP
	}
	return packet.BuildTCPReset(&p, netip.Prefix{}, out)
}

// BuildICMPPortUnreachable is packet.BuildICMPPortUnreachable on raw bytes.
func BuildICMPPortUnreachable(pkt, out []byte) (int, error) {
	var p packet.IP
	if !p.Parse(pkt) {
		return 0, packet.ErrNotUDP
	}
	return packet.BuildICMPPortUnreachable(&p, netip.Prefix{}, out)
}

// replyable reports whether packet's rule lets an error be sent to src
// (MayAnswer on a datagram from src to a unicast host).
func replyable(src [4]byte) bool {
	var p packet.IP
	return p.Parse(udpPkt(netip.AddrPortFrom(netip.AddrFrom4(src), 1), netip.AddrPortFrom(client, 2))) && packet.MayAnswer(&p, netip.Prefix{})
}
