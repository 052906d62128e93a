package stack_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/stack/stacktest"
)

// partialDev is a Device that reads and writes partial packets: the TUN
// and the Netstack.
type partialDev interface {
	stack.Device
	stack.PartialReader
	stack.PartialWriter
}

// pumpPartial moves batches from src to dst through ReadPartial and
// WritePartial until src is closed, counting the packets it wrote and the
// partial IPv6 ones it read. As the router does, it completes a partial
// IPv6 segment for a dst that is no stack.PartialWriter6.
func pumpPartial(src, dst partialDev, wrote, partial6 *atomic.Int64, wg *sync.WaitGroup) {
	defer wg.Done()
	w6, _ := dst.(stack.PartialWriter6)
	takes6 := w6 != nil && w6.WritesPartial6()
	n := src.BatchSize()
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, stack.Headroom+65535)
	}
	sizes, partial := make([]int, n), make([]bool, n)
	out := make([][]byte, n)
	for {
		k, err := src.ReadPartial(bufs, sizes, partial, stack.Headroom)
		if err != nil {
			return
		}
		for i := range k {
			out[i] = bufs[i][:stack.Headroom+sizes[i]]
			if pkt := out[i][stack.Headroom:]; partial[i] && pkt[0]>>4 == 6 {
				partial6.Add(1)
				if !takes6 {
					stack.CompleteChecksum(pkt)
					partial[i] = false
				}
			}
		}
		if _, err := dst.WritePartial(out[:k], partial, stack.Headroom); err != nil && errors.Is(err, stack.ErrClosed) {
			return
		}
		wrote.Add(int64(k))
	}
}

// TestTUNTCPv6 runs a byte-exact TCP transfer each way between the
// kernel (a socket on ovl0's IPv6 address) and a Netstack peer pumped
// through the TUN's partial path: the kernel's TSO super-packets are
// split by ReadPartial (OutGSO), and the peer's segments are coalesced
// by WritePartial's GRO (the kernel counts fewer packets received on the
// interface than were written to it). The addresses are usable at once
// (no DAD), and the interface carries both families.
func TestTUNTCPv6(t *testing.T) {
	needRoot(t)
	const (
		name = "ovltest6"
		size = 8 << 20
	)
	self6 := netip.MustParsePrefix("fd00:99::1/64")
	self4 := netip.MustParsePrefix("10.99.6.1/24")
	peer6 := netip.MustParsePrefix("fd00:99::2/64")
	extra6 := netip.MustParsePrefix("fd00:98::/48")
	inNetns(t, func() {
		// New links come with IPv6 off, as in a container given none:
		// OpenTUN turns it on for its own device.
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0); err != nil {
			t.Errorf("disable IPv6 for new links: %v", err)
			return
		}
		tun, err := stack.OpenTUN(stack.TUNOptions{Name: name, MTU: 1500, Addrs: []netip.Prefix{self4, self6}, Routes: []netip.Prefix{extra6}})
		if err != nil {
			t.Errorf("OpenTUN: %v", err)
			return
		}
		defer tun.Close()
		if b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6"); err != nil || string(b) != "0\n" {
			t.Errorf("disable_ipv6 of %s = %q (%v), want 0", name, b, err)
		}
		link, err := netlink.LinkByName(name)
		if err != nil {
			t.Errorf("LinkByName: %v", err)
			return
		}
		addrs, _ := netlink.AddrList(link, netlink.FAMILY_V6)
		i := slices.IndexFunc(addrs, func(a netlink.Addr) bool { return a.IPNet.String() == self6.String() })
		if i < 0 {
			t.Errorf("IPv6 addresses %v, want %v", addrs, self6)
			return
		}
		if f := addrs[i].Flags; f&unix.IFA_F_NODAD == 0 || f&unix.IFA_F_TENTATIVE != 0 {
			t.Errorf("address %v flags %#x, want NODAD and not tentative", self6, f)
		}
		if a4, _ := netlink.AddrList(link, netlink.FAMILY_V4); !slices.ContainsFunc(a4, func(a netlink.Addr) bool { return a.IPNet.String() == self4.String() }) {
			t.Errorf("IPv4 addresses %v, want %v beside the IPv6 one", a4, self4)
		}
		routes, _ := netlink.RouteList(link, netlink.FAMILY_V6)
		for _, want := range []netip.Prefix{self6.Masked(), extra6} {
			if !slices.ContainsFunc(routes, func(r netlink.Route) bool { return r.Dst != nil && r.Dst.String() == want.String() }) {
				t.Errorf("IPv6 routes %v, want one to %v", routes, want)
			}
		}

		peer, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{peer6}, MTU: 1500})
		if err != nil {
			t.Errorf("NewNetstack: %v", err)
			return
		}
		var wg sync.WaitGroup
		var toPeer, toKernel, partialIn, partialOut atomic.Int64
		wg.Add(2)
		go pumpPartial(tun, peer, &toPeer, &partialIn, &wg)
		go pumpPartial(peer, tun, &toKernel, &partialOut, &wg)
		defer func() {
			tun.Close()
			peer.Close()
			wg.Wait()
		}()
		ln, err := peer.Listen("tcp6", "[fd00:99::2]:5201")
		if err != nil {
			t.Errorf("Listen: %v", err)
			return
		}
		defer ln.Close()
		before := linkStats(t, name)

		data := make([]byte, size)
		r := rand.New(rand.NewPCG(6, 6))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		accepted := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				accepted <- err
				return
			}
			defer c.Close()
			got := make([]byte, size)
			if _, err := io.ReadFull(c, got); err != nil {
				accepted <- err
				return
			}
			if !bytes.Equal(got, data) {
				accepted <- errors.New("the netstack received other bytes than the kernel sent")
				return
			}
			_, err = c.Write(data)
			accepted <- err
		}()
		// The socket is made on this thread, which is in the namespace.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp6", "[fd00:99::2]:5201")
		if err != nil {
			t.Errorf("kernel dial [fd00:99::2]:5201: %v", err)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(data); err != nil {
			t.Errorf("kernel write: %v", err)
			return
		}
		back := make([]byte, size)
		if _, err := io.ReadFull(c, back); err != nil {
			t.Errorf("kernel read: %v", err)
			return
		}
		if err := <-accepted; err != nil {
			t.Errorf("netstack side: %v", err)
			return
		}
		if !bytes.Equal(back, data) {
			t.Error("the kernel received other bytes than the netstack sent")
		}
		after := linkStats(t, name)
		st := tun.Stats()
		gotIn := after.RxPackets - before.RxPackets
		t.Logf("kernel → netstack: %d super-packets read (tx), %d split (OutGSO), %d segments written to the peer; netstack → kernel: %d segments written, %d packets the kernel received (rx); DropRead %d",
			after.TxPackets-before.TxPackets, st.OutGSO, toPeer.Load(), toKernel.Load(), gotIn, st.DropRead)
		if st.OutGSO == 0 {
			t.Error("OutGSO = 0: no IPv6 TSO super-packet was split")
		}
		if partialIn.Load() == 0 {
			t.Error("ReadPartial gave no partial IPv6 segment of the kernel's TCP")
		}
		if st.DropRead != 0 {
			t.Errorf("DropRead = %d, want 0", st.DropRead)
		}
		if gotIn*2 > uint64(toKernel.Load()) {
			t.Errorf("the kernel received %d packets for %d segments written: not coalesced (GRO)", gotIn, toKernel.Load())
		}
	})
}

func linkStats(t testing.TB, name string) netlink.LinkStatistics {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil || l.Attrs().Statistics == nil {
		t.Errorf("link %s statistics: %v", name, err)
		return netlink.LinkStatistics{}
	}
	return *l.Attrs().Statistics
}

// segments builds n TCP segments of mss bytes of one flow from the peer
// to the TUN's address, as the router hands them to WritePartial:
// partial (their checksum field the pseudo-header sum).
func segments(v6 bool, n, mss int) ([][]byte, []bool) {
	bufs := make([][]byte, n)
	partial := make([]bool, n)
	for i := range bufs {
		hl := header.IPv4MinimumSize
		if v6 {
			hl = header.IPv6MinimumSize
		}
		// Room behind the packet, as the router's buffers have: a GRO
		// coalesces into the first packet's buffer.
		b := make([]byte, stack.Headroom+hl+20+mss, stack.Headroom+65535)
		pkt := b[stack.Headroom:]
		if v6 {
			ip := header.IPv6(pkt)
			ip.Encode(&header.IPv6Fields{PayloadLength: uint16(20 + mss), TransportProtocol: header.TCPProtocolNumber, HopLimit: 64,
				SrcAddr: tcpipAddr(netip.MustParseAddr("fd00:97::2")), DstAddr: tcpipAddr(netip.MustParseAddr("fd00:97::1"))})
		} else {
			ip := header.IPv4(pkt)
			ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), Flags: header.IPv4FlagDontFragment,
				SrcAddr: tcpipAddr(netip.MustParseAddr("10.97.7.2")), DstAddr: tcpipAddr(netip.MustParseAddr("10.97.7.1"))})
			ip.SetChecksum(^ip.CalculateChecksum())
		}
		tcp := header.TCP(pkt[hl:])
		tcp.Encode(&header.TCPFields{SrcPort: 5201, DstPort: 40000, SeqNum: uint32(1000 + i*mss), AckNum: 1, DataOffset: 20, Flags: header.TCPFlagAck, WindowSize: 65535})
		for j := range mss {
			pkt[hl+20+j] = byte(i + j)
		}
		tcp.SetChecksum(stack.PseudoSum(pkt, 20+mss))
		partial[i] = true
		bufs[i] = b
	}
	return bufs, partial
}

// BenchmarkTUNWritePartial writes batches of 64 TCP segments of one flow
// (MSS 1448 over IPv4, 1428 over IPv6) into a TUN in a fresh namespace:
// the GRO path of partial segments, each run as one writev of their
// payloads (WritePartial's own), for either family.
// The kernel drops what arrives (no socket): the cost measured is the
// write path's. Root only.
func BenchmarkTUNWritePartial(b *testing.B) {
	needRoot(b)
	inNetns(b, func() {
		tun, err := stack.OpenTUN(stack.TUNOptions{Name: "ovlbench0", MTU: 1500,
			Addrs: []netip.Prefix{netip.MustParsePrefix("10.97.7.1/24"), netip.MustParsePrefix("fd00:97::1/64")}})
		if err != nil {
			b.Errorf("OpenTUN: %v", err)
			return
		}
		defer tun.Close()
		// b.Run's goroutines are not on this thread: read the link's
		// counters through a handle in this namespace.
		ns, err := netns.Get()
		if err != nil {
			b.Errorf("netns: %v", err)
			return
		}
		defer ns.Close()
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			b.Errorf("netlink: %v", err)
			return
		}
		defer h.Close()
		rx := func() uint64 {
			l, err := h.LinkByName("ovlbench0")
			if err != nil || l.Attrs().Statistics == nil {
				b.Fatalf("link statistics: %v", err)
			}
			return l.Attrs().Statistics.RxPackets
		}
		for _, fam := range []struct {
			name string
			v6   bool
			mss  int
		}{{"v4", false, 1448}, {"v6", true, 1428}} {
			b.Run(fam.name, func(b *testing.B) {
				bufs, partial := segments(fam.v6, 64, fam.mss)
				// A write rewrites the first packet's headers (lengths,
				// checksum fields); each round starts from the originals
				// (3.8 KB of copying, in the time measured for both).
				const hdrs = 60
				orig := make([][hdrs]byte, len(bufs))
				for i, buf := range bufs {
					orig[i] = [hdrs]byte(buf[stack.Headroom:])
				}
				before := rx()
				b.ReportAllocs()
				b.SetBytes(int64(64 * fam.mss))
				for b.Loop() {
					for i, buf := range bufs {
						copy(buf[stack.Headroom:], orig[i][:])
					}
					if _, err := tun.WritePartial(bufs, partial, stack.Headroom); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(rx()-before)/float64(b.N), "writes/op")
			})
		}
	})
}

// dialIn dials address from a thread inside the network namespace at
// path (the socket stays in that namespace).
func dialIn(t *testing.T, path, network, address string) (net.Conn, error) {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the runtime discards the thread
		ns, err := netns.GetFromPath(path)
		if err != nil {
			ch <- res{nil, err}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			ch <- res{nil, err}
			return
		}
		var d net.Dialer
		d.Timeout = 10 * time.Second
		c, err := d.Dial(network, address)
		ch <- res{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// TestNetnsTUNTCPv6: an endpoint's device carries a TCP transfer over
// IPv6 from a socket in its namespace to a netstack peer, byte-exact,
// through wireguard's Read (TSO split, counted in OutGSO) and Write.
func TestNetnsTUNTCPv6(t *testing.T) {
	needTools(t, "ip")
	_, path := testNetns(t)
	dev, err := stack.OpenNetnsTUN(stack.NetnsTUNOptions{Netns: path, MTU: 1500,
		Addrs: []netip.Prefix{netip.MustParsePrefix("fd00:96::5/64")}, DefaultRoute: true})
	if err != nil {
		t.Fatalf("OpenNetnsTUN: %v", err)
	}
	peer, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{netip.MustParsePrefix("fd00:96::1/64")}, MTU: 1500})
	if err != nil {
		dev.Close()
		t.Fatal(err)
	}
	stop := stacktest.Wire(dev, peer)
	defer stop()
	ln, err := peer.Listen("tcp6", "[fd00:96::1]:5201")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const size = 4 << 20
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(9, 6))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		b := make([]byte, size)
		if _, err := io.ReadFull(c, b); err != nil {
			got <- err
			return
		}
		if !bytes.Equal(b, data) {
			got <- errors.New("the netstack received other bytes than were sent")
			return
		}
		got <- nil
	}()
	c, err := dialIn(t, path, "tcp6", "[fd00:96::1]:5201")
	if err != nil {
		t.Fatalf("dial from the namespace: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatalf("write: %v", err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the transfer did not end within 30s")
	}
	st := dev.Stats()
	t.Logf("endpoint device: %+v", st)
	if st.OutGSO == 0 || st.DropRead != 0 {
		t.Errorf("Stats = %+v, want super-packets split (OutGSO > 0) and none dropped", st)
	}
}

// TestTUNPartialPairTCPv6 runs a byte-exact kernel TCP transfer over
// IPv6 each way between two TUNs in two namespaces, pumped through
// ReadPartial and WritePartial as two overlayd nodes do: the segments
// stay partial end to end (the TUNs are PartialWriter6s), and the
// receiving TUN's TCPv6 TSO writes carry them to a kernel that accepts
// them as they are (it counts fewer packets than were written).
func TestTUNPartialPairTCPv6(t *testing.T) {
	needTools(t, "ip")
	const size = 8 << 20
	_, path := testNetns(t)
	type side struct {
		tun *stack.TUN
		ln  net.Listener
		err error
	}
	opened := make(chan side, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the runtime discards the thread
		ns, err := netns.GetFromPath(path)
		if err != nil {
			opened <- side{err: err}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			opened <- side{err: err}
			return
		}
		tun, err := stack.OpenTUN(stack.TUNOptions{Name: "ovlpair6b", MTU: 1500, Addrs: []netip.Prefix{netip.MustParsePrefix("fd00:95::2/64")}})
		if err != nil {
			opened <- side{err: err}
			return
		}
		ln, err := net.Listen("tcp6", "[fd00:95::2]:5201")
		if err != nil {
			tun.Close()
		}
		opened <- side{tun: tun, ln: ln, err: err}
	}()
	b := <-opened
	if b.err != nil {
		t.Fatalf("the second TUN and its listener: %v", b.err)
	}
	defer b.tun.Close()
	defer b.ln.Close()
	inNetns(t, func() {
		const name = "ovlpair6a"
		a, err := stack.OpenTUN(stack.TUNOptions{Name: name, MTU: 1500, Addrs: []netip.Prefix{netip.MustParsePrefix("fd00:95::1/64")}})
		if err != nil {
			t.Errorf("OpenTUN: %v", err)
			return
		}
		var wg sync.WaitGroup
		var toB, toA, partialAB, partialBA atomic.Int64
		wg.Add(2)
		go pumpPartial(a, b.tun, &toB, &partialAB, &wg)
		go pumpPartial(b.tun, a, &toA, &partialBA, &wg)
		defer func() {
			a.Close()
			b.tun.Close()
			wg.Wait()
		}()
		data := make([]byte, size)
		r := rand.New(rand.NewPCG(6, 7))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		echoed := make(chan error, 1)
		go func() {
			c, err := b.ln.Accept()
			if err != nil {
				echoed <- err
				return
			}
			defer c.Close()
			got := make([]byte, size)
			if _, err := io.ReadFull(c, got); err != nil {
				echoed <- err
				return
			}
			if !bytes.Equal(got, data) {
				echoed <- errors.New("the second namespace received other bytes than were sent")
				return
			}
			_, err = c.Write(got)
			echoed <- err
		}()
		before := linkStats(t, name)
		c, err := net.DialTimeout("tcp6", "[fd00:95::2]:5201", 10*time.Second)
		if err != nil {
			t.Errorf("dial [fd00:95::2]:5201: %v", err)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(data); err != nil {
			t.Errorf("write: %v", err)
			return
		}
		back := make([]byte, size)
		if _, err := io.ReadFull(c, back); err != nil {
			t.Errorf("read back: %v", err)
			return
		}
		if err := <-echoed; err != nil {
			t.Errorf("second namespace: %v", err)
			return
		}
		if !bytes.Equal(back, data) {
			t.Error("the echo differs from what was sent")
		}
		gotIn := linkStats(t, name).RxPackets - before.RxPackets
		t.Logf("a → b: %d segments written, %d partial; b → a: %d segments written, %d partial, %d packets a's kernel received",
			toB.Load(), partialAB.Load(), toA.Load(), partialBA.Load(), gotIn)
		if partialAB.Load() == 0 || partialBA.Load() == 0 {
			t.Errorf("partial IPv6 segments read: %d a → b, %d b → a; want some each way", partialAB.Load(), partialBA.Load())
		}
		if gotIn*2 > uint64(toA.Load()) {
			t.Errorf("a's kernel received %d packets for %d segments written: not coalesced", gotIn, toA.Load())
		}
	})
}
