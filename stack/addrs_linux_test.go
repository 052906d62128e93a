package stack_test

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/overlayd/overlayd/stack"
)

// TestNetstackSetAddresses: a stack started without addresses gains one,
// serves on it, swaps it for another and loses the first.
func TestNetstackSetAddresses(t *testing.T) {
	ns, err := stack.NewNetstack(stack.NetstackOptions{AddressesLater: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	var _ stack.AddressSetter = ns
	one := netip.MustParsePrefix("10.7.0.5/24")
	two := netip.MustParsePrefix("10.8.0.9/24")
	if _, err := ns.Listen("tcp", "10.7.0.5:80"); err == nil {
		t.Fatal("Listen on an address the stack does not have succeeded")
	}
	for range 2 { // idempotent
		if err := ns.SetAddresses([]netip.Prefix{one}); err != nil {
			t.Fatalf("SetAddresses(%v): %v", one, err)
		}
	}
	ln, err := ns.Listen("tcp", "10.7.0.5:80")
	if err != nil {
		t.Fatalf("Listen after SetAddresses: %v", err)
	}
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := ns.DialContext(ctx, "tcp", "10.7.0.5:80")
	if err != nil {
		t.Fatalf("dial own new address: %v", err)
	}
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Errorf("read %q, %v", buf, err)
	}
	c.Close()
	ln.Close()

	if err := ns.SetAddresses([]netip.Prefix{one, two}); err != nil {
		t.Fatal(err)
	}
	if err := ns.SetAddresses([]netip.Prefix{two}); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Listen("tcp", "10.7.0.5:81"); err == nil {
		t.Error("Listen on a removed address succeeded")
	}
	ln2, err := ns.Listen("tcp", "10.8.0.9:81")
	if err != nil {
		t.Fatalf("Listen on the kept address: %v", err)
	}
	ln2.Close()
	if err := ns.SetAddresses([]netip.Prefix{{}}); err == nil {
		t.Error("SetAddresses with an invalid prefix succeeded")
	}
}

func TestTUNSetAddresses(t *testing.T) {
	needRoot(t)
	first := netip.MustParsePrefix("10.97.0.1/24")
	second := netip.MustParsePrefix("10.96.0.7/16")
	inNetns(t, func() {
		tun, err := stack.OpenTUN(stack.TUNOptions{Name: "ovltest1", Addrs: []netip.Prefix{first}})
		if err != nil {
			t.Errorf("OpenTUN: %v", err)
			return
		}
		defer tun.Close()
		addrs := func() []string {
			link, err := netlink.LinkByName("ovltest1")
			if err != nil {
				t.Error(err)
				return nil
			}
			as, _ := netlink.AddrList(link, netlink.FAMILY_V4)
			var out []string
			for _, a := range as {
				out = append(out, a.IPNet.String())
			}
			slices.Sort(out)
			return out
		}
		if err := tun.SetAddresses([]netip.Prefix{first, second}); err != nil {
			t.Errorf("SetAddresses: %v", err)
			return
		}
		if got, want := addrs(), []string{second.String(), first.String()}; !slices.Equal(got, want) {
			t.Errorf("addresses %v, want %v", got, want)
		}
		if err := tun.SetAddresses([]netip.Prefix{second}); err != nil {
			t.Errorf("SetAddresses: %v", err)
		}
		if got, want := addrs(), []string{second.String()}; !slices.Equal(got, want) {
			t.Errorf("addresses %v, want %v", got, want)
		}

		// IPv6 beside it, on a link whose IPv6 was off: turned on, the
		// address usable at once (NODAD), its prefix routed; then gone.
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/ovltest1/disable_ipv6", []byte("1"), 0); err != nil {
			t.Errorf("disable IPv6 on ovltest1: %v", err)
			return
		}
		six := netip.MustParsePrefix("fd00:97::1/64")
		if err := tun.SetAddresses([]netip.Prefix{second, six}); err != nil {
			t.Errorf("SetAddresses with IPv6: %v", err)
			return
		}
		v6 := func() []netlink.Addr {
			link, _ := netlink.LinkByName("ovltest1")
			as, _ := netlink.AddrList(link, netlink.FAMILY_V6)
			return slices.DeleteFunc(as, func(a netlink.Addr) bool { return a.IP.IsLinkLocalUnicast() })
		}
		if as := v6(); len(as) != 1 || as[0].IPNet.String() != six.String() || as[0].Flags&unix.IFA_F_NODAD == 0 || as[0].Flags&unix.IFA_F_TENTATIVE != 0 {
			t.Errorf("IPv6 addresses %v, want %v, NODAD and not tentative", as, six)
		}
		link, _ := netlink.LinkByName("ovltest1")
		routes, _ := netlink.RouteList(link, netlink.FAMILY_V6)
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool { return r.Dst != nil && r.Dst.String() == six.Masked().String() }) {
			t.Errorf("IPv6 routes %v, want one to %v", routes, six.Masked())
		}
		if got, want := addrs(), []string{second.String()}; !slices.Equal(got, want) {
			t.Errorf("IPv4 addresses %v, want %v kept", got, want)
		}
		if err := tun.SetAddresses([]netip.Prefix{second}); err != nil {
			t.Errorf("SetAddresses without IPv6: %v", err)
		}
		if as := v6(); len(as) != 0 {
			t.Errorf("IPv6 addresses %v after removing it, want none", as)
		}
	})
}
