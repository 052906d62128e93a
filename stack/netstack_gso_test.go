package stack_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gvchecksum "gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/stack"
)

// l4Valid reports whether pkt (IPv4 or IPv6, TCP) has a valid IP header
// checksum (IPv4) and TCP checksum, and returns its TCP payload length.
func l4Valid(pkt []byte) (payload int, ok bool) {
	var src, dst []byte
	var l4 []byte
	switch header.IPVersion(pkt) {
	case 4:
		ip := header.IPv4(pkt)
		if !ip.IsChecksumValid() || int(ip.TotalLength()) != len(pkt) || ip.Protocol() != uint8(header.TCPProtocolNumber) {
			return 0, false
		}
		src, dst, l4 = pkt[12:16], pkt[16:20], pkt[ip.HeaderLength():]
	case 6:
		ip := header.IPv6(pkt)
		if int(ip.PayloadLength())+header.IPv6MinimumSize != len(pkt) || ip.NextHeader() != uint8(header.TCPProtocolNumber) {
			return 0, false
		}
		src, dst, l4 = pkt[8:24], pkt[24:40], pkt[header.IPv6MinimumSize:]
	default:
		return 0, false
	}
	// The pseudo-header (RFC 793, RFC 8200 §8.1) and the segment.
	ph := append(append(append([]byte(nil), src...), dst...), 0, byte(header.TCPProtocolNumber), byte(len(l4)>>8), byte(len(l4)))
	sum := uint32(checksum(ph)) + uint32(checksum(l4))
	sum = sum&0xffff + sum>>16
	return len(header.TCP(l4).Payload()), sum == 0xffff
}

// TestNetstackSegmentation: the stack hands its link endpoint TCP
// segments of up to 64 KiB (GSO), and Read cuts them into packets no
// larger than the MTU, each with valid checksums, carrying a segment over
// to the next Read when the caller's batch is full (batches of 1 and 7
// here); the receiver coalesces them again (GRO). 2 MiB go through
// byte-exact over IPv4 and IPv6. Through ReadPartial and WritePartial the
// IPv4 segments keep their TCP checksums undone (CompleteChecksum makes
// them valid) and the receiver takes them so.
func TestNetstackSegmentation(t *testing.T) {
	for _, tt := range []struct {
		name    string
		dst     netip.Addr
		batch   int
		partial bool // ReadPartial and WritePartial
	}{
		{"ipv4 batch 1", addrB.Addr(), 1, false},
		{"ipv4 batch 7", addrB.Addr(), 7, false},
		{"ipv4 batch 128", addrB.Addr(), 128, false},
		{"ipv6 batch 7", addrB6.Addr(), 7, false},
		{"ipv4 partial batch 7", addrB.Addr(), 7, true},
		{"ipv6 partial batch 128", addrB6.Addr(), 128, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const mtu = 1450
			a, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{addrA, addrA6}, MTU: mtu})
			if err != nil {
				t.Fatal(err)
			}
			b, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{addrB, addrB6}, MTU: mtu})
			if err != nil {
				t.Fatal(err)
			}
			var bad, full, partials atomic.Int64
			var wg sync.WaitGroup
			pump := func(src, dst *stack.Netstack) {
				defer wg.Done()
				bufs := make([][]byte, tt.batch)
				for i := range bufs {
					bufs[i] = make([]byte, stack.Headroom+mtu)
				}
				sizes := make([]int, tt.batch)
				partial := make([]bool, tt.batch)
				for {
					var n int
					var err error
					if tt.partial {
						n, err = src.ReadPartial(bufs, sizes, partial, stack.Headroom)
					} else {
						n, err = src.Read(bufs, sizes, stack.Headroom)
					}
					if err != nil {
						return
					}
					out := make([][]byte, n)
					for i := range n {
						out[i] = bufs[i][:stack.Headroom+sizes[i]]
						p := out[i][stack.Headroom:]
						if tt.partial && partial[i] {
							// Left undone: completed, it is a valid segment.
							partials.Add(1)
							if !stack.IsPartialCandidate(p) {
								bad.Add(1)
							}
							p = append([]byte(nil), p...)
							stack.CompleteChecksum(p)
						}
						pay, ok := l4Valid(p)
						if !ok || len(p) > mtu {
							bad.Add(1)
						}
						if len(p) == mtu || pay > 0 && len(p) > mtu-64 {
							full.Add(1)
						}
					}
					if tt.partial {
						_, err = dst.WritePartial(out, partial, stack.Headroom)
					} else {
						_, err = dst.Write(out, stack.Headroom)
					}
					if err != nil {
						return
					}
				}
			}
			wg.Add(2)
			go pump(a, b)
			go pump(b, a)
			defer func() {
				a.Close()
				b.Close()
				wg.Wait()
			}()

			srv := netip.AddrPortFrom(tt.dst, 7000)
			ln, err := b.Listen("tcp", srv.String())
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			want := make([]byte, 2<<20)
			rand.Read(want)
			got := make(chan []byte, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					got <- nil
					return
				}
				defer c.Close()
				data, _ := io.ReadAll(c)
				got <- data
			}()
			c, err := a.DialContext(ctxT(t, 10*time.Second), "tcp", srv.String())
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := c.Write(want); err != nil {
				t.Fatal(err)
			}
			c.(interface{ CloseWrite() error }).CloseWrite()
			var data []byte
			select {
			case data = <-got:
			case <-time.After(20 * time.Second):
				t.Fatal("the receiver got no EOF in 20 s")
			}
			c.Close()
			if !bytes.Equal(data, want) {
				t.Fatalf("received %d bytes, want the %d sent, byte-exact", len(data), len(want))
			}
			if n := bad.Load(); n > 0 {
				t.Errorf("%d packets from Read were larger than the MTU or had a bad checksum", n)
			}
			// At MSS-sized packets 2 MiB is ~1,500 of them; mostly full.
			if n := full.Load(); n < 1000 {
				t.Errorf("%d packets near the MTU, want most of the ~1,500 a 2 MiB transfer takes", n)
			}
			if n, want := partials.Load(), tt.partial && tt.dst.Is4(); (n > 1000) != want {
				t.Errorf("%d packets were left partial, want most (more than 1000) %v", n, want)
			}
			sa, sb := a.Stats(), b.Stats()
			if sa.OutGSO == 0 || sa.OutPackets/sa.OutGSO < 4 {
				t.Errorf("OutGSO %d for %d packets out: want the stack to hand over segments of several packets", sa.OutGSO, sa.OutPackets)
			}
			if sa.DropTooBig+sb.DropTooBig+sa.DropChecksum+sb.DropChecksum+sa.DropQueueFull > 0 {
				t.Errorf("drops: a %+v, b %+v", sa, sb)
			}
		})
	}
}

// TestNetstackChecksums: the endpoint claims receive checksum offload,
// so Write checks what gVisor then does not: the IPv4 header checksum and
// the TCP, UDP and ICMP checksums (a UDP checksum of 0 over IPv4 is none).
// A packet with a bad one is dropped and counted (DropChecksum).
func TestNetstackChecksums(t *testing.T) {
	ns, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{addrA}})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	pc, err := ns.ListenPacket("udp", addrA.Addr().String()+":53")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	udp := func(payload string, mangle func([]byte)) []byte {
		pkt := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
		ip := header.IPv4(pkt)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
			SrcAddr: tcpipAddr(addrB.Addr()), DstAddr: tcpipAddr(addrA.Addr())})
		ip.SetChecksum(^ip.CalculateChecksum())
		u := header.UDP(ip.Payload())
		u.Encode(&header.UDPFields{SrcPort: 5353, DstPort: 53, Length: uint16(len(u))})
		copy(u.Payload(), payload)
		xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(u)))
		u.SetChecksum(^u.CalculateChecksum(gvchecksum.Checksum(u.Payload(), xsum)))
		if mangle != nil {
			mangle(pkt)
		}
		return pkt
	}
	icmpReply := func(pkt []byte) bool {
		bufs := [][]byte{make([]byte, stack.Headroom+1500)}
		done := make(chan bool, 1)
		go func() {
			n, _ := ns.Read(bufs, []int{0}, stack.Headroom)
			done <- n == 1
		}()
		ns.Write([][]byte{append(make([]byte, stack.Headroom), pkt...)}, stack.Headroom)
		select {
		case ok := <-done:
			return ok
		case <-time.After(500 * time.Millisecond):
			// Unblock the Read with a good echo, whose reply it takes.
			ns.Write([][]byte{append(make([]byte, stack.Headroom), echoRequest(addrB.Addr(), addrA.Addr(), 9)...)}, stack.Headroom)
			<-done
			return false
		}
	}
	tests := []struct {
		name    string
		pkt     []byte
		dropped bool
	}{
		{"udp good", udp("good", nil), false},
		{"udp checksum 0 (none)", udp("none", func(p []byte) { binary.BigEndian.PutUint16(p[26:], 0) }), false},
		{"udp payload flipped", udp("flip", func(p []byte) { p[len(p)-1] ^= 1 }), true},
		{"ipv4 header checksum", udp("hdr", func(p []byte) { p[8]-- }), true}, // TTL changed, checksum not
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ns.Stats()
			ns.Write([][]byte{append(make([]byte, stack.Headroom), tt.pkt...)}, stack.Headroom)
			if got := ns.Stats().DropChecksum - before.DropChecksum; got != b2u(tt.dropped) {
				t.Errorf("DropChecksum grew by %d, want %d", got, b2u(tt.dropped))
			}
			pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			buf := make([]byte, 64)
			_, _, err := pc.ReadFrom(buf)
			if delivered := err == nil; delivered == tt.dropped {
				t.Errorf("delivered to the socket: %v (%v), want %v", delivered, err, !tt.dropped)
			}
			var ne net.Error
			if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
				t.Errorf("ReadFrom: %v, want a timeout", err)
			}
		})
	}
	good := echoRequest(addrB.Addr(), addrA.Addr(), 3)
	if !icmpReply(good) {
		t.Error("a good echo request got no reply")
	}
	badICMP := append([]byte(nil), good...)
	badICMP[len(badICMP)-1] ^= 0xff
	before := ns.Stats().DropChecksum
	if icmpReply(badICMP) {
		t.Error("an echo request with a bad ICMP checksum got a reply")
	}
	if got := ns.Stats().DropChecksum - before; got != 1 {
		t.Errorf("DropChecksum grew by %d for a bad ICMP checksum, want 1", got)
	}
}
