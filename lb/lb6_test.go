package lb

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"pgregory.net/rapid"

	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/packet"
)

// TestTCPFlow6: a connection to an IPv6 VIP, NAT66 both ways, beside an
// IPv4 service on the same Balancer.
func TestTCPFlow6(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, append(web(bk(be1, 1)), web6(bk(be61, 1), bk(be62, 1), bk(be63, 1))...))
	f := &flow{t: t, b: b, cli: netip.AddrPortFrom(client6, 40000), vipPort: netip.AddrPortFrom(vip6, 80)}
	f.out(fSYN, NAT)
	if s := f.state(); s != StateSynSent {
		t.Fatalf("after SYN: %v", s)
	}
	f.in(fSYN|fACK, NAT)
	f.out(fACK, NAT)
	f.in(fACK|fPSH, NAT)
	f.out(fFIN|fACK, NAT)
	f.in(fFIN|fACK, NAT)
	if s := f.state(); s != StateClosing {
		t.Fatalf("after both FINs: %v", s)
	}
	if !f.backend.Addr().Is6() || !strings.HasPrefix(f.backend.String(), "[fd00:3::") {
		t.Fatalf("backend %v", f.backend)
	}
	fi := b.Flows()
	if len(fi) != 1 || fi[0].Client != f.cli || fi[0].VIP != f.vipPort || fi[0].Backend != f.backend || fi[0].Service != "web6" {
		t.Fatalf("Flows() = %+v", fi)
	}
	// The IPv4 service beside it is as before.
	g := &flow{t: t, b: b, cli: netip.AddrPortFrom(client, 40000), vipPort: netip.AddrPortFrom(vip, 80)}
	g.establish()
	if g.backend != be1 {
		t.Errorf("IPv4 flow went to %v", g.backend)
	}
	// Unrelated IPv6 traffic passes untouched, and so does a backend's
	// packet to an untracked client.
	for _, pkt := range [][]byte{
		tcpPkt(f.cli, ap("[fd00:9::9]:80"), fSYN),
		tcpPkt(be61, netip.AddrPortFrom(client6, 1), fACK),
		tcpPkt(ap("[fd00:9::9]:80"), f.cli, fACK),
	} {
		orig := bytes.Clone(pkt)
		if v, w := b.Outbound(pkt), b.Inbound(pkt); v != Pass || w != Pass || !bytes.Equal(pkt, orig) {
			t.Errorf("%x: Outbound %v, Inbound %v", orig, v, w)
		}
	}
	if v := b.Outbound(tcpPkt(f.cli, netip.AddrPortFrom(vip6, 81), fSYN)); v != Reset {
		t.Errorf("Outbound(VIP6:81) = %v, want reset", v)
	}
}

func TestUDP6(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web6(bk(be61, 1)))
	cli, vp := netip.AddrPortFrom(client6, 5000), netip.AddrPortFrom(vip6, 53)
	pkt := udpPkt(cli, vp, []byte("query")...)
	if v := b.Outbound(pkt); v != NAT {
		t.Fatalf("Outbound(udp6) = %v", v)
	}
	checkSums(t, pkt)
	if _, dst := addrs(pkt); dst != be61 {
		t.Fatalf("dst %v, want %v", dst, be61)
	}
	reply := udpPkt(be61, cli, []byte("answer")...)
	if v := b.Inbound(reply); v != NAT {
		t.Fatalf("Inbound(udp6) = %v", v)
	}
	checkSums(t, reply)
	if !bytes.Equal(reply, udpPkt(vp, cli, []byte("answer")...)) {
		t.Errorf("reverse NAT66: %x", reply)
	}
	if fl := b.Flows(); len(fl) != 1 || fl[0].State != StateReplied {
		t.Errorf("Flows = %+v", fl)
	}
}

// TestExtHeaders6: extension headers before the transport header are
// kept; fragments are dropped and counted (never half-NATed), an atomic
// fragment is a whole packet, a source-routed packet is refused.
func TestExtHeaders6(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web6(bk(be61, 1)))
	cli, vp := netip.AddrPortFrom(client6, 41000), netip.AddrPortFrom(vip6, 80)
	seg := tcpSeg6(cli, vp, fSYN, 1, 0, []byte("hi"))
	for name, pkt := range map[string][]byte{
		"hop-by-hop":               ipv6pkt(client6, vip6, uint8(TCP), seg, hbh()),
		"atomic fragment":          ipv6pkt(client6, vip6, uint8(TCP), seg, frag6(0, false)),
		"routing, no segment left": ipv6pkt(client6, vip6, uint8(TCP), seg, hbh(), srh(0)),
	} {
		if v := b.Outbound(pkt); v != NAT {
			t.Fatalf("%s: Outbound = %v", name, v)
		}
		checkSums(t, pkt)
		if _, dst := addrs(pkt); dst != be61 {
			t.Errorf("%s: dst %v", name, dst)
		}
	}
	for name, pkt := range map[string][]byte{
		"first fragment": ipv6pkt(client6, vip6, uint8(TCP), seg, frag6(0, true)),
		"later fragment": ipv6pkt(client6, vip6, uint8(TCP), seg[:16], frag6(1448, false)),
		"source routed":  ipv6pkt(client6, vip6, uint8(TCP), seg, srh(1)),
		"tcp truncated":  ipv6pkt(client6, vip6, uint8(TCP), seg[:19]),
	} {
		orig := bytes.Clone(pkt)
		if v := b.Outbound(pkt); v != Drop || !bytes.Equal(pkt, orig) {
			t.Errorf("%s: Outbound = %v (changed %v), want drop", name, v, !bytes.Equal(pkt, orig))
		}
	}
	if st := b.Stats(); st.Fragments != 2 || st.Malformed != 2 {
		t.Errorf("Fragments %d Malformed %d, want 2 and 2", st.Fragments, st.Malformed)
	}
	// A backend's reply fragment is passed as it is, as IPv4's.
	frag := ipv6pkt(be61.Addr(), client6, uint8(TCP), seg[:16], frag6(8, false))
	if v := b.Inbound(frag); v != Pass {
		t.Errorf("Inbound(fragment) = %v, want pass", v)
	}
}

// TestFamilies: a VIP and its backends are one family; the error is a
// fault.ErrInvalid that says so, and the service is left out alone.
func TestFamilies(t *testing.T) {
	b := mustNew(t, Options{})
	mixed := Service{Network: "n", Name: "mixed", VIP: vip6, Ports: []PortProto{{80, TCP}}, Backends: []Backend{bk(be61, 1), bk(be1, 1)}}
	mapped := Service{Network: "n", Name: "mapped", VIP: netip.MustParseAddr("::ffff:10.96.0.20"), Ports: []PortProto{{80, TCP}}, Backends: []Backend{bk(be2, 1)}}
	err := b.Set(append([]Service{mixed, mapped}, web6(bk(be61, 1))...))
	var serr *SetError
	if !errors.As(err, &serr) || len(serr.Rejected) != 1 || serr.Rejected[0].Name != "mixed" || !errors.Is(serr.Rejected[0].Err, fault.ErrInvalid) ||
		!strings.Contains(err.Error(), `lb: service "n/mixed": backend 10.0.3.1:8080 is IPv4 but VIP fd00:96::10 is IPv6: a service and its backends are of one family (a dual-stack service is two services, one per family)`) {
		t.Fatalf("Set = %v", err)
	}
	// A mapped VIP is its IPv4 address.
	if v := b.Outbound(tcpPkt(netip.AddrPortFrom(client, 1), ap("10.96.0.20:80"), fSYN)); v != NAT {
		t.Errorf("Outbound to the mapped VIP's IPv4 address = %v", v)
	}
	if ss := b.Stats().Services; len(ss) != 2 || ss[0].VIP != netip.MustParseAddr("10.96.0.20") || ss[1].VIP != vip6 {
		t.Errorf("Stats services %+v", ss)
	}
}

func TestICMPErrors6(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web6(bk(be61, 1)))
	cli := netip.AddrPortFrom(client6, 40000)
	vp80, vp53 := netip.AddrPortFrom(vip6, 80), netip.AddrPortFrom(vip6, 53)
	syn := tcpPkt(cli, vp80, fSYN, []byte("payload")...)
	dg := udpPkt(cli, vp53, []byte("q")...)
	if b.Outbound(syn) != NAT || b.Outbound(dg) != NAT {
		t.Fatal("not NATed")
	}
	router := netip.MustParseAddr("fd00:ffff::1")
	for _, tc := range []struct {
		name    string
		from    netip.Addr
		typ     header.ICMPv6Type
		code    header.ICMPv6Code
		quoted  []byte
		wantSrc netip.Addr
	}{
		{"port unreachable from backend (udp, full)", be61.Addr(), header.ICMPv6DstUnreachable, header.ICMPv6PortUnreachable, dg, vip6},
		{"packet too big from router (tcp, full)", router, header.ICMPv6PacketTooBig, 0, syn, router},
		{"time exceeded (tcp, 8 bytes)", router, header.ICMPv6TimeExceeded, 0, syn[:48], router},
		{"address unreachable from backend (tcp, 18 bytes)", be61.Addr(), header.ICMPv6DstUnreachable, header.ICMPv6AddressUnreachable, syn[:58], vip6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := icmp6Err(tc.from, client6, tc.typ, tc.code, bytes.Clone(tc.quoted))
			if v := b.Inbound(pkt); v != NAT {
				t.Fatalf("Inbound(ICMPv6 error) = %v", v)
			}
			checkSums(t, pkt)
			if src, _ := addrs(pkt); src.Addr() != tc.wantSrc {
				t.Errorf("outer src = %v, want %v", src, tc.wantSrc)
			}
			if _, dst := addrs(pkt[48:]); dst.Addr() != vip6 || (dst.Port() != 80 && dst.Port() != 53) {
				t.Errorf("quoted dst = %v, want the VIP", dst)
			}
		})
	}
	// Outbound: the client reports port unreachable for a reply from VIP:53.
	pkt := icmp6Err(client6, vip6, header.ICMPv6DstUnreachable, header.ICMPv6PortUnreachable, udpPkt(vp53, cli, []byte("late")...))
	if v := b.Outbound(pkt); v != NAT {
		t.Fatalf("Outbound(ICMPv6 error to VIP) = %v", v)
	}
	checkSums(t, pkt)
	if _, dst := addrs(pkt); dst.Addr() != be61.Addr() {
		t.Errorf("outbound ICMPv6 dst = %v", dst)
	}
	if src, _ := addrs(pkt[48:]); src != be61 {
		t.Errorf("outbound ICMPv6 quoted src = %v", src)
	}
	// Echo to a VIP is not the balancer's business, as for IPv4.
	echo := ipv6pkt(client6, vip6, packet.ICMPv6, []byte{128, 0, 0, 0, 0, 1, 0, 1})
	if v := b.Outbound(echo); v != Pass {
		t.Errorf("Outbound(echo to VIP6) = %v, want pass", v)
	}
}

// TestRemoveBackend6: a flow whose backend left is Reset, and the answer
// is a RST (TCP) or an ICMPv6 port unreachable (UDP) from the VIP.
func TestRemoveBackend6(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web6(bk(be61, 1)))
	f := &flow{t: t, b: b, cli: netip.AddrPortFrom(client6, 20000), vipPort: netip.AddrPortFrom(vip6, 80)}
	f.establish()
	udpCli := netip.AddrPortFrom(client6, 7000)
	if b.Outbound(udpPkt(udpCli, netip.AddrPortFrom(vip6, 53))) != NAT {
		t.Fatal("udp not NATed")
	}
	mustSet(t, b, web6(bk(be62, 1)))
	seg := tcpPkt(f.cli, f.vipPort, fACK|fPSH, 'x')
	if v := b.Outbound(seg); v != Reset {
		t.Fatalf("flow of the removed backend: %v", v)
	}
	rst := answer(t, seg)
	checkSums(t, rst)
	var r packet.IP
	if !r.Parse(rst) || !r.Is6() || r.TCPFlags&packet.FlagRST == 0 || r.SrcAddrPort() != f.vipPort || r.DstAddrPort() != f.cli {
		t.Errorf("RST %x", rst)
	}
	dg := udpPkt(udpCli, netip.AddrPortFrom(vip6, 53), 'q')
	if v := b.Outbound(dg); v != Reset {
		t.Fatalf("udp flow of the removed backend: %v", v)
	}
	unr := answer(t, dg)
	checkSums(t, unr)
	if !r.Parse(unr) || r.Proto != packet.ICMPv6 || r.ICMPType != 1 || r.ICMPCode != 4 || r.SrcAddr() != vip6 {
		t.Errorf("port unreachable %x", unr)
	}
	if v := b.Outbound(dg); v != NAT {
		t.Errorf("next datagram: %v, want nat", v)
	}
}

func TestHitAllocs6(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web6(bk(be61, 1), bk(be62, 1)))
	f := &flow{t: t, b: b, cli: netip.AddrPortFrom(client6, 40000), vipPort: netip.AddrPortFrom(vip6, 80)}
	f.establish()
	out := tcpPkt(f.cli, f.vipPort, fACK|fPSH, make([]byte, 100)...)
	in := tcpPkt(f.backend, f.cli, fACK|fPSH, make([]byte, 100)...)
	icmpIn := icmp6Err(f.backend.Addr(), client6, header.ICMPv6PacketTooBig, 0, tcpPkt(f.cli, f.backend, fACK, make([]byte, 100)...))
	outBuf, inBuf, icmpBuf := make([]byte, len(out)), make([]byte, len(in)), make([]byte, len(icmpIn))
	if a := testing.AllocsPerRun(1000, func() {
		copy(outBuf, out)
		if b.Outbound(outBuf) != NAT {
			panic("not NATed")
		}
		copy(inBuf, in)
		if b.Inbound(inBuf) != NAT {
			panic("not NATed")
		}
		copy(icmpBuf, icmpIn)
		if b.Inbound(icmpBuf) != NAT {
			panic("ICMPv6 not NATed")
		}
	}); a != 0 {
		t.Errorf("IPv6 conntrack hit + NAT66 allocates %v times per packet, want 0", a)
	}
	other := tcpPkt(f.cli, ap("[fd00:9::9]:80"), fACK)
	frag := ipv6pkt(client6, vip6, uint8(TCP), make([]byte, 16), frag6(8, false))
	if a := testing.AllocsPerRun(1000, func() { b.Outbound(other); b.Inbound(other); b.Outbound(frag) }); a != 0 {
		t.Errorf("IPv6 pass and drop paths allocate %v times, want 0", a)
	}
}

func genAddr6(t *rapid.T, label string) netip.Addr {
	a := netip.AddrFrom16([16]byte(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, label)))
	if a.Is4In6() {
		a = netip.MustParseAddr("fd00::1")
	}
	return a
}

func genAddrPort6(t *rapid.T, label string) netip.AddrPort {
	return netip.AddrPortFrom(genAddr6(t, label), rapid.Uint16().Draw(t, label+"Port"))
}

// genPacket6 draws a valid IPv6 TCP or UDP packet, sometimes behind a
// hop-by-hop header, with an odd or even payload.
func genPacket6(t *rapid.T, src, dst netip.AddrPort) []byte {
	payload := rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(t, "payload")
	var exts []ext6
	if rapid.Bool().Draw(t, "hbh") {
		exts = append(exts, hbh())
	}
	if rapid.Bool().Draw(t, "tcp") {
		flags := header.TCPFlags(rapid.Byte().Draw(t, "flags"))
		return ipv6pkt(src.Addr(), dst.Addr(), uint8(TCP), tcpSeg6(src, dst, flags, rapid.Uint32().Draw(t, "seq"), rapid.Uint32().Draw(t, "ack"), payload), exts...)
	}
	return ipv6pkt(src.Addr(), dst.Addr(), uint8(UDP), udpDgram6(src, dst, payload), exts...)
}

// TestNATRoundTrip6: NAT66 of a packet's destination (or source) and
// back restores it exactly, and every checksum in between is right.
func TestNATRoundTrip6(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		src, dst, to := genAddrPort6(t, "src"), genAddrPort6(t, "dst"), genAddrPort6(t, "to")
		pkt := genPacket6(t, src, dst)
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
		rewriteView(&p, isSrc, to.Addr().As16(), to.Port())
		if e := sums6Err(pkt); e != "" {
			t.Fatalf("after NAT66: %s: %x", e, pkt)
		}
		if s, d := addrs6(pkt); map[bool]netip.AddrPort{false: d, true: s}[isSrc] != to {
			t.Fatalf("rewritten %v → %v, want %v", s, d, to)
		}
		var q packet.IP
		if !q.Parse(pkt) || q.Tuple != p.Tuple {
			t.Fatalf("view %+v out of step with the bytes %+v", p.Tuple, q.Tuple)
		}
		rewriteView(&p, isSrc, old.Addr().As16(), old.Port())
		if !bytes.Equal(pkt, orig) {
			t.Fatalf("round trip changed the packet:\n got %x\nwant %x", pkt, orig)
		}
	})
}

// TestICMPRoundTrip6: the same for the packet quoted in an ICMPv6 error,
// in full or cut short, with the outer address rewritten too.
func TestICMPRoundTrip6(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		src, dst, to := genAddrPort6(t, "src"), genAddrPort6(t, "dst"), genAddrPort6(t, "to")
		quoted := genPacket6(t, src, dst)
		var qp packet.IP
		qp.Parse(quoted)
		quoted = quoted[:rapid.IntRange(qp.HeaderLen()+8, len(quoted)).Draw(t, "quoteLen")]
		from := genAddr6(t, "from")
		pkt := icmp6Err(from, src.Addr(), header.ICMPv6DstUnreachable, header.ICMPv6PortUnreachable, quoted)
		orig := bytes.Clone(pkt)
		var p packet.IP
		if !p.Parse(pkt) {
			t.Fatalf("Parse(%x) failed", pkt)
		}
		inner, ihl, ik, ok := p.Quoted()
		if !ok {
			t.Fatalf("Quoted(%x) failed", pkt)
		}
		isSrc := rapid.Bool().Draw(t, "rewriteSource")
		old := dst
		if isSrc {
			old = src
		}
		outer := to.Addr().As16()
		d := rewriteQuoted6(inner, ihl, ik.Proto, isSrc, ptr(to.Addr().As16()), to.Port())
		rewriteOuter6(&p, d, true, &outer)
		if e := sums6Err(pkt); e != "" {
			t.Fatalf("after NAT66: %s: %x", e, pkt)
		}
		back := from.As16()
		d = rewriteQuoted6(inner, ihl, ik.Proto, isSrc, ptr(old.Addr().As16()), old.Port())
		rewriteOuter6(&p, d, true, &back)
		if !bytes.Equal(pkt, orig) {
			t.Fatalf("round trip changed the packet:\n got %x\nwant %x", pkt, orig)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// TestBalancerRoundTrip6 runs random packets through Outbound and their
// replies through Inbound: the client sees exactly the bytes the backend
// would have sent had it been the VIP.
func TestBalancerRoundTrip6(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web6(bk(be61, 1), bk(be62, 3)))
	rapid.Check(t, func(t *rapid.T) {
		cli := genAddrPort6(t, "client")
		if cli.Addr() == vip6 {
			t.Skip("client is the VIP")
		}
		payload := rapid.SliceOfN(rapid.Byte(), 0, 40).Draw(t, "payload")
		vp := netip.AddrPortFrom(vip6, 80)
		var out []byte
		tcp := rapid.Bool().Draw(t, "tcp")
		if tcp {
			out = ipv6pkt(cli.Addr(), vip6, uint8(TCP), tcpSeg6(cli, vp, fSYN, 1, 0, payload))
		} else {
			vp = netip.AddrPortFrom(vip6, 53)
			out = ipv6pkt(cli.Addr(), vip6, uint8(UDP), udpDgram6(cli, vp, payload))
		}
		if v := b.Outbound(out); v != NAT {
			t.Fatalf("Outbound = %v", v)
		}
		if e := sums6Err(out); e != "" {
			t.Fatal(e)
		}
		_, backend := addrs6(out)
		var asBackend, asVIP []byte
		if tcp {
			asBackend = ipv6pkt(backend.Addr(), cli.Addr(), uint8(TCP), tcpSeg6(backend, cli, fSYN|fACK, 7, 2, payload))
			asVIP = ipv6pkt(vip6, cli.Addr(), uint8(TCP), tcpSeg6(vp, cli, fSYN|fACK, 7, 2, payload))
		} else {
			asBackend = ipv6pkt(backend.Addr(), cli.Addr(), uint8(UDP), udpDgram6(backend, cli, payload))
			asVIP = ipv6pkt(vip6, cli.Addr(), uint8(UDP), udpDgram6(vp, cli, payload))
		}
		if v := b.Inbound(asBackend); v != NAT {
			t.Fatalf("Inbound = %v", v)
		}
		if !bytes.Equal(asBackend, asVIP) {
			t.Fatalf("reverse NAT66:\n got %x\nwant %x", asBackend, asVIP)
		}
	})
}

func BenchmarkNAT66(b *testing.B) {
	for _, dir := range []string{"outbound", "inbound"} {
		b.Run(dir, func(b *testing.B) {
			bal := mustNew(b, Options{})
			mustSet(b, bal, web6(bk(be61, 1), bk(be62, 1)))
			cli := netip.AddrPortFrom(client6, 40000)
			vp := netip.AddrPortFrom(vip6, 80)
			syn := tcpPkt(cli, vp, fSYN)
			if bal.Outbound(syn) != NAT {
				b.Fatal("SYN not NATed")
			}
			_, be := addrs(syn)
			pkt := tcpPkt(cli, vp, fACK|fPSH, make([]byte, 1400)...)
			if dir == "inbound" {
				pkt = tcpPkt(be, cli, fACK|fPSH, make([]byte, 1400)...)
			}
			fn := map[string]func([]byte) Verdict{"outbound": bal.Outbound, "inbound": bal.Inbound}[dir]
			buf := make([]byte, len(pkt))
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf[:60], pkt[:60])
				if fn(buf) != NAT {
					b.Fatal("not NATed")
				}
			}
		})
	}
}

// TestEvictAcrossFamilies: in a full shard a new flow of one family evicts
// the oldest flow, of either family (its keys are packed before the maps
// are touched for an IPv4 victim), and leaves no stale key behind: every
// live flow is in its family's two maps once, the evicted ones in none,
// and the live ones' replies are still NATed.
func TestEvictAcrossFamilies(t *testing.T) {
	b := mustNew(t, Options{MaxFlows: 4})
	mustSet(t, b, append(web(bk(be1, 1)), web6(bk(be61, 1))...))
	s := &b.shards[0]
	if len(b.shards) != 1 || b.perShard != 4 {
		t.Fatalf("%d shards of %d flows, want 1 of 4", len(b.shards), b.perShard)
	}
	type flow struct {
		cli, be netip.AddrPort
		v6      bool
	}
	var live []flow
	for i := range 24 {
		f := flow{netip.AddrPortFrom(client, uint16(1000+i)), be1, false}
		pkt := udpPkt(f.cli, netip.AddrPortFrom(vip, 53), 'x')
		if i%3 == 1 || i%7 == 0 { // each family evicts flows of both
			f = flow{netip.AddrPortFrom(client6, uint16(1000+i)), be61, true}
			pkt = udpPkt6(f.cli, netip.AddrPortFrom(vip6, 53), 'x')
		}
		if v := b.Outbound(pkt); v != NAT {
			t.Fatalf("flow %d: Outbound = %v", i, v)
		}
		live = append(live, f)
		if len(live) > 4 {
			live = live[1:]
		}
		n4, n6 := 0, 0
		for _, f := range live {
			if f.v6 {
				n6++
			} else {
				n4++
			}
		}
		if s.n != len(live) || len(s.byOrig) != n4 || len(s.byReply) != n4 || len(s.byOrig6) != n6 || len(s.byReply6) != n6 {
			t.Fatalf("after flow %d: n %d, IPv4 maps %d/%d, IPv6 maps %d/%d; want %d, %d and %d", i, s.n, len(s.byOrig), len(s.byReply), len(s.byOrig6), len(s.byReply6), len(live), n4, n6)
		}
	}
	if st := b.Stats(); st.Evictions != 20 {
		t.Errorf("%d evictions, want 20", st.Evictions)
	}
	for _, f := range live {
		pkt := udpPkt(f.be, f.cli, 'y')
		if f.v6 {
			pkt = udpPkt6(f.be, f.cli, 'y')
		}
		if v := b.Inbound(pkt); v != NAT {
			t.Errorf("reply to %v: Inbound = %v", f.cli, v)
		}
	}
}
