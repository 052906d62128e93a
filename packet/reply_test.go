package packet

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// ipPkt is an IPv4 header from src to dst with protocol proto, followed
// by body.
func ipPkt(src, dst string, proto uint8, fragOff uint16, body ...byte) []byte {
	pkt := make([]byte, header.IPv4MinimumSize+len(body))
	header.IPv4(pkt).Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)), TTL: 64, Protocol: proto, FragmentOffset: fragOff,
		SrcAddr: tcpip.AddrFrom4(netip.MustParseAddr(src).As4()), DstAddr: tcpip.AddrFrom4(netip.MustParseAddr(dst).As4()),
	})
	copy(pkt[header.IPv4MinimumSize:], body)
	return pkt
}

// MayAnswer: x.x.x.255 is a host in a /16 and the broadcast of a /24;
// the directed broadcast follows the network's real prefix.
func TestMayAnswer(t *testing.T) {
	n16 := netip.MustParsePrefix("10.1.0.0/16")
	n24 := netip.MustParsePrefix("10.1.7.0/24")
	n31 := netip.MustParsePrefix("10.1.8.0/31")
	udp, tcp, icmp := uint8(header.UDPProtocolNumber), uint8(header.TCPProtocolNumber), uint8(header.ICMPv4ProtocolNumber)
	for _, tt := range []struct {
		name    string
		pkt     []byte
		network netip.Prefix
		want    bool
	}{
		{"unicast", ipPkt("10.1.1.1", "10.1.2.1", udp, 0), n16, true},
		{"from x.x.x.255, a host of a /16", ipPkt("10.1.0.255", "10.1.2.1", tcp, 0), n16, true},
		{"to x.x.x.255, a host of a /16", ipPkt("10.1.1.1", "10.1.2.255", udp, 0), n16, true},
		{"to x.x.x.255, network unknown", ipPkt("10.1.1.1", "10.1.2.255", udp, 0), netip.Prefix{}, true},
		{"from the /16's broadcast", ipPkt("10.1.255.255", "10.1.2.1", udp, 0), n16, false},
		{"to the /16's broadcast", ipPkt("10.1.1.1", "10.1.255.255", udp, 0), n16, false},
		{"from the /24's broadcast", ipPkt("10.1.7.255", "10.1.2.1", tcp, 0), n24, false},
		{"a /31 has no broadcast", ipPkt("10.1.8.1", "10.1.2.1", tcp, 0), n31, true},
		{"from 0.0.0.0", ipPkt("0.0.0.0", "10.1.2.1", udp, 0), n16, false},
		{"from loopback", ipPkt("127.0.0.1", "10.1.2.1", udp, 0), n16, false},
		{"from multicast", ipPkt("224.0.0.5", "10.1.2.1", udp, 0), n16, false},
		{"to multicast", ipPkt("10.1.1.1", "239.1.2.3", udp, 0), n16, false},
		{"from class E", ipPkt("240.0.0.1", "10.1.2.1", udp, 0), n16, false},
		{"to the limited broadcast", ipPkt("10.1.1.1", "255.255.255.255", udp, 0), n16, false},
		{"a non-initial fragment", ipPkt("10.1.1.1", "10.1.2.1", udp, 1480), n16, false},
		{"an echo request", ipPkt("10.1.1.1", "10.1.2.1", icmp, 0, 8, 0, 0, 0), n16, true},
		{"an ICMP error", ipPkt("10.1.1.1", "10.1.2.1", icmp, 0, 3, 1, 0, 0), n16, false},
		{"an ICMP without a type", ipPkt("10.1.1.1", "10.1.2.1", icmp, 0), n16, false},
		{"shorter than a header", ipPkt("10.1.1.1", "10.1.2.1", udp, 0)[:19], n16, false},
	} {
		var p IP
		if got := p.Parse(tt.pkt) && MayAnswer(&p, tt.network); got != tt.want {
			t.Errorf("%s: MayAnswer(%x, %v) = %v, want %v", tt.name, tt.pkt, tt.network, got, tt.want)
		}
	}
}

// The reset builders follow the same rule as the router: a client at
// x.x.x.255 is answered, a multicast source is not.
