package lb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/packet"
)

const (
	fSYN = header.TCPFlagSyn
	fACK = header.TCPFlagAck
	fFIN = header.TCPFlagFin
	fRST = header.TCPFlagRst
	fPSH = header.TCPFlagPsh
)

func TestTCPStateMachine(t *testing.T) {
	for _, tc := range []struct {
		s        State
		fins     uint8
		dir      uint8
		flags    header.TCPFlags
		want     State
		wantFins uint8
	}{
		{StateSynSent, 0, dirOut, fSYN, StateSynSent, 0},                  // retransmitted SYN
		{StateSynSent, 0, dirIn, fSYN | fACK, StateSynReceived, 0},        // SYN-ACK
		{StateSynSent, 0, dirIn, fACK, StateSynSent, 0},                   // bare ACK without SYN-ACK
		{StateSynReceived, 0, dirOut, fACK, StateEstablished, 0},          // handshake done
		{StateSynReceived, 0, dirIn, fSYN | fACK, StateSynReceived, 0},    // retransmitted SYN-ACK
		{StateEstablished, 0, dirOut, fACK | fPSH, StateEstablished, 0},   // data
		{StateEstablished, 0, dirIn, fACK, StateEstablished, 0},           // data back
		{StateEstablished, 0, dirOut, fFIN | fACK, StateFinWait, dirOut},  // client closes
		{StateEstablished, 0, dirIn, fFIN | fACK, StateFinWait, dirIn},    // server closes
		{StateFinWait, dirOut, dirOut, fFIN | fACK, StateFinWait, dirOut}, // FIN retransmitted
		{StateFinWait, dirOut, dirIn, fACK, StateFinWait, dirOut},         // half-closed data
		{StateFinWait, dirOut, dirIn, fFIN | fACK, StateClosing, 3},       // both FINs
		{StateFinWait, dirIn, dirOut, fFIN | fACK, StateClosing, 3},       // both FINs
		{StateClosing, 3, dirOut, fACK, StateClosing, 3},                  // last ACK
		{StateEstablished, 0, dirOut, fRST, StateClosed, 0},               // client reset
		{StateSynSent, 0, dirIn, fRST | fACK, StateClosed, 0},             // connection refused
		{StateFinWait, dirIn, dirIn, fRST, StateClosed, dirIn},            // reset while closing
		{StateClosed, 0, dirOut, fACK, StateClosed, 0},                    // stray segment after RST
		{StateClosed, 0, dirOut, fFIN, StateClosed, 0},                    // FIN after RST
		{StateUnreplied, 0, dirOut, fACK, StateUnreplied, 0},              // mid-stream pickup, client
		{StateUnreplied, 0, dirIn, fACK, StateEstablished, 0},             // mid-stream pickup, backend answers
		{StateUnreplied, 0, dirIn, fRST, StateClosed, 0},                  // backend has no such connection
		{StateSynSent, 0, dirOut, fFIN, StateFinWait, dirOut},             // odd but harmless
	} {
		got, gotFins := tcpNext(tc.s, tc.fins, tc.dir, uint8(tc.flags))
		if got != tc.want || gotFins != tc.wantFins {
			t.Errorf("tcpNext(%v, fins %b, dir %d, %v) = %v, %b; want %v, %b", tc.s, tc.fins, tc.dir, tc.flags, got, gotFins, tc.want, tc.wantFins)
		}
	}
	if udpNext(StateUnreplied, dirOut) != StateUnreplied || udpNext(StateUnreplied, dirIn) != StateReplied {
		t.Error("udpNext: want Unreplied → Replied on the first reply only")
	}
}

func TestSetErrors(t *testing.T) {
	b := mustNew(t, Options{})
	good := Service{Network: "n", Name: "web", VIP: vip, Ports: []PortProto{{80, TCP}}, Backends: []Backend{bk(be1, 1)}}
	for _, tc := range []struct {
		name string
		mod  func(s []Service) []Service
		want string
	}{
		{"no name", func(s []Service) []Service { s[0].Name = ""; return s }, "empty name"},
		{"v6 VIP, v4 backends", func(s []Service) []Service { s[0].VIP = netip.MustParseAddr("fd00::1"); return s },
			"backend 10.0.3.1:8080 is IPv4 but VIP fd00::1 is IPv6: a service and its backends are of one family"},
		{"no VIP", func(s []Service) []Service { s[0].VIP = netip.Addr{}; return s }, "not an IPv4 or IPv6 address"},
		{"VIP with a zone", func(s []Service) []Service { s[0].VIP = netip.MustParseAddr("fe80::1%eth0"); return s }, "without a zone"},
		{"no ports", func(s []Service) []Service { s[0].Ports = nil; return s }, "no ports"},
		{"port 0", func(s []Service) []Service { s[0].Ports = []PortProto{{0, TCP}}; return s }, "non-zero tcp or udp"},
		{"sctp", func(s []Service) []Service { s[0].Ports = []PortProto{{80, 132}}; return s }, "non-zero tcp or udp"},
		{"dup port", func(s []Service) []Service { s[0].Ports = []PortProto{{80, TCP}, {80, TCP}}; return s }, "twice"},
		{"dup backend", func(s []Service) []Service { s[0].Backends = []Backend{bk(be1, 1), bk(be1, 2)}; return s }, "twice"},
		{"v6 backend", func(s []Service) []Service { s[0].Backends = []Backend{bk(ap("[fd00::2]:80"), 1)}; return s }, "is IPv6 but VIP 10.96.0.10 is IPv4"},
		{"dup service", func(s []Service) []Service { return append(s, s[0]) }, "defined twice"},
		{"dup frontend", func(s []Service) []Service { o := s[0]; o.Name = "other"; return append(s, o) }, "already served"},
	} {
		svcs := tc.mod([]Service{good})
		if err := b.Set(svcs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Set = %v, want error containing %q", tc.name, err, tc.want)
		}
	}
	if err := b.Set([]Service{good}); err != nil {
		t.Errorf("Set(good) = %v", err)
	}
	if _, err := New(Options{TableSize: 100}); err == nil {
		t.Error("New with a non-prime table size succeeded")
	}
}

func TestSetReusesTables(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web(bk(be1, 1), bk(be2, 1)))
	t1 := b.snap.Load().services[svcID{"n", "web"}].tables[0].table
	mustSet(t, b, web(bk(be2, 1), bk(be1, 1))) // same set, other order
	if t2 := b.snap.Load().services[svcID{"n", "web"}].tables[0].table; t2 != t1 {
		t.Error("Set with unchanged backends rebuilt the Maglev table")
	}
	mustSet(t, b, web(bk(be2, 1), bk(be1, 2)))
	s := b.snap.Load().services[svcID{"n", "web"}]
	if s.tables[0].table == t1 {
		t.Error("Set with a changed weight kept the old table")
	}
	if s.backends[0].removed.Load() || s.backends[1].removed.Load() {
		t.Error("a weight change marked a backend removed")
	}
}

// flow drives one TCP connection through the balancer and checks every
// packet's rewrite and checksums.
type flow struct {
	t       *testing.T
	b       *Balancer
	cli     netip.AddrPort
	vipPort netip.AddrPort
	backend netip.AddrPort
}

func (f *flow) out(flags header.TCPFlags, want Verdict) []byte {
	f.t.Helper()
	pkt := tcpPkt(f.cli, f.vipPort, flags, 'x')
	if v := f.b.Outbound(pkt); v != want {
		f.t.Fatalf("Outbound(%v → %v %v) = %v, want %v", f.cli, f.vipPort, flags, v, want)
	}
	if want == NAT {
		checkSums(f.t, pkt)
		src, dst := addrs(pkt)
		if f.backend.IsValid() && dst != f.backend {
			f.t.Fatalf("flow %v moved from backend %v to %v", f.cli, f.backend, dst)
		}
		if src != f.cli {
			f.t.Fatalf("Outbound rewrote the source to %v", src)
		}
		f.backend = dst
	}
	return pkt
}

func (f *flow) in(flags header.TCPFlags, want Verdict) {
	f.t.Helper()
	pkt := tcpPkt(f.backend, f.cli, flags, 'y')
	if v := f.b.Inbound(pkt); v != want {
		f.t.Fatalf("Inbound(%v → %v %v) = %v, want %v", f.backend, f.cli, flags, v, want)
	}
	if want == NAT {
		checkSums(f.t, pkt)
		if src, _ := addrs(pkt); src != f.vipPort {
			f.t.Fatalf("Inbound rewrote the source to %v, want %v", src, f.vipPort)
		}
	}
}

func (f *flow) state() State {
	for _, fi := range f.b.Flows() {
		if fi.Client == f.cli && fi.VIP == f.vipPort {
			return fi.State
		}
	}
	return 0
}

func (f *flow) establish() {
	f.t.Helper()
	f.out(fSYN, NAT)
	f.in(fSYN|fACK, NAT)
	f.out(fACK, NAT)
	if s := f.state(); s != StateEstablished {
		f.t.Fatalf("after the handshake the flow is %v", s)
	}
}

func TestTCPFlow(t *testing.T) {
	clk := newFakeClock()
	b := mustNew(t, Options{Now: clk.now})
	mustSet(t, b, web(bk(be1, 1), bk(be2, 1), bk(be3, 1)))
	f := &flow{t: t, b: b, cli: netip.AddrPortFrom(client, 40000), vipPort: netip.AddrPortFrom(vip, 80)}
	f.out(fSYN, NAT)
	if s := f.state(); s != StateSynSent {
		t.Fatalf("after SYN: %v", s)
	}
	f.in(fSYN|fACK, NAT)
	if s := f.state(); s != StateSynReceived {
		t.Fatalf("after SYN-ACK: %v", s)
	}
	f.out(fACK, NAT)
	clk.advance(time.Second)
	f.in(fACK|fPSH, NAT)
	f.out(fFIN|fACK, NAT)
	f.in(fFIN|fACK, NAT)
	f.out(fACK, NAT)
	if s := f.state(); s != StateClosing {
		t.Fatalf("after both FINs: %v", s)
	}
	fi := b.Flows()
	if len(fi) != 1 || fi[0].Backend != f.backend || fi[0].Service != "web" || fi[0].Proto != TCP || fi[0].Age != time.Second || fi[0].Idle != 0 {
		t.Fatalf("Flows() = %+v", fi)
	}
	// A new connection from the same port starts a new flow.
	f.out(fSYN, NAT)
	if s := f.state(); s != StateSynSent {
		t.Fatalf("SYN reusing a closed tuple: %v", s)
	}
	st := b.Stats()
	if st.NewFlows != 2 || st.Hits != 3 || st.ReplyHits != 3 || st.Flows != 1 {
		t.Errorf("Stats() = %+v", st)
	}
	// Unrelated traffic passes untouched.
	other := tcpPkt(f.cli, ap("10.0.9.9:80"), fSYN)
	if v := b.Outbound(other); v != Pass {
		t.Errorf("Outbound(not a VIP) = %v", v)
	}
	if v := b.Inbound(tcpPkt(ap("10.0.9.9:80"), f.cli, fACK)); v != Pass {
		t.Errorf("Inbound(not a backend) = %v", v)
	}
	if v := b.Inbound(tcpPkt(be1, netip.AddrPortFrom(client, 1), fACK)); v != Pass {
		t.Errorf("Inbound(backend, untracked) = %v", v)
	}
	// A VIP port nobody serves, and a stray RST.
	if v := b.Outbound(tcpPkt(f.cli, netip.AddrPortFrom(vip, 81), fSYN)); v != Reset {
		t.Errorf("Outbound(VIP:81) = %v, want reset", v)
	}
	if v := b.Outbound(tcpPkt(netip.AddrPortFrom(client, 9), f.vipPort, fRST)); v != Drop {
		t.Errorf("Outbound(stray RST) = %v, want drop", v)
	}
}

func TestMidstreamPickup(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web(bk(be1, 1), bk(be2, 1)))
	f := &flow{t: t, b: b, cli: netip.AddrPortFrom(client, 40001), vipPort: netip.AddrPortFrom(vip, 80)}
	f.out(fACK|fPSH, NAT)
	if s := f.state(); s != StateUnreplied {
		t.Fatalf("mid-stream pickup: %v", s)
	}
	f.in(fACK, NAT)
	if s := f.state(); s != StateEstablished {
		t.Fatalf("mid-stream pickup after reply: %v", s)
	}
}

func TestIPOptions(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web(bk(be1, 1)))
	cli := netip.AddrPortFrom(client, 40002)
	vp := netip.AddrPortFrom(vip, 80)
	pkt := ipv4(client, vip, uint8(TCP), 12, tcpSeg(cli, vp, fSYN, 1, 0, []byte("hello")))
	if v := b.Outbound(pkt); v != NAT {
		t.Fatalf("Outbound with IP options = %v", v)
	}
	checkSums(t, pkt)
	if _, dst := addrs(pkt); dst != be1 {
		t.Fatalf("dst = %v, want %v", dst, be1)
	}
	reply := ipv4(be1.Addr(), client, uint8(TCP), 8, tcpSeg(be1, cli, fSYN|fACK, 1, 2, nil))
	if v := b.Inbound(reply); v != NAT {
		t.Fatalf("Inbound with IP options = %v", v)
	}
	checkSums(t, reply)
}

func TestUDP(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web(bk(be1, 1)))
	be53 := netip.AddrPortFrom(be1.Addr(), 8080)
	for _, noSum := range []bool{false, true} {
		cli := netip.AddrPortFrom(client, 5000)
		if noSum {
			cli = netip.AddrPortFrom(client, 5001)
		}
		vp := netip.AddrPortFrom(vip, 53)
		pkt := ipv4(client, vip, uint8(UDP), 0, udpDgram(cli, vp, []byte("query"), noSum))
		if v := b.Outbound(pkt); v != NAT {
			t.Fatalf("Outbound(udp) = %v", v)
		}
		checkSums(t, pkt)
		if _, dst := addrs(pkt); dst != be53 {
			t.Fatalf("udp dst = %v, want %v", dst, be53)
		}
		u := header.UDP(pkt[20:])
		if noSum && u.Checksum() != 0 {
			t.Fatalf("zero UDP checksum became %#x", u.Checksum())
		}
		reply := ipv4(be53.Addr(), client, uint8(UDP), 0, udpDgram(be53, cli, []byte("answer"), noSum))
		if v := b.Inbound(reply); v != NAT {
			t.Fatalf("Inbound(udp) = %v", v)
		}
		checkSums(t, reply)
		if src, _ := addrs(reply); src != vp {
			t.Fatalf("udp reply src = %v, want %v", src, vp)
		}
	}
	for _, fi := range b.Flows() {
		if fi.State != StateReplied {
			t.Errorf("udp flow %v: %v, want REPLIED", fi.Client, fi.State)
		}
	}
}

// TestBackendPortZero: a backend without a port receives the port the
// client connected to, on every port of the service.
func TestBackendPortZero(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web(bk(netip.AddrPortFrom(be1.Addr(), 0), 1)))
	for _, p := range []netip.AddrPort{netip.AddrPortFrom(vip, 80), netip.AddrPortFrom(vip, 53)} {
		var pkt []byte
		if p.Port() == 80 {
			pkt = tcpPkt(netip.AddrPortFrom(client, 1), p, fSYN)
		} else {
			pkt = udpPkt(netip.AddrPortFrom(client, 1), p)
		}
		if v := b.Outbound(pkt); v != NAT {
			t.Fatalf("Outbound(%v) = %v", p, v)
		}
		if _, dst := addrs(pkt); dst != netip.AddrPortFrom(be1.Addr(), p.Port()) {
			t.Errorf("dst = %v, want %v:%d", dst, be1.Addr(), p.Port())
		}
	}
}

func TestICMPErrors(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web(bk(be1, 1)))
	cli := netip.AddrPortFrom(client, 40000)
	vp80, vp53 := netip.AddrPortFrom(vip, 80), netip.AddrPortFrom(vip, 53)
	syn := tcpPkt(cli, vp80, fSYN, []byte("payload")...)
	if b.Outbound(syn) != NAT {
		t.Fatal("SYN not NATed")
	}
	dg := udpPkt(cli, vp53, []byte("q")...)
	if b.Outbound(dg) != NAT {
		t.Fatal("datagram not NATed")
	}
	router := netip.MustParseAddr("10.0.0.1")
	for _, tc := range []struct {
		name    string
		from    netip.Addr
		typ     header.ICMPv4Type
		code    header.ICMPv4Code
		quoted  []byte
		wantSrc netip.Addr
	}{
		{"port unreachable from backend (udp, full)", be1.Addr(), header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, dg, vip},
		{"frag needed from router (tcp, full)", router, header.ICMPv4DstUnreachable, header.ICMPv4FragmentationNeeded, syn, router},
		{"time exceeded (tcp, 8 bytes)", router, header.ICMPv4TimeExceeded, 0, syn[:28], router},
		{"host unreachable from backend (tcp, 18 bytes)", be1.Addr(), header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, syn[:38], vip},
	} {
		t.Run(tc.name, func(t *testing.T) {
			quoted := bytes.Clone(tc.quoted)
			pkt := icmpErr(tc.from, client, tc.typ, tc.code, quoted)
			orig := bytes.Clone(pkt)
			if v := b.Inbound(pkt); v != NAT {
				t.Fatalf("Inbound(ICMP error) = %v", v)
			}
			checkSums(t, pkt)
			src, _ := addrs(pkt)
			if src.Addr() != tc.wantSrc {
				t.Errorf("outer src = %v", src)
			}
			inner := pkt[20+8:]
			if _, dst := addrs(inner); dst.Addr() != vip || (dst.Port() != 80 && dst.Port() != 53) {
				t.Errorf("quoted dst = %v, want the VIP", dst)
			}
			// The client's reply direction: an ICMP error the client sends
			// about a reply from the VIP goes back to the backend.
			_ = orig
		})
	}
	// Outbound: the client reports port unreachable for a reply from VIP:53.
	reply := udpPkt(vp53, cli, []byte("late answer")...)
	pkt := icmpErr(client, vip, header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, reply)
	if v := b.Outbound(pkt); v != NAT {
		t.Fatalf("Outbound(ICMP error to VIP) = %v", v)
	}
	checkSums(t, pkt)
	if _, dst := addrs(pkt); dst.Addr() != be1.Addr() {
		t.Errorf("outbound ICMP dst = %v, want %v", dst, be1.Addr())
	}
	if src, _ := addrs(pkt[28:]); src != be1 {
		t.Errorf("outbound ICMP quoted src = %v, want %v", src, be1)
	}
	// Echo to a VIP is not the balancer's business.
	echo := make(header.ICMPv4, 8)
	echo.SetType(header.ICMPv4Echo)
	if v := b.Outbound(ipv4(client, vip, 1, 0, echo)); v != Pass {
		t.Errorf("Outbound(echo to VIP) = %v, want pass", v)
	}
}

// TestSYNFloodKeepsEstablished fills a table with established flows and
// half-open ones, then floods it with new SYNs from random tuples: every
// established flow keeps its backend, the flood evicts only embryonic
// flows, and once only established flows remain new flows are refused.
func TestSYNFloodKeepsEstablished(t *testing.T) {
	const maxFlows = 2048
	b := mustNew(t, Options{MaxFlows: maxFlows})
	mustSet(t, b, web(bk(be1, 1), bk(be2, 1), bk(be3, 1)))
	vp := netip.AddrPortFrom(vip, 80)
	var est []*flow
	for i := range maxFlows / 2 {
		f := &flow{t: t, b: b, cli: netip.AddrPortFrom(client, uint16(10000+i)), vipPort: vp}
		f.establish()
		est = append(est, f)
	}
	attacker := netip.MustParseAddr("10.0.66.6")
	for i := range 100_000 {
		src := netip.AddrPortFrom(attacker, uint16(i))
		if i%3 == 0 {
			src = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 16), byte(i >> 8)}), uint16(i))
		}
		b.Outbound(tcpPkt(src, vp, fSYN))
	}
	st := b.Stats()
	if st.Flows > maxFlows {
		t.Fatalf("%d flows tracked, limit %d", st.Flows, maxFlows)
	}
	if st.Evictions == 0 {
		t.Errorf("flood evicted nothing: %+v", st)
	}
	for _, f := range est {
		f.out(fACK|fPSH, NAT) // fails if the flow moved
		f.in(fACK, NAT)
	}
	// Fill the rest with established flows; then SYNs are refused.
	for i := 0; b.Stats().Flows < maxFlows || i < maxFlows; i++ {
		f := &flow{t: t, b: b, cli: netip.AddrPortFrom(client2, uint16(10000+i)), vipPort: vp}
		pkt := tcpPkt(f.cli, vp, fSYN)
		if b.Outbound(pkt) != NAT {
			break
		}
		_, f.backend = addrs(pkt)
		f.in(fSYN|fACK, NAT)
		f.out(fACK, NAT)
	}
	before := b.Stats()
	for i := range 1000 {
		b.Outbound(tcpPkt(netip.AddrPortFrom(attacker, uint16(i)), vp, fSYN))
	}
	after := b.Stats()
	if after.Refused-before.Refused == 0 {
		t.Errorf("no SYN refused with a table of established flows: %+v", after)
	}
	for _, f := range est {
		f.out(fACK, NAT)
	}
	t.Logf("flows %d, evictions %d, refused %d", after.Flows, after.Evictions, after.Refused)
}

// TestMemoryBounded: a long flood of new tuples does not grow the heap
// beyond what a full table needs. (The maps grow once more than the flow
// count alone needs, to absorb deleted slots, and then stay put.)
func TestMemoryBounded(t *testing.T) {
	const maxFlows = 8192
	b := mustNew(t, Options{MaxFlows: maxFlows})
	mustSet(t, b, web(bk(be1, 1), bk(be2, 1)))
	pkt := udpPkt(netip.AddrPortFrom(client, 1), netip.AddrPortFrom(vip, 53), 'x')
	buf := make([]byte, len(pkt))
	i := 0
	flood := func(n int) {
		for range n {
			i++
			copy(buf, pkt)
			buf[13], buf[14], buf[15] = byte(i>>16), byte(i>>8), byte(i) // client address
			b.Outbound(buf)
		}
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := heap()
	flood(12 * maxFlows)
	full := heap()
	flood(50 * maxFlows)
	after := heap()
	st := b.Stats()
	if st.Flows > maxFlows {
		t.Fatalf("%d flows, limit %d", st.Flows, maxFlows)
	}
	perFlow := float64(after-base) / maxFlows
	t.Logf("heap for a full table of %d flows: %d B (%.0f B/flow); after %d more new flows: %d B", maxFlows, full-base, float64(full-base)/maxFlows, 50*maxFlows, after-base)
	if after > full+full/10 {
		t.Errorf("heap grew from %d to %d B under a flood of new flows", full, after)
	}
	if perFlow > 1024 {
		t.Errorf("%.0f B per flow, want ≤ 1024", perFlow)
	}
}

func TestDistribution(t *testing.T) {
	for _, n := range []int{600, 60000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			b := mustNew(t, Options{MaxFlows: 2 * n})
			mustSet(t, b, web(bk(be1, 1), bk(be2, 2), bk(be3, 3)))
			count := map[netip.AddrPort]int{}
			vp := netip.AddrPortFrom(vip, 80)
			for i := range n {
				cli := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i / 200), byte(1 + i%200)}), uint16(30000+i))
				pkt := tcpPkt(cli, vp, fSYN)
				if v := b.Outbound(pkt); v != NAT {
					t.Fatalf("Outbound = %v", v)
				}
				_, dst := addrs(pkt)
				count[dst]++
			}
			sel := map[string]uint64{}
			for _, be := range b.Stats().Services[0].Backends {
				sel[be.Addr.String()] = be.Selections
			}
			for i, be := range []netip.AddrPort{be1, be2, be3} {
				want := float64(n) * float64(i+1) / 6
				got := count[be]
				// 600 flows: each backend's count within ±10% of all flows of
				// its weighted share (a random hash cannot do better than
				// ±2σ ≈ ±18 here); 60000 flows: within ±10% of the share.
				tol := 0.10 * float64(n)
				if n > 600 {
					tol = 0.10 * want
				}
				t.Logf("%v weight %d: %d flows, want %.0f (%.1f%%)", be, i+1, got, want, 100*(float64(got)-want)/want)
				if math.Abs(float64(got)-want) > tol {
					t.Errorf("%v weight %d got %d of %d flows, want %.0f ± %.0f", be, i+1, got, n, want, tol)
				}
				if sel[be.String()] != uint64(got) {
					t.Errorf("Stats selections for %v = %d, want %d", be, sel[be.String()], got)
				}
			}
		})
	}
}

// A client that is itself a backend of the service (an endpoint asking
// the VIP it serves) is never balanced to itself: its reply would come
// from its own address. Every one of its flows goes to another backend,
// and the other clients still reach it.
func TestHairpinClientNotItsOwnBackend(t *testing.T) {
	b := mustNew(t, Options{MaxFlows: 10000})
	mustSet(t, b, web(bk(be1, 1), bk(be2, 1), bk(be3, 1)))
	vp := netip.AddrPortFrom(vip, 80)
	count := map[netip.AddrPort]int{}
	for i := range 3000 {
		cli := netip.AddrPortFrom(be1.Addr(), uint16(20000+i))
		pkt := tcpPkt(cli, vp, fSYN)
		if v := b.Outbound(pkt); v != NAT {
			t.Fatalf("Outbound = %v", v)
		}
		_, dst := addrs(pkt)
		count[dst]++
	}
	if count[be1] != 0 || count[be2] < 1000 || count[be3] < 1000 {
		t.Errorf("flows of backend %v as a client: %v; want none to itself and about half to each other", be1.Addr(), count)
	}
	other := netip.AddrPortFrom(netip.MustParseAddr("10.0.9.9"), 40000)
	seen := map[netip.AddrPort]bool{}
	for i := range 300 {
		pkt := tcpPkt(netip.AddrPortFrom(other.Addr(), uint16(40000+i)), vp, fSYN)
		b.Outbound(pkt)
		_, dst := addrs(pkt)
		seen[dst] = true
	}
	if !seen[be1] {
		t.Errorf("another client never reached %v", be1)
	}
	solo := mustNew(t, Options{})
	mustSet(t, solo, web(bk(be1, 1)))
	pkt := tcpPkt(netip.AddrPortFrom(be1.Addr(), 20000), vp, fSYN)
	if v := solo.Outbound(pkt); v != NAT { // nothing else to pick: as before
		t.Errorf("the only backend as a client: %v, want NAT", v)
	}
}

func TestDrain(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web(bk(be1, 1), bk(be2, 1)))
	vp := netip.AddrPortFrom(vip, 80)
	var on1 []*flow
	for i := 0; len(on1) < 10; i++ {
		f := &flow{t: t, b: b, cli: netip.AddrPortFrom(client, uint16(20000+i)), vipPort: vp}
		f.establish()
		if f.backend == be1 {
			on1 = append(on1, f)
		}
	}
	mustSet(t, b, web(bk(be1, 0), bk(be2, 1)))
	for _, f := range on1 {
		f.out(fACK|fPSH, NAT)
		f.in(fACK, NAT)
	}
	for i := range 500 {
		f := &flow{t: t, b: b, cli: netip.AddrPortFrom(client2, uint16(20000+i)), vipPort: vp}
		f.out(fSYN, NAT)
		if f.backend == be1 {
			t.Fatalf("new flow %v went to the draining backend", f.cli)
		}
	}
	// All drained: new flows are reset, old ones continue.
	mustSet(t, b, web(bk(be1, 0), bk(be2, 0)))
	if v := b.Outbound(tcpPkt(netip.AddrPortFrom(client2, 1), vp, fSYN)); v != Reset {
		t.Errorf("new flow with every backend drained = %v, want reset", v)
	}
	on1[0].out(fACK, NAT)
	if st := b.Stats(); st.NoBackend != 1 {
		t.Errorf("NoBackend = %d, want 1", st.NoBackend)
	}
}

func TestRemoveBackend(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web(bk(be1, 1), bk(be2, 1), bk(be3, 1)))
	vp := netip.AddrPortFrom(vip, 80)
	var flows []*flow
	for i := range 60 {
		f := &flow{t: t, b: b, cli: netip.AddrPortFrom(client, uint16(20000+i)), vipPort: vp}
		f.establish()
		flows = append(flows, f)
	}
	udpCli := netip.AddrPortFrom(client, 7000)
	var udpOn1 bool
	for p := uint16(7000); !udpOn1; p++ {
		udpCli = netip.AddrPortFrom(client, p)
		pkt := udpPkt(udpCli, netip.AddrPortFrom(vip, 53))
		b.Outbound(pkt)
		_, dst := addrs(pkt)
		udpOn1 = dst == be1
	}
	mustSet(t, b, web(bk(be2, 1), bk(be3, 1)))
	resets := 0
	for _, f := range flows {
		pkt := tcpPkt(f.cli, vp, fACK|fPSH, 'x')
		orig := bytes.Clone(pkt)
		v := b.Outbound(pkt)
		if f.backend == be1 {
			resets++
			if v != Reset {
				t.Fatalf("flow of the removed backend: %v, want reset", v)
			}
			if !bytes.Equal(pkt, orig) {
				t.Fatal("Outbound modified a packet it answered with reset")
			}
			out := make([]byte, 64)
			n, err := BuildTCPReset(pkt, out)
			if err != nil {
				t.Fatal(err)
			}
			checkSums(t, out[:n])
			if s, d := addrs(out[:n]); s != vp || d != f.cli {
				t.Errorf("RST %v → %v, want %v → %v", s, d, vp, f.cli)
			}
			// Later segments of the dead connection are reset too; a new
			// connection from the same port goes to a live backend.
			if v := b.Outbound(tcpPkt(f.cli, vp, fACK)); v != Reset {
				t.Errorf("second segment: %v, want reset", v)
			}
			g := &flow{t: t, b: b, cli: f.cli, vipPort: vp}
			g.out(fSYN, NAT)
			if g.backend == be1 {
				t.Error("new connection went to the removed backend")
			}
			continue
		}
		if v != NAT {
			t.Fatalf("flow of a remaining backend: %v", v)
		}
		if _, dst := addrs(pkt); dst != f.backend {
			t.Fatalf("flow moved from %v to %v", f.backend, dst)
		}
	}
	if resets == 0 {
		t.Fatal("no flow was on the removed backend")
	}
	// UDP: one reset, then the next datagram picks a live backend.
	pkt := udpPkt(udpCli, netip.AddrPortFrom(vip, 53), 'q')
	if v := b.Outbound(pkt); v != Reset {
		t.Fatalf("udp flow of the removed backend: %v, want reset", v)
	}
	out := make([]byte, 576)
	n, err := BuildICMPPortUnreachable(pkt, out)
	if err != nil {
		t.Fatal(err)
	}
	checkSums(t, out[:n])
	if v := b.Outbound(pkt); v != NAT {
		t.Fatalf("next udp datagram: %v, want nat", v)
	}
	if st := b.Stats(); st.Resets != uint64(2*resets+1) {
		t.Errorf("Resets = %d, want %d", st.Resets, 2*resets+1)
	}
	// Removing the whole service resets its flows too.
	mustSet(t, b, nil)
	f := flows[0]
	if f.backend == be1 {
		f = flows[1]
	}
	if v := b.Outbound(tcpPkt(f.cli, vp, fACK)); v != Reset {
		t.Errorf("flow of a removed service: %v, want reset", v)
	}
}

func TestExpiry(t *testing.T) {
	clk := newFakeClock()
	b := mustNew(t, Options{Now: clk.now})
	mustSet(t, b, web(bk(be1, 1)))
	cli := netip.AddrPortFrom(client, 9000)
	b.Outbound(udpPkt(cli, netip.AddrPortFrom(vip, 53)))
	f := &flow{t: t, b: b, cli: netip.AddrPortFrom(client, 9001), vipPort: netip.AddrPortFrom(vip, 80)}
	f.establish()
	syn := &flow{t: t, b: b, cli: netip.AddrPortFrom(client, 9002), vipPort: netip.AddrPortFrom(vip, 80)}
	syn.out(fSYN, NAT)
	clk.advance(DefaultUDPTimeout + time.Second)
	b.Sweep()
	if fl := b.Flows(); len(fl) != 1 || fl[0].State != StateEstablished {
		t.Fatalf("after 31s: %+v, want only the established flow", fl)
	}
	f.out(fACK, NAT)
	clk.advance(DefaultEstablishedTimeout - time.Second)
	b.Sweep()
	if len(b.Flows()) != 1 {
		t.Fatal("established flow expired before its idle timeout")
	}
	clk.advance(2 * time.Second)
	// Expired but not swept: a reply no longer matches.
	f.in(fACK, Pass)
	if st := b.Stats(); st.Flows != 0 || st.Expired != 3 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestStartClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	clk := newFakeClock()
	b := mustNew(t, Options{Now: clk.now, SweepInterval: time.Millisecond})
	mustSet(t, b, web(bk(be1, 1)))
	b.Outbound(udpPkt(netip.AddrPortFrom(client, 1), netip.AddrPortFrom(vip, 53)))
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	clk.advance(time.Hour)
	testutil.EventuallyEqual(t, 10*time.Second, "the sweeper to remove the expired flow", func() int { return b.Stats().Flows }, 0)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestHitAllocs(t *testing.T) {
	b := mustNew(t, Options{})
	mustSet(t, b, web(bk(be1, 1), bk(be2, 1)))
	f := &flow{t: t, b: b, cli: netip.AddrPortFrom(client, 40000), vipPort: netip.AddrPortFrom(vip, 80)}
	f.establish()
	out := tcpPkt(f.cli, f.vipPort, fACK|fPSH, make([]byte, 100)...)
	in := tcpPkt(f.backend, f.cli, fACK|fPSH, make([]byte, 100)...)
	outBuf, inBuf := make([]byte, len(out)), make([]byte, len(in))
	if a := testing.AllocsPerRun(1000, func() {
		copy(outBuf, out)
		if b.Outbound(outBuf) != NAT {
			panic("not NATed")
		}
		copy(inBuf, in)
		if b.Inbound(inBuf) != NAT {
			panic("not NATed")
		}
	}); a != 0 {
		t.Errorf("conntrack hit + NAT allocates %v times per packet pair, want 0", a)
	}
	other := tcpPkt(f.cli, ap("10.9.9.9:80"), fACK)
	if a := testing.AllocsPerRun(1000, func() { b.Outbound(other); b.Inbound(other) }); a != 0 {
		t.Errorf("Pass path allocates %v times, want 0", a)
	}
}

func TestBuildTCPReset(t *testing.T) {
	cli, vp := netip.AddrPortFrom(client, 40000), netip.AddrPortFrom(vip, 80)
	for _, tc := range []struct {
		name             string
		flags            header.TCPFlags
		payload          int
		wantSeq, wantAck uint32
		wantFlags        header.TCPFlags
	}{
		{"SYN", fSYN, 0, 0, 1001, fRST | fACK},
		{"SYN with data", fSYN, 10, 0, 1011, fRST | fACK},
		{"ACK", fACK, 5, 2000, 0, fRST},
		{"FIN without ACK", fFIN, 3, 0, 1004, fRST | fACK},
	} {
		pkt := ipv4(client, vip, uint8(TCP), 0, tcpSeg(cli, vp, tc.flags, 1000, 2000, make([]byte, tc.payload)))
		out := make([]byte, 40)
		n, err := BuildTCPReset(pkt, out)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		checkSums(t, out[:n])
		r := header.TCP(out[20:n])
		if r.SequenceNumber() != tc.wantSeq || r.AckNumber() != tc.wantAck || r.Flags() != tc.wantFlags {
			t.Errorf("%s: RST seq %d ack %d flags %v, want %d %d %v", tc.name, r.SequenceNumber(), r.AckNumber(), r.Flags(), tc.wantSeq, tc.wantAck, tc.wantFlags)
		}
		if s, d := addrs(out[:n]); s != vp || d != cli {
			t.Errorf("%s: RST %v → %v", tc.name, s, d)
		}
	}
	if _, err := BuildTCPReset(tcpPkt(cli, vp, fRST), make([]byte, 40)); err == nil {
		t.Error("BuildTCPReset answered a RST")
	}
	if _, err := BuildTCPReset(tcpPkt(cli, vp, fSYN), make([]byte, 39)); err == nil {
		t.Error("BuildTCPReset wrote into a short buffer")
	}
	if _, err := BuildTCPReset(udpPkt(cli, vp), make([]byte, 40)); err == nil {
		t.Error("BuildTCPReset accepted UDP")
	}
}

func TestBuildICMPPortUnreachable(t *testing.T) {
	cli, vp := netip.AddrPortFrom(client, 5353), netip.AddrPortFrom(vip, 53)
	for _, size := range []int{0, 100, 1400} {
		pkt := udpPkt(cli, vp, make([]byte, size)...)
		out := make([]byte, 576)
		n, err := BuildICMPPortUnreachable(pkt, out)
		if err != nil {
			t.Fatal(err)
		}
		checkSums(t, out[:n])
		if n > 576 || n < 28+28 {
			t.Errorf("message of %d bytes", n)
		}
		icmp := header.ICMPv4(out[20:n])
		if icmp.Type() != header.ICMPv4DstUnreachable || icmp.Code() != header.ICMPv4PortUnreachable {
			t.Errorf("type %d code %d", icmp.Type(), icmp.Code())
		}
		if !bytes.Equal(icmp[8:], pkt[:min(len(pkt), packet.MaxICMPQuote)]) {
			t.Error("quote differs from the packet")
		}
		if s, d := addrs(out[:n]); s.Addr() != vip || d.Addr() != client {
			t.Errorf("ICMP %v → %v", s, d)
		}
	}
	if _, err := BuildICMPPortUnreachable(udpPkt(netip.AddrPortFrom(netip.IPv4Unspecified(), 68), vp), make([]byte, 576)); err == nil {
		t.Error("answered 0.0.0.0")
	}
}

// TestKeyedHash: each Balancer has its own hash key, so a tuple's shard and
// backend cannot be predicted from outside.
func TestKeyedHash(t *testing.T) {
	a, b := mustNew(t, Options{}), mustNew(t, Options{})
	k := key{Src: client.As16(), Dst: vip.As16(), SPort: 1, DPort: 80, Proto: 6}
	if a.flowHash(&k) == b.flowHash(&k) {
		t.Error("two Balancers hash a tuple the same way")
	}
}

// TestConcurrent runs the outbound and inbound paths, Set, Flows, Stats and
// the sweeper at once; run it with -race.
func TestConcurrent(t *testing.T) {
	defer goleak.VerifyNone(t)
	b := mustNew(t, Options{MaxFlows: 4096, SweepInterval: time.Millisecond})
	mustSet(t, b, web(bk(be1, 1), bk(be2, 1)))
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	vp := netip.AddrPortFrom(vip, 80)
	done := make(chan struct{})
	for w := range 2 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 3000 {
				cli := netip.AddrPortFrom(client, uint16(w*10000+i%500))
				pkt := tcpPkt(cli, vp, fSYN)
				if b.Outbound(pkt) != NAT {
					continue
				}
				_, be := addrs(pkt)
				b.Inbound(tcpPkt(be, cli, fSYN|fACK))
			}
		}()
	}
	go func() {
		defer func() { done <- struct{}{} }()
		for i := range 200 {
			if i%2 == 0 {
				b.Set(web(bk(be1, 1), bk(be2, 1)))
			} else {
				b.Set(web(bk(be2, 1), bk(be3, 2)))
			}
			b.Flows()
			b.Stats()
		}
	}()
	for range 3 {
		<-done
	}
}

// TestPortTables: each port of a service has its own Maglev table; a
// flow to VIP:PORT only ever reaches a backend that serves PORT (issue 9,
// item 4: a service perf with 5201/tcp and 8002/tcp sent flows to the
// backends of both ports).
func TestPortTables(t *testing.T) {
	b := mustNew(t, Options{})
	p5201, p8002, p53t, p53u := PortProto{5201, TCP}, PortProto{8002, TCP}, PortProto{53, TCP}, PortProto{53, UDP}
	a5201, a8002 := ap("10.0.3.1:5201"), ap("10.0.3.2:8002")
	b5201, dns := ap("10.0.3.3:5201"), ap("10.0.3.4:53")
	perf := Service{Network: "n", Name: "perf", VIP: vip, Ports: []PortProto{p5201, p8002, p53t, p53u}, Backends: []Backend{
		{Addr: a5201, Ports: []PortProto{p5201}, Weight: 1},
		{Addr: b5201, Ports: []PortProto{p5201}, Weight: 1},
		{Addr: a8002, Ports: []PortProto{p8002}, Weight: 1},
		{Addr: dns, Ports: []PortProto{p53u, p53t}, Weight: 1},
	}}
	mustSet(t, b, []Service{perf})
	next := uint16(10000) // a new client port for every flow
	count := func(port PortProto) map[netip.AddrPort]int {
		got := map[netip.AddrPort]int{}
		for range 400 {
			next++
			cli := netip.AddrPortFrom(client, next)
			vp := netip.AddrPortFrom(vip, port.Port)
			pkt := tcpPkt(cli, vp, fSYN)
			if port.Proto == UDP {
				pkt = udpPkt(cli, vp, 'q')
			}
			if v := b.Outbound(pkt); v != NAT {
				t.Fatalf("Outbound(%v → %v) = %v", cli, vp, v)
			}
			checkSums(t, pkt)
			_, dst := addrs(pkt)
			got[dst]++
		}
		return got
	}
	for _, tc := range []struct {
		port PortProto
		want []netip.AddrPort
	}{
		{p8002, []netip.AddrPort{a8002}},
		{p5201, []netip.AddrPort{a5201, b5201}},
		{p53t, []netip.AddrPort{dns}},
		{p53u, []netip.AddrPort{dns}},
	} {
		got := count(tc.port)
		for dst, n := range got {
			if !slices.Contains(tc.want, dst) {
				t.Errorf("%d of 400 flows to VIP %v went to %v, a backend of another port", n, tc.port, dst)
			}
		}
		for _, w := range tc.want {
			if got[w] == 0 {
				t.Errorf("no flow to VIP %v reached its backend %v: %v", tc.port, w, got)
			}
		}
	}
	// Ports with the same backends share one table.
	if ts := b.snap.Load().services[svcID{"n", "perf"}].tables; ts[2].table != ts[3].table || ts[0].table == ts[1].table {
		t.Error("53/tcp and 53/udp (the same backends) have two tables, or 5201 and 8002 share one")
	}
	// A backend without Ports serves every port (on its own port).
	all := perf
	all.Backends = []Backend{{Addr: a8002, Weight: 1}}
	mustSet(t, b, []Service{all})
	if got := count(PortProto{5201, TCP}); got[a8002] != 400 {
		t.Errorf("a backend for every port: %v", got)
	}
	// A port the service does not have is refused.
	bad := perf
	bad.Backends = []Backend{{Addr: a8002, Ports: []PortProto{{9, TCP}}, Weight: 1}}
	if err := b.Set([]Service{bad}); err == nil || !strings.Contains(err.Error(), "serves port 9/tcp, which the service does not have") {
		t.Errorf("Set(backend of a port the service lacks) = %v", err)
	}
	// Stats list each backend once, with its ports.
	mustSet(t, b, []Service{perf})
	for _, bs := range b.Stats().Services[0].Backends {
		if bs.Addr == dns && !slices.Equal(bs.Ports, []PortProto{p53t, p53u}) {
			t.Errorf("Stats: backend %v serves %v, want 53/tcp 53/udp", bs.Addr, bs.Ports)
		}
	}
}

// TestSetLeavesOutBadServiceAlone: Set publishes one snapshot. A service
// that conflicts with an earlier one (the same VIP port) is left out
// alone, and named in a *SetError; the flows of every other service,
// established before, survive repeated Sets with 0 resets (issue 9, item
// 3: the per-service fallback published partial snapshots and reset
// everyone else's flows on every sync).
func TestSetLeavesOutBadServiceAlone(t *testing.T) {
	b := mustNew(t, Options{})
	vip2 := netip.MustParseAddr("10.96.0.11")
	first := Service{Network: "n", Name: "first", VIP: vip, Ports: []PortProto{{80, TCP}}, Backends: []Backend{bk(be1, 1)}}
	clash := Service{Network: "n", Name: "clash", VIP: vip, Ports: []PortProto{{80, TCP}}, Backends: []Backend{bk(be2, 1)}}
	third := Service{Network: "n", Name: "third", VIP: vip2, Ports: []PortProto{{80, TCP}}, Backends: []Backend{bk(be3, 1)}}
	invalid := Service{Network: "n", Name: "invalid", VIP: netip.MustParseAddr("10.96.0.12")} // no ports
	svcs := []Service{first, clash, invalid, third}
	set := func() {
		t.Helper()
		err := b.Set(svcs)
		var serr *SetError
		if !errors.As(err, &serr) || len(serr.Rejected) != 2 || serr.Rejected[0].Name != "clash" || serr.Rejected[1].Name != "invalid" ||
			!strings.Contains(err.Error(), `lb: service "n/clash": 10.96.0.10 80/tcp is already served by "n/first"`) {
			t.Fatalf("Set = %v, want clash and invalid left out", err)
		}
	}
	set()
	f1 := &flow{t: t, b: b, cli: netip.AddrPortFrom(client, 41000), vipPort: netip.AddrPortFrom(vip, 80)}
	f3 := &flow{t: t, b: b, cli: netip.AddrPortFrom(client, 41001), vipPort: netip.AddrPortFrom(vip2, 80)}
	f1.establish()
	f3.establish()
	if f1.backend != be1 || f3.backend != be3 {
		t.Fatalf("flows went to %v and %v, want %v and %v", f1.backend, f3.backend, be1, be3)
	}
	for range 10 {
		set()
		f1.out(fACK|fPSH, NAT)
		f1.in(fACK, NAT)
		f3.out(fACK|fPSH, NAT)
		f3.in(fACK, NAT)
	}
	st := b.Stats()
	if st.Resets != 0 || len(st.Services) != 2 {
		t.Errorf("after 10 Sets: %d resets, services %+v; want 0 resets and first and third", st.Resets, st.Services)
	}
}

// TestRetiredVIPForgottenWithoutSet: a removed service's VIP is answered
// with Reset for maxTimeout, then passed again, also when no Set follows
// (Set is called on changes only): the sweep forgets it.
func TestRetiredVIPForgottenWithoutSet(t *testing.T) {
	clk := newFakeClock()
	b := mustNew(t, Options{Now: clk.now})
	mustSet(t, b, web(bk(be1, 1)))
	mustSet(t, b, nil)
	cli := netip.AddrPortFrom(client, 42000)
	if v := b.Outbound(tcpPkt(cli, netip.AddrPortFrom(vip, 80), fSYN)); v != Reset {
		t.Fatalf("Outbound(removed VIP) = %v, want reset", v)
	}
	clk.advance(time.Duration(b.maxTimeout) + time.Second)
	b.Sweep()
	if v := b.Outbound(tcpPkt(cli, netip.AddrPortFrom(vip, 80), fSYN)); v != Pass {
		t.Errorf("Outbound(VIP removed long ago) = %v, want pass", v)
	}
	if v := b.Inbound(tcpPkt(be1, cli, fACK)); v != Pass {
		t.Errorf("Inbound(from a backend removed long ago) = %v, want pass", v)
	}
}

// FuzzSetPorts: any service configuration either is refused by Set or
// balances every flow to VIP:PORT to a backend that serves PORT, on the
// backend's port (the client's, for port 0); Set never panics.
func FuzzSetPorts(f *testing.F) {
	f.Add([]byte{2, 0x14, 0x51, 0x1f, 0x42, 2, 1, 0x14, 0x51, 0, 2, 0x1f, 0x42, 1})
	f.Add([]byte{1, 0, 53, 0x80, 0, 53, 3, 0, 0, 0})
	f.Add([]byte{0x82, 0x14, 0x51, 0x1f, 0x42, 2, 1, 0x14, 0x51, 0, 2, 0x1f, 0x42, 1}) // IPv6
	f.Fuzz(func(t *testing.T, data []byte) {
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			c := data[0]
			data = data[1:]
			return c
		}
		six := len(data) > 0 && data[0]&0x80 != 0 // the family of the whole service
		svcVIP, cliAddr := vip, client
		if six {
			svcVIP, cliAddr = vip6, client6
		}
		svc := Service{Network: "n", Name: "s", VIP: svcVIP}
		for range int(next()%4) + 1 {
			hi, lo := next(), next()
			proto := TCP
			if hi&0x80 != 0 {
				proto = UDP
			}
			svc.Ports = append(svc.Ports, PortProto{Port: uint16(hi&0x7f)<<8 | uint16(lo), Proto: proto})
		}
		for k := range int(next() % 6) {
			port := uint16(next())<<8 | uint16(next())
			beAddr := netip.AddrFrom4([4]byte{10, 0, 3, byte(k + 1)})
			if six {
				beAddr = netip.AddrFrom16([16]byte{0xfd, 0, 0, 3, 15: byte(k + 1)})
			}
			be := Backend{Addr: netip.AddrPortFrom(beAddr, port), Weight: uint32(next() % 3)}
			mask := next()
			for i, p := range svc.Ports {
				if mask&(1<<i) != 0 {
					be.Ports = append(be.Ports, p)
				}
			}
			svc.Backends = append(svc.Backends, be)
		}
		b := mustNew(t, Options{TableSize: 251})
		if err := b.Set([]Service{svc}); err != nil {
			return
		}
		for i, p := range svc.Ports {
			for c := range 8 {
				cli := netip.AddrPortFrom(cliAddr, uint16(1000+i*8+c))
				vp := netip.AddrPortFrom(svcVIP, p.Port)
				pkt := tcpPkt(cli, vp, fSYN)
				if p.Proto == UDP {
					pkt = udpPkt(cli, vp, 'q')
				}
				if b.Outbound(pkt) != NAT {
					continue
				}
				_, dst := addrs(pkt)
				ok := false
				for _, be := range svc.Backends {
					port := be.Addr.Port()
					if port == 0 {
						port = p.Port
					}
					if be.Weight > 0 && dst == netip.AddrPortFrom(be.Addr.Addr(), port) && (len(be.Ports) == 0 || slices.Contains(be.Ports, p)) {
						ok = true
					}
				}
				if !ok {
					t.Fatalf("flow to VIP %v went to %v, which does not serve it (service %+v)", p, dst, svc)
				}
			}
		}
	})
}
