//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
)

// An IPv6 underlay (issue 14) in network namespaces: the lab's hosts
// listen for VXLAN, and gossip, on their IPv6 underlay addresses
// (2001:2::N) only, with the commands a user types.

// fragsCreated is how many IPv6 fragments h's kernel has made
// (Ip6FragCreates): overlayd's datagrams must fit the underlay whole.
func fragsCreated(t *testing.T, h *Host) int {
	t.Helper()
	for _, line := range strings.Split(h.Run("cat", "/proc/net/snmp6"), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Ip6FragCreates" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("%s: Ip6FragCreates %q: %v", h.Name, f[1], err)
			}
			return n
		}
	}
	t.Fatalf("%s: no Ip6FragCreates in /proc/net/snmp6", h.Name)
	return 0
}

// TestNetnsV6UnderlayStatic: static mode over an IPv6 underlay in tun
// mode, dual-stack inside (--addr twice, peers with bracketed IPv6
// VTEPs, one without a port): the attachment's MTU is the underlay's
// less 70 (1430), ovl0 holds both addresses, IPv4 and IPv6 ping both
// ways, 1430-byte packets of either family with DF set cross (1500 on
// the wire, unfragmented), and 16 MiB move byte-exact over TCP each way
// over IPv4 and one way over IPv6, with no IPv6 fragment made.
func TestNetnsV6UnderlayStatic(t *testing.T) {
	RequireRoot(t, "ping")
	lab := NewLab(t, 2, 1500)
	ods := make([]*Overlayd, 2)
	for i, h := range lab.Hosts {
		other := lab.Hosts[1-i]
		ods[i] = h.StartOverlayd("--mode", "tun", "--listen", fmt.Sprintf("[%s]:4789", h.Underlay6),
			"--addr", fmt.Sprintf("10.202.0.%d/24", i+1), "--addr", fmt.Sprintf("fd00:202::%d/64", i+1),
			"--peer", fmt.Sprintf("10.202.0.%d@[%s]:4789", 2-i, other.Underlay6),
			"--peer", fmt.Sprintf("fd00:202::%d/128@%s", 2-i, other.Underlay6))
	}
	for i, o := range ods {
		h := lab.Hosts[i]
		st, err := o.Status()
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("[%s]:4789", h.Underlay6); st.VTEP != want || st.MTU != 1430 || st.PathMTU != 1430 {
			t.Errorf("%s: VTEP %s, MTU %d, path MTU %d; want %s, 1430, 1430 (1500 less 70 over IPv6)", h.Name, st.VTEP, st.MTU, st.PathMTU, want)
		}
		out := h.Run("ip", "addr", "show", "dev", "ovl0")
		for _, want := range []string{"mtu 1430", fmt.Sprintf("inet 10.202.0.%d/24", i+1), fmt.Sprintf("inet6 fd00:202::%d/64", i+1)} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: ovl0 lacks %q:\n%s", h.Name, want, out)
			}
		}
	}
	h1, h2 := lab.Hosts[0], lab.Hosts[1]
	frags := fragsCreated(t, h1) + fragsCreated(t, h2)
	pingOK(t, h1, "10.202.0.2")
	pingOK(t, h2, "10.202.0.1")
	pingOK(t, h1, "fd00:202::2")
	pingOK(t, h2, "fd00:202::1")
	// 1402 bytes of ICMP payload: a 1430-byte IPv4 packet (1382 for
	// IPv6, whose header is 40), 1500 on the IPv6 underlay with its 70
	// bytes of VXLAN.
	for dst, size := range map[string]string{"10.202.0.2": "1402", "fd00:202::2": "1382"} {
		if out, err := h1.Try("ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", size, dst); err != nil {
			t.Errorf("h1: ping %s of 1430-byte packets with DF: %v\n%s", dst, err, out)
		}
	}
	if t.Failed() {
		t.Fatalf("h1 log:\n%s\nh2 log:\n%s", ods[0].Output(), ods[1].Output())
	}
	transfer(t, h1, h2, netip.MustParseAddrPort("10.202.0.2:5001"), 16<<20)
	transfer(t, h2, h1, netip.MustParseAddrPort("10.202.0.1:5002"), 16<<20)
	transfer(t, h1, h2, netip.MustParseAddrPort("[fd00:202::2]:5004"), 16<<20)
	if now := fragsCreated(t, h1) + fragsCreated(t, h2); now != frags {
		t.Errorf("the hosts made %d IPv6 fragments: VXLAN datagrams did not fit the underlay", now-frags)
	}
	for i, o := range ods {
		if n := o.Drops(); n > 0 {
			st, _ := o.Status()
			t.Logf("h%d drops: %v", i+1, st.Traffic.Drops)
		}
	}
}

// TestNetnsV6UnderlayGossip: gossip over IPv6: host 1 gossips on its
// IPv6 address, host 2 on [::] (it tells the cluster its unique local or
// global address, here 2001:2::2) and joins a bare IPv6 address (port
// 7946); both VTEPs listen on [::] and are told as the hosts' IPv6
// addresses. The peers see each other at IPv6 gossip addresses and
// VTEPs, and on a dual-stack network they create and join, the nodes
// ping over both families and move 16 MiB byte-exact over each, over the
// IPv6 underlay.
func TestNetnsV6UnderlayGossip(t *testing.T) {
	RequireRoot(t, "ping")
	lab := NewLab(t, 2, 1500)
	h1, h2 := lab.Hosts[0], lab.Hosts[1]
	o1 := h1.StartOverlayd("--mode", "tun", "--listen", "[::]:4789", "--gossip", fmt.Sprintf("[%s]:7946", h1.Underlay6),
		"--gossip-profile", "test", "--state-dir", t.TempDir())
	o2 := h2.StartOverlayd("--mode", "tun", "--listen", "[::]:4789", "--gossip", "[::]:7946", "--join", h1.Underlay6.String(),
		"--gossip-profile", "test", "--state-dir", t.TempDir())
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	cli := func(h *Host, o *Overlayd, args ...string) string {
		t.Helper()
		return h.Run(append([]string{bin}, append(args, "--control", o.Control)...)...)
	}
	want := map[string]string{
		"h1": fmt.Sprintf("[%s]:7946 [%s]:4789", h1.Underlay6, h1.Underlay6),
		"h2": fmt.Sprintf("[%s]:7946 [%s]:4789", h2.Underlay6, h2.Underlay6),
	}
	testutil.Eventually(t, 15*time.Second, "both peers alive at their IPv6 addresses", func() error {
		for i, o := range []*Overlayd{o1, o2} {
			out := cli(lab.Hosts[i], o, "peers")
			for name, addrs := range want {
				found := false
				for _, line := range strings.Split(out, "\n") {
					f := strings.Fields(line)
					if len(f) >= 2 && f[0] == name && strings.Contains(line, " alive ") && strings.Contains(strings.Join(f, " "), addrs) {
						found = true
					}
				}
				if !found {
					return fmt.Errorf("h%d's peers lack %s alive at %s:\n%s", i+1, name, addrs, out)
				}
			}
		}
		return nil
	})
	cli(h1, o1, "network", "create", "blue", "--cidr", "10.203.0.0/16", "--cidr", "fd00:203::/64")
	cli(h1, o1, "network", "join", "blue")
	cli(h2, o2, "network", "join", "blue")
	addrOf := func(h *Host, cidr string) netip.Addr {
		t.Helper()
		var a netip.Addr
		testutil.Eventually(t, 10*time.Second, h.Name+"'s address in "+cidr, func() error {
			out := h.Run("ip", "-o", "addr", "show", "dev", "ovl0")
			for _, f := range strings.Fields(out) {
				if p, err := netip.ParsePrefix(f); err == nil && netip.MustParsePrefix(cidr).Contains(p.Addr()) {
					a = p.Addr()
					return nil
				}
			}
			return fmt.Errorf("ovl0 has:\n%s", out)
		})
		return a
	}
	a1, a2 := addrOf(h1, "10.203.0.0/16"), addrOf(h2, "10.203.0.0/16")
	b1, b2 := addrOf(h1, "fd00:203::/64"), addrOf(h2, "fd00:203::/64")
	testutil.Eventually(t, 15*time.Second, "routes over the IPv6 underlay", func() error {
		for i, c := range []struct {
			h    *Host
			o    *Overlayd
			peer netip.Addr
			vtep netip.Addr
		}{{h1, o1, a2, h2.Underlay6}, {h2, o2, a1, h1.Underlay6}} {
			out := cli(c.h, c.o, "routes")
			if !strings.Contains(out, c.peer.String()) || !strings.Contains(out, fmt.Sprintf("[%s]:4789", c.vtep)) {
				return fmt.Errorf("h%d's routes lack %v at [%v]:4789:\n%s", i+1, c.peer, c.vtep, out)
			}
		}
		return nil
	})
	pingOK(t, h1, a2.String())
	pingOK(t, h2, a1.String())
	pingOK(t, h1, b2.String())
	pingOK(t, h2, b1.String())
	if t.Failed() {
		t.Fatalf("h1 log:\n%s\nh2 log:\n%s", o1.Output(), o2.Output())
	}
	transfer(t, h1, h2, netip.AddrPortFrom(a2, 5003), 16<<20)
	transfer(t, h2, h1, netip.AddrPortFrom(b1, 5005), 16<<20)
}

// TestNetnsV6UnderlayMDNS: ZeroConf over IPv6: two hosts gossiping on
// their IPv6 underlay addresses with --discover mdns and no seed find
// each other over ff02::fb and become members of one cluster.
func TestNetnsV6UnderlayMDNS(t *testing.T) {
	RequireRoot(t)
	lab := NewLab(t, 2, 1500)
	var ods []*Overlayd
	for _, h := range lab.Hosts {
		ods = append(ods, h.StartOverlayd("--mode", "netstack", "--listen", fmt.Sprintf("[%s]:4789", h.Underlay6),
			"--gossip", fmt.Sprintf("[%s]:7946", h.Underlay6), "--gossip-profile", "test", "--discover", "mdns"))
	}
	took := testutil.Eventually(t, 15*time.Second, "the two hosts members of one cluster through mDNS over IPv6", func() error {
		for i, o := range ods {
			names, err := peerNames(o)
			if err != nil {
				return err
			}
			if strings.Join(names, ",") != "h1,h2" {
				return fmt.Errorf("h%d sees %v", i+1, names)
			}
		}
		return nil
	})
	t.Logf("one cluster %v after both daemons answered", took)
}
