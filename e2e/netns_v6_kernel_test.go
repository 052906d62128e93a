package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/vxlan"
)

// overlayAddr6 is host i's IPv6 overlay address, as overlayAddr is its
// IPv4 one.
func overlayAddr6(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 2, 0, 15: byte(i)}), 64)
}

// Kernel vxlan devices with IPv6 inside are overlayd's peers both ways
// (issue 14): ping6 and TCP each way, overlayd answering their neighbour
// solicitations (also a Linux host's re-confirmations from its link-local
// address) and resolving their MACs with its own. Over an IPv4 underlay:
// h2's device learns (as KernelVXLAN makes it, and the IPv4 interop test
// uses it) and speaks first; h3's does not learn and answers neighbour
// discovery itself (proxy) from a static entry for overlayd's MAC, and
// overlayd speaks first (it asks, and learns h3's MAC from the answer).
// Over an IPv6 underlay: h5's device learns, with both families inside
// (ARP beside NDP), against a dual-stack overlayd.
func TestNetnsKernelVXLAN6(t *testing.T) {
	RequireRoot(t, "ping", "ethtool")
	lab := NewLab(t, 5, 1500)
	h1, h2, h3, h4, h5 := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2], lab.Hosts[3], lab.Hosts[4]
	a := func(i int) string { return overlayAddr6(i).Addr().String() }
	peer := func(i int, vtep netip.Addr) string {
		return fmt.Sprintf("%s/128@%s", a(i), netip.AddrPortFrom(vtep, 4789))
	}

	// Over IPv4: h1 is overlayd, h2 and h3 kernel peers.
	o1 := h1.StartOverlayd("--mode", "tun", "--listen", netip.AddrPortFrom(h1.Underlay, 4789).String(),
		"--addr", overlayAddr6(1).String(), "--peer", peer(2, h2.Underlay), "--peer", peer(3, h3.Underlay))
	h2.KernelVXLAN6(42, []netip.Prefix{overlayAddr6(2)}, h1.Underlay, 1450)
	// h2 re-confirms its neighbours within a second or two, not half a
	// minute (see reconfirmed); set before it has any.
	h2.Run("sysctl", "-w", "net.ipv6.neigh.vx0.base_reachable_time_ms=500", "net.ipv6.neigh.vx0.delay_first_probe_time=1")
	proxyVXLAN(h3, overlayAddr6(3), h1.Underlay, h3.Underlay)
	// h1's MAC is NodeMAC of its address: 0a:58 and its last four octets.
	h3.Run("ip", "-6", "neigh", "add", a(1), "lladdr", vxlan.NodeMAC(overlayAddr6(1).Addr()).String(), "dev", "vx0", "nud", "permanent")

	// both checks a pair both ways. When the kernel speaks first it has
	// to resolve overlayd's MAC by asking, and overlayd answers (its own
	// solicitation would have taught the kernel otherwise); when overlayd
	// speaks first, it asks and learns the kernel's MAC from the answer.
	both := func(t *testing.T, o *Overlayd, node, kernel *Host, ni, ki int, kernelFirst bool) {
		t.Helper()
		before, err := o.Status()
		if err != nil {
			t.Fatal(err)
		}
		pings := [][2]*Host{{node, kernel}, {kernel, node}}
		if kernelFirst {
			pings[0], pings[1] = pings[1], pings[0]
		}
		for _, p := range pings {
			to := a(ki)
			if p[1] == node {
				to = a(ni)
			}
			if out, err := p[0].Try("ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", to); err != nil {
				t.Fatalf("%s → %s ping6: %v\n%s", p[0].Name, p[1].Name, err, out)
			}
		}
		transfer(t, node, kernel, netip.AddrPortFrom(overlayAddr6(ki).Addr(), 5001), 8<<20)
		transfer(t, kernel, node, netip.AddrPortFrom(overlayAddr6(ni).Addr(), 5002), 8<<20)
		st, err := o.Status()
		if err != nil {
			t.Fatal(err)
		}
		// The kernel learned overlayd's MAC over the tunnel (or was
		// given it): NodeMAC of the node's first address.
		if out := kernel.Run("ip", "-6", "neigh", "show", a(ni), "dev", "vx0"); st.MAC == "" || !strings.Contains(out, st.MAC) {
			t.Errorf("kernel %s's neighbour entry for %s: %q, want lladdr %s", kernel.Name, a(ni), out, st.MAC)
		}
		if n := st.Traffic.Drops["unsupported"]; n != 0 {
			t.Errorf("overlayd %s dropped %d packets as unsupported: %v", node.Name, n, st.Traffic.Drops)
		}
		answered, asked := st.Traffic.ARPAnswers-before.Traffic.ARPAnswers, st.Traffic.ARPAsked-before.Traffic.ARPAsked
		if kernelFirst && answered == 0 {
			t.Errorf("overlayd %s answered no solicitation from kernel %s", node.Name, kernel.Name)
		}
		if !kernelFirst && asked == 0 {
			t.Errorf("overlayd %s sent no solicitation for kernel %s", node.Name, kernel.Name)
		}
		t.Logf("overlayd %s: %d solicitations answered, %d sent; drops %v", node.Name, answered, asked, st.Traffic.Drops)
	}
	t.Run("ipv4-underlay/learning", func(t *testing.T) {
		both(t, o1, h1, h2, 1, 2, true)
		reconfirmed(t, o1, h2, 1)
	})
	t.Run("ipv4-underlay/nolearning-proxy", func(t *testing.T) { both(t, o1, h1, h3, 1, 3, false) })

	// Over IPv6: h4 is overlayd on its IPv6 underlay address, h5 a kernel
	// peer (learning) whose remote is that address; 70 bytes of overhead.
	// Both families inside at once: h4 and h5 also have IPv4 addresses,
	// resolved with ARP beside NDP on the same device.
	t.Run("ipv6-underlay/dual-stack", func(t *testing.T) {
		o4 := h4.StartOverlayd("--mode", "tun", "--listen", netip.AddrPortFrom(h4.Underlay6, 4789).String(),
			"--addr", overlayAddr(4).String(), "--addr", overlayAddr6(4).String(),
			"--peer", fmt.Sprintf("%s/32@%s", overlayAddr(5).Addr(), netip.AddrPortFrom(h5.Underlay6, 4789)), "--peer", peer(5, h5.Underlay6))
		h5.KernelVXLAN6(42, []netip.Prefix{overlayAddr(5), overlayAddr6(5)}, h4.Underlay6, 1430)
		both(t, o4, h4, h5, 4, 5, true)
		if st, _ := o4.Status(); st.MAC != vxlan.NodeMAC(overlayAddr(4).Addr()).String() {
			t.Errorf("h4's MAC is %s, want NodeMAC of its IPv4 address, the first", st.MAC)
		}
		for _, p := range [][2]*Host{{h5, h4}, {h4, h5}} {
			to := overlayAddr(5).Addr().String()
			if p[1] == h4 {
				to = overlayAddr(4).Addr().String()
			}
			if out, err := p[0].Try("ping", "-4", "-c", "3", "-i", "0.2", "-W", "2", to); err != nil {
				t.Errorf("%s → %s ping (IPv4 beside IPv6): %v\n%s", p[0].Name, p[1].Name, err, out)
			}
		}
		if t.Failed() {
			t.Logf("h4 log:\n%s", o4.Output())
		}
	})
	if t.Failed() {
		t.Logf("h1 log:\n%s", o1.Output())
	}
}

// reconfirmed: a Linux host re-confirms a neighbour it has not heard
// from (RFC 4861 §7.3.3: STALE, then on traffic DELAY, then a unicast
// solicitation from its link-local address); overlayd answers it, and
// the host's pings keep getting through. The host's timers were cut to a
// second or so when its device was made, so that it happens within the
// test; each ping is a single packet of a new process, since ping
// confirms the neighbour itself (MSG_CONFIRM) once it has had a reply.
func reconfirmed(t *testing.T, o *Overlayd, kernel *Host, ni int) {
	t.Helper()
	to := overlayAddr6(ni).Addr().String()
	before, err := o.Status()
	if err != nil {
		t.Fatal(err)
	}
	// Every state the entry passes through, to show it never fails.
	mon := kernel.Start("ip", "monitor", "neigh", "dev", "vx0")
	defer mon.Stop()
	var answered uint64
	took := testutil.Eventually(t, 15*time.Second, "overlayd answers the kernel's re-confirmation", func() error {
		if out, err := kernel.Try("ping", "-6", "-c", "1", "-W", "2", to); err != nil {
			t.Fatalf("kernel %s → %s ping6 while re-confirming: %v\n%s\nneighbour: %s", kernel.Name, to, err, out, kernel.Run("ip", "-6", "neigh", "show", "dev", "vx0"))
		}
		st, err := o.Status()
		if err != nil {
			return err
		}
		if answered = st.Traffic.ARPAnswers - before.Traffic.ARPAnswers; answered == 0 {
			return fmt.Errorf("no solicitation answered (neighbour: %s)", kernel.Run("ip", "-6", "neigh", "show", to, "dev", "vx0"))
		}
		return nil
	})
	// The answer comes while the entry probes; it then is reachable.
	testutil.Eventually(t, 5*time.Second, "the kernel's entry for overlayd reachable again", func() error {
		if out := mon.Output(); !strings.Contains(out, "PROBE") || !strings.Contains(out[strings.LastIndex(out, "PROBE"):], "REACHABLE") {
			return fmt.Errorf("neighbour states so far:\n%s", out)
		}
		return nil
	})
	if out := mon.Output(); strings.Contains(out, "FAILED") || strings.Contains(out, "INCOMPLETE") {
		t.Errorf("kernel %s's entry for overlayd failed while re-confirming:\n%s", kernel.Name, out)
	}
	t.Logf("kernel %s re-confirmed overlayd's MAC within %v (overlayd answered %d solicitations)", kernel.Name, took, answered)
}

// proxyVXLAN gives h a kernel vxlan device vx0 as KernelVXLAN6 does, but
// one that does not learn and answers neighbour discovery from its own
// table (proxy), as an agent-managed VTEP (flannel's) is set up.
func proxyVXLAN(h *Host, addr netip.Prefix, remote, local netip.Addr) {
	h.Run("ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789",
		"remote", remote.String(), "local", local.String(), "dev", "eth0", "nolearning", "proxy")
	h.Run("ethtool", "-K", "eth0", "tx", "off") // as KernelVXLAN6: see there
	h.Run("ip", "link", "set", "vx0", "mtu", "1450")
	h.Run("ip", "addr", "add", addr.String(), "dev", "vx0", "nodad")
	h.Run("ip", "link", "set", "vx0", "up")
}
