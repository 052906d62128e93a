package stack_test

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/stack"
)

// echoRequest6 builds an ICMPv6 echo request, behind ext (extension
// headers, whose first byte of each is set to chain them) if any.
func echoRequest6(src, dst netip.Addr, seq uint16, ext ...[]byte) []byte {
	const payload = 56
	icmpLen := header.ICMPv6EchoMinimumSize + payload
	extLen := 0
	for _, e := range ext {
		extLen += len(e)
	}
	pkt := make([]byte, header.IPv6MinimumSize+extLen+icmpLen)
	next := uint8(header.ICMPv6ProtocolNumber)
	first := next
	if len(ext) > 0 {
		first = uint8(header.IPv6DestinationOptionsExtHdrIdentifier)
	}
	ip := header.IPv6(pkt)
	ip.Encode(&header.IPv6Fields{
		PayloadLength:     uint16(extLen + icmpLen),
		TransportProtocol: 0,
		HopLimit:          64,
		SrcAddr:           tcpipAddr(src),
		DstAddr:           tcpipAddr(dst),
	})
	pkt[6] = first
	off := header.IPv6MinimumSize
	for i, e := range ext {
		copy(pkt[off:], e)
		pkt[off] = uint8(header.IPv6DestinationOptionsExtHdrIdentifier)
		if i == len(ext)-1 {
			pkt[off] = next
		}
		off += len(e)
	}
	icmp := header.ICMPv6(pkt[off:])
	icmp.SetType(header.ICMPv6EchoRequest)
	icmp.SetIdent(0x4242)
	icmp.SetSequence(seq)
	for i := range payload {
		icmp[header.ICMPv6EchoMinimumSize+i] = byte(i)
	}
	icmp.SetChecksum(0)
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: tcpipAddr(src), Dst: tcpipAddr(dst)}))
	return pkt
}

// destOpts is an empty destination options header (PadN to 8 bytes).
func destOpts() []byte { return []byte{0, 0, 1, 4, 0, 0, 0, 0} }

// readEchoReply6 reads from ns until an ICMPv6 echo reply with seq from
// src to dst comes out, or the deadline passes (false).
func readEchoReply6(t *testing.T, ns *stack.Netstack, src, dst netip.Addr, seq uint16) bool {
	t.Helper()
	got := make(chan bool, 1)
	go func() {
		bufs := [][]byte{make([]byte, stack.Headroom+2048)}
		sizes := []int{0}
		for {
			if _, err := ns.Read(bufs, sizes, stack.Headroom); err != nil {
				got <- false
				return
			}
			pkt := bufs[0][stack.Headroom : stack.Headroom+sizes[0]]
			if header.IPVersion(pkt) != 6 || !header.IPv6(pkt).IsValid(len(pkt)) {
				continue
			}
			ip := header.IPv6(pkt)
			icmp := header.ICMPv6(ip.Payload())
			if ip.TransportProtocol() == header.ICMPv6ProtocolNumber && ip.SourceAddress() == tcpipAddr(src) && ip.DestinationAddress() == tcpipAddr(dst) &&
				len(icmp) >= header.ICMPv6EchoMinimumSize && icmp.Type() == header.ICMPv6EchoReply && icmp.Sequence() == seq {
				ok := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: ip.SourceAddress(), Dst: ip.DestinationAddress()}) == icmp.Checksum()
				got <- ok
				return
			}
		}
	}()
	select {
	case ok := <-got:
		return ok
	case <-time.After(5 * time.Second):
		ns.Close()
		<-got
		return false
	}
}

// TestNetstackICMPv6Echo: the netstack answers ping6 to its address, as
// soon as the address is set (no DAD), also behind an extension header,
// and drops a request whose checksum is wrong.
func TestNetstackICMPv6Echo(t *testing.T) {
	ns, err := stack.NewNetstack(stack.NetstackOptions{AddressesLater: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := ns.SetAddresses([]netip.Prefix{addrA, addrA6}); err != nil {
		t.Fatal(err)
	}
	if v4, v6 := ns.Families(); !v4 || !v6 {
		t.Errorf("Families() = %v, %v; want true, true", v4, v6)
	}
	peer := addrB6.Addr()
	write := func(pkt []byte) {
		t.Helper()
		if _, err := ns.Write([][]byte{append(make([]byte, stack.Headroom), pkt...)}, stack.Headroom); err != nil {
			t.Fatal(err)
		}
	}
	bad := echoRequest6(peer, addrA6.Addr(), 1)
	bad[len(bad)-1] ^= 0xff
	before := ns.Stats()
	write(bad)
	if got := ns.Stats().DropChecksum - before.DropChecksum; got != 1 {
		t.Errorf("an echo request with a wrong checksum: DropChecksum grew by %d, want 1", got)
	}
	write(echoRequest6(peer, addrA6.Addr(), 2))
	if !readEchoReply6(t, ns, addrA6.Addr(), peer, 2) {
		t.Fatal("no echo reply (with a right checksum) from the netstack's IPv6 address")
	}
	write(echoRequest6(peer, addrA6.Addr(), 3, destOpts(), destOpts()))
	if !readEchoReply6(t, ns, addrA6.Addr(), peer, 3) {
		t.Fatal("no echo reply to a request behind two destination options headers")
	}
	// Nine extension headers: more than are walked; dropped.
	nine := make([][]byte, 9)
	for i := range nine {
		nine[i] = destOpts()
	}
	before = ns.Stats()
	write(echoRequest6(peer, addrA6.Addr(), 4, nine...))
	if got := ns.Stats().DropChecksum - before.DropChecksum; got != 1 {
		t.Errorf("nine extension headers: DropChecksum grew by %d, want 1", got)
	}
}

// TestNetstackDualStack: Listen and ListenPacket with an empty host and
// "tcp"/"udp" take both families on a dual-stack netstack, "tcp6" takes
// IPv6 only, and "[addr]:port" is parsed.
func TestNetstackDualStack(t *testing.T) {
	p := newPair(t, 1450, nil)
	ln, err := p.b.Listen("tcp", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ln6, err := p.b.Listen("tcp6", "[::]:8081")
	if err != nil {
		t.Fatal(err)
	}
	defer ln6.Close()
	accept := func(ln net.Listener) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, c.RemoteAddr().String()+" "+c.LocalAddr().String())
			}()
		}
	}
	go accept(ln)
	go accept(ln6)
	for _, tc := range []struct {
		network, addr, want string
		err                 error
	}{
		{"tcp", "10.0.0.2:8080", "10.0.0.1:", nil},
		{"tcp", "[fd00::2]:8080", "[fd00::1]:", nil},
		{"tcp6", "[fd00::2]:8081", "[fd00::1]:", nil},
		{"tcp4", "10.0.0.2:8081", "", syscall.ECONNREFUSED},
	} {
		c, err := p.a.DialContext(ctxT(t, 5*time.Second), tc.network, tc.addr)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("dial %s %s = %v, want %v", tc.network, tc.addr, err, tc.err)
			}
			if c != nil {
				c.Close()
			}
			continue
		}
		if err != nil {
			t.Errorf("dial %s %s: %v", tc.network, tc.addr, err)
			continue
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if !strings.HasPrefix(string(b), tc.want) || !strings.HasSuffix(string(b), " "+tc.addr) {
			t.Errorf("dial %s %s: the server saw %q, want a peer %s… on %s", tc.network, tc.addr, b, tc.want, tc.addr)
		}
	}

	// One UDP socket for both families.
	pc, err := p.a.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, dst := range []string{"10.0.0.2:7000", "[fd00::2]:7000"} {
		srv, err := p.b.ListenPacket("udp", dst)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.WriteTo([]byte("hi "+dst), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst))); err != nil {
			t.Errorf("WriteTo %s: %v", dst, err)
		}
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, from, err := srv.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "hi "+dst {
			t.Errorf("%s got %q from %v: %v", dst, buf[:n], from, err)
		} else if _, err := srv.WriteTo([]byte("back"), from); err != nil {
			t.Errorf("reply to %v: %v", from, err)
		}
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err = pc.ReadFrom(buf)
		if err != nil || from.String() != dst {
			t.Errorf("reply %q from %v (%v), want from %s", buf[:n], from, err, dst)
		}
		srv.Close()
	}

	for _, tc := range []struct{ network, addr, want string }{
		{"tcp", "[fd00::2%eth0]:80", "has a zone"},
		{"tcp4", "[fd00::2]:80", "address family does not match"},
		{"tcp6", "10.0.0.2:80", "address family does not match"},
		{"tcp", "fd00::2:80", "too many colons"},
	} {
		if c, err := p.a.DialContext(ctxT(t, time.Second), tc.network, tc.addr); err == nil || !strings.Contains(err.Error(), tc.want) {
			if c != nil {
				c.Close()
			}
			t.Errorf("dial %s %s = %v, want an error saying %q", tc.network, tc.addr, err, tc.want)
		}
	}
}

func TestNetstackIPv6NeedsMTU1280(t *testing.T) {
	ns, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{addrA}, MTU: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	err = ns.SetAddresses([]netip.Prefix{addrA, addrA6})
	if want := "stack: netstack address fd00::1/64: the MTU 1000 is below IPv6's minimum of 1280; raise it to carry IPv6"; err == nil || err.Error() != want {
		t.Errorf("SetAddresses(IPv6 at MTU 1000) = %v, want %q", err, want)
	}
	if v4, v6 := ns.Families(); !v4 || v6 {
		t.Errorf("after the refused SetAddresses Families() = %v, %v; want the IPv4 address kept alone", v4, v6)
	}
}
