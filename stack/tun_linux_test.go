package stack_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/stack"
)

// needRoot skips without root, but fails under CI=true, where the
// privileged tests must run.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root (CAP_NET_ADMIN) to create a TUN device, and CI=true: run the tests as root")
	}
	t.Skip("needs root (CAP_NET_ADMIN) to create a TUN device")
}

// inNetns runs f on a goroutine whose OS thread sits in a fresh network
// namespace, which is removed afterwards even if f fails. The thread is
// never unlocked, so the runtime discards it rather than reuse it.
func inNetns(t testing.TB, f func()) {
	t.Helper()
	name := fmt.Sprintf("ovltest-stack-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		ns, err := netns.GetFromName(name)
		if err != nil {
			t.Errorf("netns %s: %v", name, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			t.Errorf("enter netns %s: %v", name, err)
			return
		}
		f()
	}()
	<-done
}

func TestTUN(t *testing.T) {
	needRoot(t)
	const (
		name = "ovltest0"
		mtu  = 1400
	)
	self := netip.MustParsePrefix("10.99.0.1/24")
	peer := netip.MustParseAddr("10.99.0.2")
	extra := netip.MustParsePrefix("10.98.0.0/16")
	inNetns(t, func() {
		tun, err := stack.OpenTUN(stack.TUNOptions{Name: name, MTU: mtu, Addrs: []netip.Prefix{self}, Routes: []netip.Prefix{extra}})
		if err != nil {
			t.Errorf("OpenTUN: %v", err)
			return
		}
		defer tun.Close()
		if tun.Name() != name || tun.Layer() != stack.L3 || tun.MTU() != mtu || tun.BatchSize() < 1 {
			t.Errorf("Name %q Layer %v MTU %d BatchSize %d", tun.Name(), tun.Layer(), tun.MTU(), tun.BatchSize())
		}
		t.Logf("BatchSize() = %d", tun.BatchSize())

		link, err := netlink.LinkByName(name)
		if err != nil {
			t.Errorf("LinkByName(%s): %v", name, err)
			return
		}
		if got := link.Attrs().MTU; got != mtu {
			t.Errorf("link MTU = %d, want %d", got, mtu)
		}
		if link.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("link flags %v, want up", link.Attrs().Flags)
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			t.Error(err)
		}
		if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IPNet.String() == self.String() }) {
			t.Errorf("addresses %v, want %v", addrs, self)
		}
		routes, err := netlink.RouteList(link, netlink.FAMILY_V4)
		if err != nil {
			t.Error(err)
		}
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool { return r.Dst != nil && r.Dst.String() == extra.String() }) {
			t.Errorf("routes %v, want one to %v", routes, extra)
		}

		// A peer's echo request in; the kernel's echo reply out.
		req := echoRequest(peer, self.Addr(), 9)
		buf := append(make([]byte, stack.Headroom), req...)
		if _, err := tun.Write([][]byte{buf}, stack.Headroom); err != nil {
			t.Errorf("Write: %v", err)
			return
		}
		got := make(chan error, 1)
		go func() {
			bufs := make([][]byte, tun.BatchSize())
			for i := range bufs {
				bufs[i] = make([]byte, stack.Headroom+65535)
			}
			sizes := make([]int, len(bufs))
			for {
				n, err := tun.Read(bufs, sizes, stack.Headroom)
				if err != nil {
					got <- err
					return
				}
				for i := range n {
					if isEchoReply(bufs[i][stack.Headroom:stack.Headroom+sizes[i]], self.Addr(), peer, 9) {
						got <- nil
						return
					}
				}
			}
		}()
		select {
		case err := <-got:
			if err != nil {
				t.Errorf("Read: %v", err)
			}
		case <-time.After(5 * time.Second):
			tun.Close()
			<-got
			t.Error("no echo reply from the kernel within 5s")
		}

		if err := tun.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := tun.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := netlink.LinkByName(name); err == nil {
			t.Errorf("link %s still exists after Close", name)
		}
	})
}

func isEchoReply(pkt []byte, src, dst netip.Addr, seq uint16) bool {
	if header.IPVersion(pkt) != 4 {
		return false
	}
	ip := header.IPv4(pkt)
	if !ip.IsValid(len(pkt)) || ip.TransportProtocol() != header.ICMPv4ProtocolNumber ||
		ip.SourceAddress() != tcpipAddr(src) || ip.DestinationAddress() != tcpipAddr(dst) {
		return false
	}
	icmp := header.ICMPv4(ip.Payload())
	return len(icmp) >= header.ICMPv4MinimumSize && icmp.Type() == header.ICMPv4EchoReply && icmp.Sequence() == seq
}

// TestOpenTUNNoPrivilege runs itself again without CAP_NET_ADMIN and
// checks the one-sentence error.
func TestOpenTUNNoPrivilege(t *testing.T) {
	if os.Getenv("OVERLAYD_TEST_NOPRIV") == "1" {
		if stack.CanCreateTUN() {
			t.Fatal("CanCreateTUN() = true without CAP_NET_ADMIN")
		}
		tun, err := stack.OpenTUN(stack.TUNOptions{Name: "ovlnopriv0"})
		if err == nil {
			tun.Close()
			t.Fatal("OpenTUN without CAP_NET_ADMIN succeeded")
		}
		want := `stack: create TUN "ovlnopriv0": operation not permitted; run as root, grant CAP_NET_ADMIN (setcap cap_net_admin+ep overlayd), or use --mode netstack`
		if err.Error() != want {
			t.Errorf("OpenTUN error = %q, want %q", err, want)
		}
		if !errors.Is(err, stack.ErrPermission) || !errors.Is(err, os.ErrPermission) {
			t.Errorf("OpenTUN error %v does not wrap ErrPermission and os.ErrPermission", err)
		}
		tap, err := stack.OpenTAP(stack.TAPOptions{Name: "ovlnopriv1"})
		if err == nil {
			tap.Close()
			t.Fatal("OpenTAP without CAP_NET_ADMIN succeeded")
		}
		if !errors.Is(err, stack.ErrPermission) {
			t.Errorf("OpenTAP error %v does not wrap ErrPermission", err)
		}
		return
	}
	needRoot(t)
	if !stack.CanCreateTUN() {
		t.Error("CanCreateTUN() = false as root")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv(1) to drop CAP_NET_ADMIN")
	}
	cmd := exec.Command(setpriv, "--bounding-set=-net_admin", "--inh-caps=-net_admin", "--",
		os.Args[0], "-test.run=^TestOpenTUNNoPrivilege$", "-test.v")
	cmd.Env = append(os.Environ(), "OVERLAYD_TEST_NOPRIV=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestOpenTUNNoPrivilege") {
		t.Errorf("unprivileged run: %v\n%s", err, out)
	}
}

func TestTAP(t *testing.T) {
	needRoot(t)
	const name = "ovltap0"
	self := netip.MustParsePrefix("10.97.0.1/24")
	inNetns(t, func() {
		tap, err := stack.OpenTAP(stack.TAPOptions{Name: name, MTU: 1400, Addrs: []netip.Prefix{self}})
		if err != nil {
			t.Errorf("OpenTAP: %v", err)
			return
		}
		defer tap.Close()
		link, err := netlink.LinkByName(name)
		if err != nil {
			t.Errorf("LinkByName(%s): %v", name, err)
			return
		}
		if link.Attrs().MTU != 1400 || link.Attrs().Flags&net.FlagUp == 0 || tap.Layer() != stack.L2 {
			t.Errorf("MTU %d flags %v layer %v", link.Attrs().MTU, link.Attrs().Flags, tap.Layer())
		}
		// The kernel resolves a neighbour on the TAP: an ARP request frame
		// comes out of Read.
		got := make(chan error, 1)
		go func() {
			bufs := [][]byte{make([]byte, stack.Headroom+1600)}
			sizes := []int{0}
			for {
				if _, err := tap.Read(bufs, sizes, stack.Headroom); err != nil {
					got <- err
					return
				}
				f := bufs[0][stack.Headroom : stack.Headroom+sizes[0]]
				if len(f) >= 14 && f[12] == 0x08 && f[13] == 0x06 {
					got <- nil
					return
				}
			}
		}()
		// Sending to a neighbour makes the kernel ARP for it.
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(10, 97, 0, 2), Port: 9})
		if err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
		select {
		case err := <-got:
			if err != nil {
				t.Errorf("Read: %v", err)
			}
		case <-time.After(5 * time.Second):
			tap.Close()
			<-got
			t.Error("no ARP request from the kernel within 5s")
		}
	})
}
