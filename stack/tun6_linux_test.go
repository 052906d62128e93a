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
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/overlayd/overlayd/stack"
)

// partialDev is a Device that reads and writes partial packets: the TUN
// and the Netstack.
type partialDev interface {
	stack.Device
	stack.PartialReader
	stack.PartialWriter
}

// pumpPartial moves batches from src to dst through ReadPartial and
// WritePartial until src is closed, counting the packets it wrote.
func pumpPartial(src, dst partialDev, wrote *atomic.Int64, wg *sync.WaitGroup) {
	defer wg.Done()
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
		var toPeer, toKernel atomic.Int64
		wg.Add(2)
		go pumpPartial(tun, peer, &toPeer, &wg)
		go pumpPartial(peer, tun, &toKernel, &wg)
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
		if st.DropRead != 0 {
			t.Errorf("DropRead = %d, want 0", st.DropRead)
		}
		if gotIn*2 > uint64(toKernel.Load()) {
			t.Errorf("the kernel received %d packets for %d segments written: not coalesced (GRO)", gotIn, toKernel.Load())
		}
	})
}

func linkStats(t *testing.T, name string) netlink.LinkStatistics {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil || l.Attrs().Statistics == nil {
		t.Errorf("link %s statistics: %v", name, err)
		return netlink.LinkStatistics{}
	}
	return *l.Attrs().Statistics
}
