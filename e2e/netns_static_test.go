//go:build linux

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// Static mode (--addr and --peer, no gossip) in network namespaces, with
// the commands a user types (the underlay is the lab's 198.18.0.0/24).
// DNS is on as by default (StartOverlayd turns it off unless asked), with
// an upstream on the host's loopback that nothing here asks.

// staticDNS are the flags that give a test node the default DNS setup
// without ever forwarding to the machine's own resolvers.
var staticDNS = []string{"--dns", "127.0.0.1:5353", "--dns-upstream", "127.0.0.1:5300"}

// tunAddrs lists the IPv4 addresses on h's ovl0, e.g. ["10.201.0.2/24"].
func tunAddrs(t *testing.T, h *Host) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(h.Run("ip", "-o", "-4", "addr", "show", "dev", "ovl0"), "\n") {
		f := strings.Fields(line)
		if i := slices.Index(f, "inet"); i >= 0 && i+1 < len(f) {
			out = append(out, f[i+1])
		}
	}
	return out
}

// pingOK pings addr from h (3 echoes) and fails the test if none returns.
func pingOK(t *testing.T, h *Host, addr string) {
	t.Helper()
	if out, err := h.Try("ping", "-c", "3", "-i", "0.2", "-W", "2", addr); err != nil {
		t.Errorf("%s: ping %s: %v\n%s", h.Name, addr, err, out)
	} else {
		t.Logf("%s: ping %s: ok", h.Name, addr)
	}
}

// TestNetnsStaticTwoHosts is issue 9 item 1 as filed: two hosts numbered
// .1 and .2 on a /24 must ping each other. host2 used to add the network's
// first address (host1's) to its TUN as its DNS address, so it answered
// host1's address itself. On a static network the DNS address is the
// node's own address.
func TestNetnsStaticTwoHosts(t *testing.T) {
	RequireRoot(t, "ping", "dig")
	lab := NewLab(t, 2, 1500)
	h1, h2 := lab.Hosts[0], lab.Hosts[1]
	ods := make([]*Overlayd, 2)
	for i, h := range lab.Hosts {
		other := lab.Hosts[1-i]
		ods[i] = h.StartOverlayd(append([]string{"--mode", "tun", "--listen", h.Underlay.String() + ":4789",
			"--addr", fmt.Sprintf("10.201.0.%d/24", i+1), "--vni", "4242",
			"--peer", fmt.Sprintf("10.201.0.%d/32@%s:4789", 2-i, other.Underlay)}, staticDNS...)...)
	}
	for i, h := range lab.Hosts {
		if got, want := tunAddrs(t, h), []string{fmt.Sprintf("10.201.0.%d/24", i+1)}; !slices.Equal(got, want) {
			t.Errorf("%s: ovl0 addresses %v, want %v (no address another host may own)", h.Name, got, want)
		}
	}
	pingOK(t, h1, "10.201.0.2")
	pingOK(t, h2, "10.201.0.1")
	if t.Failed() {
		for i, o := range ods {
			t.Logf("h%d log:\n%s", i+1, o.Output())
		}
		t.FailNow()
	}
	// DNS is on each node's own address: the other host asks it through
	// the overlay, the node's own programs through loopback.
	digUntil(t, h2, 10*time.Second, "10.201.0.1", "@10.201.0.1", "h1.static.overlay")
	digUntil(t, h1, 10*time.Second, "10.201.0.2", "+tcp", "@10.201.0.2", "h2.static.overlay")
	digUntil(t, h1, 5*time.Second, "10.201.0.1", "@10.201.0.1", "h1.static.overlay")
	digUntil(t, h1, 5*time.Second, "10.201.0.1", "@127.0.0.1", "-p", "5353", "h1.static.overlay")
	st, err := ods[0].Status()
	if err != nil {
		t.Fatal(err)
	}
	if d := st.DNS; d == nil || !slices.Equal(d.Addrs, []string{"10.201.0.1"}) {
		t.Errorf("h1 status DNS = %+v, want 10.201.0.1 (its own address) served", st.DNS)
	}
}

// TestNetnsStaticKernelPeer is the README's "Running two hosts" with the
// kernel peer on host C, as written: A and B run overlayd, C has only a
// kernel vxlan device. Every pair pings, and C asks A's DNS on A's own
// address (the only DNS address A holds).
func TestNetnsStaticKernelPeer(t *testing.T) {
	RequireRoot(t, "ping", "dig", "ethtool")
	lab := NewLab(t, 3, 1500)
	a, b, c := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2]
	vtep := func(h *Host) string { return h.Underlay.String() + ":4789" }
	oa := a.StartOverlayd(append([]string{"--mode", "tun", "--listen", vtep(a), "--addr", "10.200.1.1/16",
		"--peer", "10.200.2.0/24@" + vtep(b), "--peer", "10.200.3.1@" + vtep(c)}, staticDNS...)...)
	ob := b.StartOverlayd(append([]string{"--mode", "tun", "--listen", vtep(b), "--addr", "10.200.2.1/16",
		"--peer", "10.200.1.0/24@" + vtep(a)}, staticDNS...)...)
	c.Run("ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789",
		"remote", a.Underlay.String(), "local", c.Underlay.String())
	c.Run("ip", "addr", "add", "10.200.3.1/16", "dev", "vx0")
	c.Run("ip", "link", "set", "vx0", "up")
	// The README's note on kernel peers over veth: the kernel must finish
	// the inner checksums itself.
	c.Run("ethtool", "-K", "eth0", "tx", "off")

	for h, want := range map[*Host]string{a: "10.200.1.1/16", b: "10.200.2.1/16"} {
		if got := tunAddrs(t, h); !slices.Equal(got, []string{want}) {
			t.Errorf("%s: ovl0 addresses %v, want [%s]", h.Name, got, want)
		}
	}
	pingOK(t, a, "10.200.2.1")
	pingOK(t, b, "10.200.1.1")
	pingOK(t, a, "10.200.3.1")
	pingOK(t, c, "10.200.1.1")
	if t.Failed() {
		t.Fatalf("A log:\n%s\nB log:\n%s", oa.Output(), ob.Output())
	}
	digUntil(t, c, 10*time.Second, "10.200.1.1", "@10.200.1.1", "h1.static.overlay")
	digUntil(t, b, 10*time.Second, "10.200.1.1", "@10.200.1.1", "h1.static.overlay")
}
