package lb

import (
	"bytes"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"pgregory.net/rapid"

	"github.com/overlayd/overlayd/packet"
)

func genAddr(t *rapid.T, label string) netip.Addr {
	return netip.AddrFrom4([4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, label)))
}

func genAddrPort(t *rapid.T, label string) netip.AddrPort {
	return netip.AddrPortFrom(genAddr(t, label), rapid.Uint16().Draw(t, label+"Port"))
}

// genPacket draws a valid IPv4 TCP or UDP packet (UDP sometimes without a
// checksum) with optional IP options and an odd or even payload.
func genPacket(t *rapid.T, src, dst netip.AddrPort) []byte {
	payload := rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(t, "payload")
	opts := 4 * rapid.IntRange(0, 10).Draw(t, "optWords")
	if rapid.Bool().Draw(t, "tcp") {
		flags := header.TCPFlags(rapid.Byte().Draw(t, "flags"))
		return ipv4(src.Addr(), dst.Addr(), uint8(TCP), opts, tcpSeg(src, dst, flags, rapid.Uint32().Draw(t, "seq"), rapid.Uint32().Draw(t, "ack"), payload))
	}
	return ipv4(src.Addr(), dst.Addr(), uint8(UDP), opts, udpDgram(src, dst, payload, rapid.Bool().Draw(t, "noChecksum")))
}

// TestNATRoundTrip: rewriting a packet's destination (or source) and then
// rewriting it back restores the original bytes exactly, and every
// intermediate packet has correct checksums.
func TestNATRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		src, dst := genAddrPort(t, "src"), genAddrPort(t, "dst")
		to := genAddrPort(t, "to")
		pkt := genPacket(t, src, dst)
		orig := bytes.Clone(pkt)
		var p packet.IP
		if !p.Parse(pkt) || !p.L4Valid() {
			t.Fatalf("parse(%x) failed", pkt)
		}
		isSrc := rapid.Bool().Draw(t, "rewriteSource")
		old := dst
		if isSrc {
			old = src
		}
		rewrite(p.Header(), p.Payload(), p.Proto, isSrc, to.Addr().As16(), to.Port())
		if e := sumsErr(pkt, false); e != "" {
			t.Fatalf("after NAT: %s: %x", e, pkt)
		}
		s, d := addrs(pkt)
		if got := map[bool]netip.AddrPort{false: d, true: s}[isSrc]; got != to {
			t.Fatalf("rewritten address %v, want %v", got, to)
		}
		rewrite(p.Header(), p.Payload(), p.Proto, isSrc, old.Addr().As16(), old.Port())
		if !bytes.Equal(pkt, orig) {
			t.Fatalf("round trip changed the packet:\n got %x\nwant %x", pkt, orig)
		}
	})
}

// TestICMPRoundTrip: the same for the packet quoted in an ICMP error,
// quoted in full or truncated.
func TestICMPRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		src, dst := genAddrPort(t, "src"), genAddrPort(t, "dst")
		to := genAddrPort(t, "to")
		quoted := genPacket(t, src, dst)
		ihl := int(quoted[0]&0xf) * 4
		quoted = quoted[:rapid.IntRange(ihl+8, len(quoted)).Draw(t, "quoteLen")]
		pkt := icmpErr(genAddr(t, "from"), src.Addr(), header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, quoted)
		orig := bytes.Clone(pkt)
		l4 := pkt[20:]
		var p packet.IP
		if !p.Parse(pkt) {
			t.Fatalf("Parse(%x) failed", pkt)
		}
		inner, ihl2, _, ok := p.Quoted()
		if !ok || ihl2 != ihl {
			t.Fatalf("Quoted(%x) failed", pkt)
		}
		isSrc := rapid.Bool().Draw(t, "rewriteSource")
		old := dst
		if isSrc {
			old = src
		}
		d := rewriteQuoted(inner, ihl, isSrc, to.Addr().As16(), to.Port())
		d.apply(l4, icmpCsum)
		if e := sumsErr(pkt, false); e != "" {
			t.Fatalf("after NAT: %s: %x", e, pkt)
		}
		d = rewriteQuoted(inner, ihl, isSrc, old.Addr().As16(), old.Port())
		d.apply(l4, icmpCsum)
		if !bytes.Equal(pkt, orig) {
			t.Fatalf("round trip changed the packet:\n got %x\nwant %x", pkt, orig)
		}
	})
}

// TestBalancerRoundTrip runs random packets through Outbound and their
// replies through Inbound: the client sees exactly the bytes the backend
// would have sent had it been the VIP.
func TestBalancerRoundTrip(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web(bk(be1, 1), bk(be2, 3)))
	rapid.Check(t, func(t *rapid.T) {
		cli := genAddrPort(t, "client")
		if cli.Addr() == vip || !replyable(cli.Addr().As4()) {
			t.Skip("client is the VIP or not unicast")
		}
		tcp := rapid.Bool().Draw(t, "tcp")
		vp := netip.AddrPortFrom(vip, 80)
		payload := rapid.SliceOfN(rapid.Byte(), 0, 40).Draw(t, "payload")
		var out []byte
		if tcp {
			out = ipv4(cli.Addr(), vip, uint8(TCP), 0, tcpSeg(cli, vp, fSYN, 1, 0, payload))
		} else {
			vp = netip.AddrPortFrom(vip, 53)
			out = ipv4(cli.Addr(), vip, uint8(UDP), 0, udpDgram(cli, vp, payload, rapid.Bool().Draw(t, "noChecksum")))
		}
		if v := b.Outbound(out); v != NAT {
			t.Fatalf("Outbound = %v", v)
		}
		if e := sumsErr(out, false); e != "" {
			t.Fatal(e)
		}
		_, backend := addrs(out)
		var asBackend, asVIP []byte
		if tcp {
			seg := tcpSeg(backend, cli, fSYN|fACK, 7, 2, payload)
			asBackend = ipv4(backend.Addr(), cli.Addr(), uint8(TCP), 0, seg)
			asVIP = ipv4(vip, cli.Addr(), uint8(TCP), 0, tcpSeg(vp, cli, fSYN|fACK, 7, 2, payload))
		} else {
			asBackend = ipv4(backend.Addr(), cli.Addr(), uint8(UDP), 0, udpDgram(backend, cli, payload, false))
			asVIP = ipv4(vip, cli.Addr(), uint8(UDP), 0, udpDgram(vp, cli, payload, false))
		}
		if v := b.Inbound(asBackend); v != NAT {
			t.Fatalf("Inbound = %v", v)
		}
		if !bytes.Equal(asBackend, asVIP) {
			t.Fatalf("reverse NAT:\n got %x\nwant %x", asBackend, asVIP)
		}
	})
}

// fuzzBalancer balances an IPv4 and an IPv6 service, each with one
// tracked flow so that inbound packets can match.
func fuzzBalancer(t testing.TB) *Balancer {
	b := mustNew(t, Options{MaxFlows: 4096})
	mustSet(t, b, append(web(bk(be1, 1), bk(be2, 1)), web6(bk(be61, 1), bk(be62, 1))...))
	for _, pkt := range [][]byte{
		tcpPkt(netip.AddrPortFrom(client, 40000), netip.AddrPortFrom(vip, 80), fSYN),
		tcpPkt(netip.AddrPortFrom(client6, 40000), netip.AddrPortFrom(vip6, 80), fSYN),
	} {
		if b.Outbound(pkt) != NAT {
			t.Fatal("setup flow not NATed")
		}
	}
	return b
}

// wellFormed reports whether pkt is a packet of either family with
// correct checksums and nothing after its end: one whose NAT must keep
// them correct.
func wellFormed(pkt []byte) bool {
	var p packet.IP
	if !p.Parse(pkt) || p.Len() != len(pkt) {
		return false
	}
	if p.Is6() {
		return sums6Err(pkt) == ""
	}
	return sumsErr(pkt, false) == ""
}

// sumsOK reports whether pkt, NATed from a well-formed packet, has
// correct checksums.
func sumsOK(pkt []byte) string {
	if pkt[0]>>4 == 6 {
		return sums6Err(pkt)
	}
	return sumsErr(pkt, false)
}

func fuzzSeeds(f *testing.F) {
	cli, vp := netip.AddrPortFrom(client, 40000), netip.AddrPortFrom(vip, 80)
	syn := tcpPkt(cli, vp, fSYN, 'a')
	f.Add(syn)
	f.Add(udpPkt(cli, netip.AddrPortFrom(vip, 53), 'b'))
	f.Add(tcpPkt(be1, cli, fSYN|fACK))
	f.Add(tcpPkt(be2, cli, fSYN|fACK))
	f.Add(icmpErr(be1.Addr(), client, header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, tcpPkt(cli, be1, fSYN)[:28]))
	f.Add(icmpErr(client, vip, header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, udpPkt(netip.AddrPortFrom(vip, 53), cli)))
	f.Add(ipv4(client, vip, uint8(TCP), 8, tcpSeg(cli, vp, fACK, 1, 2, nil)))
	f.Add(syn[:30])
	frag := bytes.Clone(syn)
	frag[6] = 0x20 // MF
	f.Add(frag)
	f.Add([]byte{0x45})
	cli6, vp6 := netip.AddrPortFrom(client6, 40000), netip.AddrPortFrom(vip6, 80)
	syn6 := tcpPkt(cli6, vp6, fSYN, 'a')
	f.Add(syn6)
	f.Add(udpPkt(cli6, netip.AddrPortFrom(vip6, 53), 'b'))
	f.Add(tcpPkt(be61, cli6, fSYN|fACK))
	f.Add(tcpPkt(be62, cli6, fSYN|fACK))
	f.Add(ipv6pkt(client6, vip6, uint8(TCP), tcpSeg6(cli6, vp6, fACK, 1, 2, nil), hbh(), srh(0)))
	f.Add(ipv6pkt(client6, vip6, uint8(TCP), tcpSeg6(cli6, vp6, fACK, 1, 2, nil), frag6(0, true)))
	f.Add(ipv6pkt(client6, vip6, uint8(TCP), tcpSeg6(cli6, vp6, fACK, 1, 2, nil), srh(1)))
	f.Add(icmp6Err(be61.Addr(), client6, header.ICMPv6DstUnreachable, header.ICMPv6PortUnreachable, tcpPkt(cli6, be61, fSYN)[:48]))
	f.Add(icmp6Err(be62.Addr(), client6, header.ICMPv6PacketTooBig, 0, tcpPkt(cli6, be62, fSYN)))
	f.Add(icmp6Err(client6, vip6, header.ICMPv6DstUnreachable, header.ICMPv6PortUnreachable, udpPkt(netip.AddrPortFrom(vip6, 53), cli6)))
	f.Add(syn6[:50])
}

func FuzzOutbound(f *testing.F) {
	fuzzSeeds(f)
	b := fuzzBalancer(f)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		before := b.Stats().Flows
		var p packet.IP
		valid := p.Parse(pkt) && !p.Fragment() && p.L4Valid() && !p.Routed()
		orig := bytes.Clone(pkt)
		v := b.Outbound(pkt)
		if !valid && b.Stats().Flows > before {
			t.Fatalf("malformed packet %x grew the table", orig)
		}
		if v != NAT && !bytes.Equal(pkt, orig) {
			t.Fatalf("verdict %v but the packet changed", v)
		}
		if v == NAT && wellFormed(orig) {
			if e := sumsOK(pkt); e != "" {
				t.Fatalf("valid packet %x NATed to %x: %s", orig, pkt, e)
			}
		}
		if v == NAT && (orig[0]>>4 != pkt[0]>>4 || len(orig) != len(pkt)) {
			t.Fatalf("NAT changed the family or length: %x → %x", orig, pkt)
		}
		out := make([]byte, packet.MaxAnswerLen)
		if p.Parse(pkt) {
			packet.BuildTCPReset(&p, netip.Prefix{}, out)
			packet.BuildICMPPortUnreachable(&p, netip.Prefix{}, out)
			packet.BuildAnswer(&p, netip.Prefix{}, packet.AnswerReset, 0, out)
		}
	})
}

func FuzzInbound(f *testing.F) {
	fuzzSeeds(f)
	b := fuzzBalancer(f)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		before := b.Stats().Flows
		orig := bytes.Clone(pkt)
		v := b.Inbound(pkt)
		if b.Stats().Flows > before {
			t.Fatalf("Inbound(%x) created a flow", orig)
		}
		if v != NAT && !bytes.Equal(pkt, orig) {
			t.Fatalf("verdict %v but the packet changed", v)
		}
		if v == NAT && wellFormed(orig) {
			if e := sumsOK(pkt); e != "" {
				t.Fatalf("valid packet %x NATed to %x: %s", orig, pkt, e)
			}
		}
	})
}

// TestUDPChecksumFFFF: a UDP checksum that computes to 0 is sent as 0xffff
// (RFC 768); NAT must never turn it into 0 ("no checksum").
func TestUDPChecksumFFFF(t *testing.T) {
	src, dst := netip.AddrPortFrom(client, 1234), netip.AddrPortFrom(vip, 53)
	var pkt []byte
	for w := range 1 << 16 {
		pkt = udpPkt(src, dst, byte(w>>8), byte(w))
		if header.UDP(pkt[20:]).Checksum() == 0xffff {
			break
		}
	}
	if header.UDP(pkt[20:]).Checksum() != 0xffff {
		t.Fatal("no payload gives checksum 0xffff")
	}
	orig := bytes.Clone(pkt)
	var p packet.IP
	p.Parse(pkt)
	for _, to := range []netip.AddrPort{be1, be2, netip.AddrPortFrom(client, 1234)} {
		rewrite(p.Header(), p.Payload(), p.Proto, false, to.Addr().As16(), to.Port())
		if c := header.UDP(pkt[20:]).Checksum(); c == 0 {
			t.Fatalf("NAT to %v produced a zero UDP checksum", to)
		}
		checkSums(t, pkt)
		rewrite(p.Header(), p.Payload(), p.Proto, false, dst.Addr().As16(), dst.Port())
		if !bytes.Equal(pkt, orig) {
			t.Fatalf("round trip via %v:\n got %x\nwant %x", to, pkt, orig)
		}
	}
}
