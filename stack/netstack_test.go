package stack_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip"
	gvchecksum "gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/stack"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// pair is two Netstacks wired back to back by one pump goroutine per
// direction.
type pair struct {
	a, b *stack.Netstack
	wg   sync.WaitGroup
}

var (
	addrA  = netip.MustParsePrefix("10.0.0.1/24")
	addrB  = netip.MustParsePrefix("10.0.0.2/24")
	addrA6 = netip.MustParsePrefix("fd00::1/64")
	addrB6 = netip.MustParsePrefix("fd00::2/64")
)

// newPair builds the two stacks. watch, if not nil, sees every packet
// before it is delivered (from a to b and from b to a).
func newPair(tb testing.TB, mtu int, watch func(pkt []byte)) *pair {
	tb.Helper()
	a, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{addrA, addrA6}, MTU: mtu})
	if err != nil {
		tb.Fatal(err)
	}
	b, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{addrB, addrB6}, MTU: mtu})
	if err != nil {
		a.Close()
		tb.Fatal(err)
	}
	p := &pair{a: a, b: b}
	p.wg.Add(2)
	go p.pump(a, b, mtu, watch)
	go p.pump(b, a, mtu, watch)
	tb.Cleanup(p.close)
	return p
}

func (p *pair) close() {
	p.a.Close()
	p.b.Close()
	p.wg.Wait()
}

// pump moves packets from src's Read to dst's Write until either closes.
func (p *pair) pump(src, dst *stack.Netstack, mtu int, watch func([]byte)) {
	defer p.wg.Done()
	n := src.BatchSize()
	bufs := make([][]byte, n)
	out := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, stack.Headroom+mtu)
	}
	sizes := make([]int, n)
	for {
		c, err := src.Read(bufs, sizes, stack.Headroom)
		if err != nil {
			return
		}
		for i := range c {
			out[i] = bufs[i][:stack.Headroom+sizes[i]]
			if watch != nil {
				watch(out[i][stack.Headroom:])
			}
		}
		if _, err := dst.Write(out[:c], stack.Headroom); err != nil {
			return
		}
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestNetstackTCP(t *testing.T) {
	tests := []struct {
		name    string
		network string
		mtu     int
		dst     netip.Addr
		size    int
	}{
		{"v4-1450-16MiB", "tcp4", 1450, addrB.Addr(), 16 << 20},
		{"v6-1450-2MiB", "tcp6", 1450, addrB6.Addr(), 2 << 20},
		{"v4-65000-4MiB", "tcp", 65000, addrB.Addr(), 4 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, tt.mtu, nil)
			dst := netip.AddrPortFrom(tt.dst, 8080)
			l, err := p.b.Listen(tt.network, dst.String())
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()

			// The server checks what arrives and sends the same amount
			// back, so both directions carry the full size.
			type result struct {
				sum [32]byte
				err error
			}
			done := make(chan result, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					done <- result{err: err}
					return
				}
				defer c.Close()
				var wg sync.WaitGroup
				wg.Add(1)
				var werr error
				go func() {
					defer wg.Done()
					_, werr = io.Copy(c, io.LimitReader(newData(2), int64(tt.size)))
					c.(interface{ CloseWrite() error }).CloseWrite()
				}()
				h := sha256.New()
				_, err = io.Copy(h, c)
				wg.Wait()
				if err == nil {
					err = werr
				}
				var r result
				copy(r.sum[:], h.Sum(nil))
				r.err = err
				done <- r
			}()

			c, err := p.a.DialContext(ctxT(t, 10*time.Second), tt.network, dst.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.RemoteAddr().String(); got != dst.String() {
				t.Errorf("RemoteAddr() = %s, want %s", got, dst)
			}
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			var wg sync.WaitGroup
			wg.Add(1)
			var recvSum []byte
			var recvN int64
			var recvErr error
			go func() {
				defer wg.Done()
				h := sha256.New()
				recvN, recvErr = io.Copy(h, c)
				recvSum = h.Sum(nil)
			}()
			sent := sha256.New()
			if _, err := io.Copy(c, io.TeeReader(io.LimitReader(newData(1), int64(tt.size)), sent)); err != nil {
				t.Fatalf("send: %v", err)
			}
			c.(interface{ CloseWrite() error }).CloseWrite()
			r := <-done
			wg.Wait()
			if r.err != nil {
				t.Fatalf("server: %v", r.err)
			}
			if !bytes.Equal(r.sum[:], sent.Sum(nil)) {
				t.Errorf("server received data with sha256 %x, want %x", r.sum, sent.Sum(nil))
			}
			want := sha256.New()
			io.Copy(want, io.LimitReader(newData(2), int64(tt.size)))
			if recvErr != nil || recvN != int64(tt.size) || !bytes.Equal(recvSum, want.Sum(nil)) {
				t.Errorf("client received %d bytes (err %v), sha256 %x; want %d bytes, %x", recvN, recvErr, recvSum, tt.size, want.Sum(nil))
			}
			sa, sb := p.a.Stats(), p.b.Stats()
			t.Logf("a: %+v", sa)
			t.Logf("b: %+v", sb)
			if sa.OutBytes < uint64(tt.size) || sb.InBytes < uint64(tt.size) {
				t.Errorf("counters: a.OutBytes=%d b.InBytes=%d, want >= %d", sa.OutBytes, sb.InBytes, tt.size)
			}
		})
	}
}

// newData is a deterministic byte stream.
func newData(seed uint64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

func TestNetstackUDP(t *testing.T) {
	tests := []struct {
		name    string
		network string
		server  netip.Addr
	}{
		{"udp4", "udp4", addrB.Addr()},
		{"udp6", "udp6", addrB6.Addr()},
		{"udp", "udp", addrB.Addr()},
	}
	p := newPair(t, 1450, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srvAddr := netip.AddrPortFrom(tt.server, 5353)
			pc, err := p.b.ListenPacket(tt.network, srvAddr.String())
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			go func() { // echo, upper-cased
				buf := make([]byte, 2048)
				for {
					n, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					pc.WriteTo(bytes.ToUpper(buf[:n]), from)
				}
			}()
			c, err := p.a.DialContext(ctxT(t, 5*time.Second), tt.network, srvAddr.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 2048)
			for i := range 20 {
				msg := []byte(strings.Repeat("overlay", i*10+1))
				got := -1
				// UDP may drop; retry a few times, polling with a deadline.
				for try := 0; try < 5 && got < 0; try++ {
					if _, err := c.Write(msg); err != nil {
						t.Fatal(err)
					}
					c.SetReadDeadline(time.Now().Add(time.Second))
					if n, err := c.Read(buf); err == nil {
						got = n
					}
				}
				if want := bytes.ToUpper(msg); got < 0 || !bytes.Equal(buf[:got], want) {
					t.Fatalf("echo %d: got %q, want %q", i, buf[:max(got, 0)], want)
				}
			}
		})
	}
}

func TestNetstackDialErrors(t *testing.T) {
	p := newPair(t, 1450, nil)
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		network string
		address string
		wantIs  error
		wantMsg string
	}{
		{"refused", t.Context(), "tcp", "10.0.0.2:81", syscall.ECONNREFUSED, "stack: dial tcp 10.0.0.2:81: connection refused"},
		{"refused6", t.Context(), "tcp6", "[fd00::2]:81", syscall.ECONNREFUSED, "stack: dial tcp6 [fd00::2]:81: connection refused"},
		{"no answer, deadline", ctxT(t, 200*time.Millisecond), "tcp", "10.0.0.99:80", context.DeadlineExceeded, "stack: dial tcp 10.0.0.99:80: context deadline exceeded"},
		{"canceled", canceled, "tcp", "10.0.0.2:80", context.Canceled, "stack: dial tcp 10.0.0.2:80: context canceled"},
		{"no route", t.Context(), "tcp", "192.0.2.1:80", syscall.EHOSTUNREACH, "stack: dial tcp 192.0.2.1:80: no route to host"},
		{"name", t.Context(), "tcp", "example.com:80", nil, "no name resolution"},
		{"family", t.Context(), "tcp4", "[fd00::2]:80", nil, "address family does not match"},
		{"network", t.Context(), "sctp", "10.0.0.2:80", nil, "network not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := p.a.DialContext(tt.ctx, tt.network, tt.address)
			if err == nil {
				c.Close()
				t.Fatalf("DialContext(%s, %s) = nil error, want %q", tt.network, tt.address, tt.wantMsg)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("DialContext(%s, %s) = %v, want errors.Is %v", tt.network, tt.address, err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("DialContext(%s, %s) = %q, want %q", tt.network, tt.address, err, tt.wantMsg)
			}
		})
	}
}

// TestNetstackMSS checks that the SYN's MSS follows the MTU.
func TestNetstackMSS(t *testing.T) {
	tests := []struct {
		mtu     int
		network string
		dst     string
		want    int
	}{
		{1450, "tcp4", "10.0.0.2:81", 1450 - 40},
		{1450, "tcp6", "[fd00::2]:81", 1450 - 60},
		{9000, "tcp4", "10.0.0.2:81", 9000 - 40},
		{65000, "tcp4", "10.0.0.2:81", 65000 - 40},
	}
	for _, tt := range tests {
		t.Run(tt.network+"-"+strconv.Itoa(tt.mtu), func(t *testing.T) {
			mss := make(chan int, 16)
			p := newPair(t, tt.mtu, func(pkt []byte) {
				if m, ok := synMSS(pkt); ok {
					select {
					case mss <- m:
					default:
					}
				}
			})
			if c, err := p.a.DialContext(t.Context(), tt.network, tt.dst); err == nil {
				c.Close()
			}
			select {
			case got := <-mss:
				if got != tt.want {
					t.Errorf("SYN MSS at MTU %d = %d, want %d", tt.mtu, got, tt.want)
				}
			default:
				t.Fatal("saw no SYN")
			}
		})
	}
}

// synMSS returns the MSS option of a TCP SYN (not SYN-ACK).
func synMSS(pkt []byte) (int, bool) {
	var tcp header.TCP
	switch header.IPVersion(pkt) {
	case 4:
		ip := header.IPv4(pkt)
		if ip.TransportProtocol() != header.TCPProtocolNumber {
			return 0, false
		}
		tcp = header.TCP(ip.Payload())
	case 6:
		ip := header.IPv6(pkt)
		if ip.TransportProtocol() != header.TCPProtocolNumber {
			return 0, false
		}
		tcp = header.TCP(ip.Payload())
	default:
		return 0, false
	}
	if tcp.Flags() != header.TCPFlagSyn {
		return 0, false
	}
	opts := header.ParseSynOptions(tcp.Options(), false)
	return int(opts.MSS), true
}

func TestNetstackMalformed(t *testing.T) {
	ns, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{addrA}})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	good := echoRequest(addrB.Addr(), addrA.Addr(), 1)
	tests := []struct {
		name string
		pkt  []byte
		bad  bool
	}{
		{"empty", nil, true},
		{"one byte", []byte{0x45}, true},
		{"version 5", append([]byte{0x55}, good[1:]...), true},
		{"short ipv4", good[:19], true},
		{"ipv4 total length too big", func() []byte {
			p := append([]byte(nil), good...)
			binary.BigEndian.PutUint16(p[2:], 1000)
			return p
		}(), true},
		{"ipv4 ihl too small", append([]byte{0x41}, good[1:]...), true},
		{"short ipv6", append([]byte{0x60}, make([]byte, 30)...), true},
		{"bad checksum (gVisor drops)", func() []byte {
			p := append([]byte(nil), good...)
			p[10] ^= 0xff
			return p
		}(), false},
		{"good echo", good, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ns.Stats()
			buf := append(make([]byte, stack.Headroom), tt.pkt...)
			n, err := ns.Write([][]byte{buf}, stack.Headroom)
			if n != 1 || err != nil {
				t.Fatalf("Write = %d, %v; want 1, nil", n, err)
			}
			after := ns.Stats()
			if got := after.DropMalformed - before.DropMalformed; got != b2u(tt.bad) {
				t.Errorf("DropMalformed grew by %d, want %d", got, b2u(tt.bad))
			}
			if got := after.InPackets - before.InPackets; got != b2u(!tt.bad) {
				t.Errorf("InPackets grew by %d, want %d", got, b2u(!tt.bad))
			}
		})
	}
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// echoRequest builds an IPv4 ICMP echo request.
func echoRequest(src, dst netip.Addr, seq uint16) []byte {
	const payload = 56
	pkt := make([]byte, header.IPv4MinimumSize+header.ICMPv4MinimumSize+payload)
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)),
		TTL:         64,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     tcpipAddr(src),
		DstAddr:     tcpipAddr(dst),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	icmp := header.ICMPv4(ip.Payload())
	icmp.SetType(header.ICMPv4Echo)
	icmp.SetIdent(0x4242)
	icmp.SetSequence(seq)
	for i := range payload {
		icmp[header.ICMPv4MinimumSize+i] = byte(i)
	}
	icmp.SetChecksum(0)
	icmp.SetChecksum(^checksum(icmp))
	return pkt
}

func FuzzNetstackWrite(f *testing.F) {
	good := echoRequest(addrB.Addr(), addrA.Addr(), 1)
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0x60, 0, 0, 0, 0, 8, 17, 64})
	f.Add(good[:20])
	f.Add(echoRequest6(addrB6.Addr(), addrA6.Addr(), 1))
	f.Add(echoRequest6(addrB6.Addr(), addrA6.Addr(), 1, destOpts(), destOpts()))
	ns, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{addrA, addrA6}, QueueLen: 16})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ns.Close() })
	f.Fuzz(func(t *testing.T, pkt []byte) {
		before := ns.Stats()
		buf := append(make([]byte, stack.Headroom), pkt...)
		if n, err := ns.Write([][]byte{buf}, stack.Headroom); n != 1 || err != nil {
			t.Fatalf("Write = %d, %v; want 1, nil", n, err)
		}
		after := ns.Stats()
		if got := after.InPackets + after.DropMalformed - before.InPackets - before.DropMalformed; got != 1 {
			t.Fatalf("InPackets+DropMalformed grew by %d, want 1", got)
		}
	})
}

// TestNetstackAllocs measures the Write (inbound ICMP echo request) plus
// Read (the stack's echo reply) path.
func TestNetstackAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	ns, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{addrA}})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	in := [][]byte{append(make([]byte, stack.Headroom), echoRequest(addrB.Addr(), addrA.Addr(), 7)...)}
	bufs := [][]byte{make([]byte, stack.Headroom+1500)}
	sizes := []int{0}
	roundTrip := func() {
		ns.Write(in, stack.Headroom)
		if n, err := ns.Read(bufs, sizes, stack.Headroom); n != 1 || err != nil {
			t.Fatalf("Read = %d, %v", n, err)
		}
	}
	roundTrip()
	reply := header.ICMPv4(header.IPv4(bufs[0][stack.Headroom : stack.Headroom+sizes[0]]).Payload())
	if reply.Type() != header.ICMPv4EchoReply || reply.Sequence() != 7 {
		t.Fatalf("reply type %d seq %d, want echo reply seq 7", reply.Type(), reply.Sequence())
	}
	allocs := testing.AllocsPerRun(1000, roundTrip)
	t.Logf("Write+Read of an ICMP echo round trip: %.1f allocs", allocs)
	// Measured: 2, both inside gVisor (a PacketBufferList slice in
	// ipv4's WritePacket and a Route for the reply in makeRouteInner);
	// the endpoint's own Read and Write add none. The bound catches
	// regressions.
	const bound = 2
	if allocs > bound {
		t.Errorf("Write+Read allocs = %.1f, want <= %d", allocs, bound)
	}
}

func TestNetstackClose(t *testing.T) {
	ns, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{addrA}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := ns.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Addr().String(); !strings.HasSuffix(got, ":80") {
		t.Errorf("Listen(:80).Addr() = %s", got)
	}
	acceptErr := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		acceptErr <- err
	}()
	readErr := make(chan error, 1)
	go func() {
		_, err := ns.Read([][]byte{make([]byte, 2000)}, []int{0}, stack.Headroom)
		readErr <- err
	}()
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ns.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := <-readErr; !errors.Is(err, stack.ErrClosed) {
		t.Errorf("Read after Close = %v, want ErrClosed", err)
	}
	if _, err := ns.Write([][]byte{make([]byte, 100)}, stack.Headroom); !errors.Is(err, stack.ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
	l.Close()
	if err := <-acceptErr; err == nil {
		t.Error("Accept after Close = nil error")
	}
	if _, err := ns.DialContext(t.Context(), "tcp", "10.0.0.2:80"); err == nil {
		t.Error("DialContext after Close = nil error")
	}
}

func TestNetstackOptions(t *testing.T) {
	tests := []struct {
		name string
		opts stack.NetstackOptions
		ok   bool
	}{
		{"no address", stack.NetstackOptions{}, false},
		{"v6 small MTU", stack.NetstackOptions{Addrs: []netip.Prefix{addrA6}, MTU: 1000}, false},
		{"v4 small MTU", stack.NetstackOptions{Addrs: []netip.Prefix{addrA}, MTU: 1000}, true},
		{"invalid route", stack.NetstackOptions{Addrs: []netip.Prefix{addrA}, Routes: []netip.Prefix{{}}}, false},
		{"routes", stack.NetstackOptions{Addrs: []netip.Prefix{addrA}, Routes: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, err := stack.NewNetstack(tt.opts)
			if (err == nil) != tt.ok {
				t.Fatalf("NewNetstack(%+v) = %v, want ok=%v", tt.opts, err, tt.ok)
			}
			if err == nil {
				if ns.Layer() != stack.L3 || ns.Name() != "netstack" || ns.MTU() == 0 || ns.BatchSize() < 1 {
					t.Errorf("Layer %v Name %q MTU %d BatchSize %d", ns.Layer(), ns.Name(), ns.MTU(), ns.BatchSize())
				}
				ns.Close()
			}
		})
	}
}

func tcpipAddr(a netip.Addr) tcpip.Address { return tcpip.AddrFromSlice(a.AsSlice()) }

func checksum(b []byte) uint16 { return gvchecksum.Checksum(b, 0) }
