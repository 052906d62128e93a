package router

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/lb"
	"github.com/overlayd/overlayd/packet"
)

// ipv4TCP builds an IPv4/TCP segment with valid checksums.
func ipv4TCP(src, dst netip.AddrPort, flags header.TCPFlags, seq uint32) []byte {
	total := header.IPv4MinimumSize + header.TCPMinimumSize
	pkt := make([]byte, total)
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(total), TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.Addr().As4()), DstAddr: tcpip.AddrFrom4(dst.Addr().As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(pkt[header.IPv4MinimumSize:])
	tcp.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: seq, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(header.TCPMinimumSize))
	tcp.SetChecksum(^tcp.CalculateChecksum(xsum))
	return pkt
}

// A client's SYN to a VIP reaches the backend DNATed, the backend's reply
// reaches the client from the VIP, and once the backend is removed the
// client gets a RST instead of silence.
func TestServiceVIP(t *testing.T) {
	bal, err := lb.New(lb.Options{})
	must(t, err)
	vip := netip.MustParseAddrPort("10.1.200.1:80")
	backend := netip.AddrPortFrom(addrB.Addr(), 8080)
	svc := lb.Service{Name: "web", VIP: vip.Addr(), Ports: []lb.PortProto{{Port: 80, Proto: lb.TCP}},
		Backends: []lb.Backend{{Addr: backend, Weight: 1}}}
	must(t, bal.Set([]lb.Service{svc}))
	p := newPair(t, Options{Balancer: bal})
	client := netip.AddrPortFrom(addrA.Addr(), 40000)

	must(t, p.devA.Inject(ipv4TCP(client, vip, header.TCPFlagSyn, 1)))
	got := header.IPv4(next(t, p.devB))
	tcp := header.TCP(got.Payload())
	if got.DestinationAddress().As4() != addrB.Addr().As4() || tcp.DestinationPort() != 8080 ||
		got.SourceAddress().As4() != addrA.Addr().As4() || tcp.SourcePort() != 40000 {
		t.Fatalf("backend saw %v:%d → %v:%d", got.SourceAddress(), tcp.SourcePort(), got.DestinationAddress(), tcp.DestinationPort())
	}
	if !got.IsChecksumValid() || !tcp.IsChecksumValid(got.SourceAddress(), got.DestinationAddress(), 0, 0) {
		t.Errorf("DNATed segment has bad checksums")
	}

	must(t, p.devB.Inject(ipv4TCP(backend, client, header.TCPFlagSyn|header.TCPFlagAck, 100)))
	reply := header.IPv4(next(t, p.devA))
	rtcp := header.TCP(reply.Payload())
	if reply.SourceAddress().As4() != vip.Addr().As4() || rtcp.SourcePort() != 80 {
		t.Fatalf("client saw the reply from %v:%d, want %v", reply.SourceAddress(), rtcp.SourcePort(), vip)
	}

	svc.Backends = nil
	must(t, bal.Set([]lb.Service{svc}))
	must(t, p.devA.Inject(ipv4TCP(client, vip, header.TCPFlagAck, 2)))
	rst := header.IPv4(next(t, p.devA))
	if rst.Protocol() != uint8(header.TCPProtocolNumber) || header.TCP(rst.Payload()).Flags()&header.TCPFlagRst == 0 ||
		rst.SourceAddress().As4() != vip.Addr().As4() {
		t.Fatalf("after the backend left the client got %x, want a RST from the VIP", []byte(rst))
	}
	if st := p.rtA.Stats(); st.Drops["lb_reset"] != 1 {
		t.Errorf("drops = %v, want lb_reset 1", st.Drops)
	}
}

// An ICMP error about a packet to a VIP (here: too big, with DF) reaches
// the client about the packet it sent, from the VIP and quoting the VIP,
// not the backend it was DNATed to (which the client's socket would not
// recognise: path MTU discovery to VIPs would break).
func TestICMPErrorAboutVIPFlowIsReverseNATed(t *testing.T) {
	bal, err := lb.New(lb.Options{})
	must(t, err)
	vip := netip.MustParseAddrPort("10.1.200.1:53")
	backend := netip.AddrPortFrom(addrB.Addr(), 5353)
	must(t, bal.Set([]lb.Service{{Name: "dns", VIP: vip.Addr(), Ports: []lb.PortProto{{Port: 53, Proto: lb.UDP}},
		Backends: []lb.Backend{{Addr: backend, Weight: 1}}}}))
	p := newPair(t, Options{Balancer: bal, PathMTU: 1400})
	big := ipv4UDP(addrA.Addr(), vip.Addr(), 40000, 53, make([]byte, 1450), true)
	must(t, p.devA.Inject(big))
	got := header.IPv4(next(t, p.devA))
	if got.Protocol() != uint8(header.ICMPv4ProtocolNumber) || !got.IsChecksumValid() {
		t.Fatalf("client got %x, want an ICMP error", []byte(got))
	}
	ic := header.ICMPv4(got.Payload())
	quoted := header.IPv4(ic.Payload())
	qudp := header.UDP(quoted[quoted.HeaderLength():])
	if got.SourceAddress().As4() != vip.Addr().As4() || quoted.DestinationAddress().As4() != vip.Addr().As4() || qudp.DestinationPort() != 53 {
		t.Errorf("ICMP from %v quoting a packet to %v:%d, want both the VIP %v", got.SourceAddress(), quoted.DestinationAddress(), qudp.DestinationPort(), vip)
	}
	if uint8(ic.Code()) != packet.ICMPFragNeeded || ic.MTU() != 1400 || !quoted.IsChecksumValid() {
		t.Errorf("ICMP code %d mtu %d, quoted header checksum valid %v", ic.Code(), ic.MTU(), quoted.IsChecksumValid())
	}
	if ^checksum.Checksum(ic, 0) != 0 {
		t.Errorf("ICMP checksum is wrong after the rewrite")
	}
}
