package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/dns/dnstest"
)

// startDnsmasq runs dnsmasq on 127.0.0.1:5300 in host h's namespace,
// answering example.test (and names under it) with 192.0.2.10, and waits
// until it answers.
func startDnsmasq(t *testing.T, h *Host) {
	t.Helper()
	bin := dnstest.RequireDnsmasq(t)
	p := h.Start(bin, "--no-daemon", "--port=5300", "--listen-address=127.0.0.1", "--bind-interfaces",
		"--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--pid-file=", "--log-facility=-",
		"--user=root", "--group=root", "--address=/example.test/192.0.2.10")
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := h.Try("dig", "+short", "+time=1", "+tries=1", "@127.0.0.1", "-p", "5300", "www.example.test")
		if strings.TrimSpace(out) == "192.0.2.10" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: dnsmasq did not answer: %s\n%s", h.Name, out, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// digUntil runs dig in h until its trimmed output is want, for up to d.
func digUntil(t *testing.T, h *Host, d time.Duration, want string, args ...string) {
	t.Helper()
	args = append([]string{"dig", "+short", "+time=1", "+tries=1"}, args...)
	deadline := time.Now().Add(d)
	for {
		out, _ := h.Try(args...)
		if strings.TrimSpace(out) == want {
			t.Logf("%s: %s → %s", h.Name, strings.Join(args[4:], " "), want)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s = %q, want %q (within %v)", h.Name, strings.Join(args, " "), out, want, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNetnsDNS: two hosts in tun mode with gossip serve the overlay's
// names on the network's DNS address (host sockets bound to the TUN's
// address) over UDP and TCP and on 127.0.0.1:5353, and forward other
// names to a dnsmasq on their loopback; a third host on the underlay, not
// in the overlay, that routes the DNS address to the first gets REFUSED
// or nothing, never an answer.
func TestNetnsDNS(t *testing.T) {
	RequireRoot(t, "dig")
	dnstest.RequireDnsmasq(t)
	gl := newGossipLab(t, 3, "test")
	for i := range 2 {
		h := gl.lab.Hosts[i]
		startDnsmasq(t, h)
		seed := gl.lab.Hosts[1-i]
		gl.ods[i] = h.StartOverlayd("--mode", "tun",
			"--listen", fmt.Sprintf("%s:%d", h.Underlay, labVXLANPort),
			"--gossip", fmt.Sprintf("%s:%d", h.Underlay, labGossipPort),
			"--join", fmt.Sprintf("%s:%d", seed.Underlay, labGossipPort),
			"--gossip-profile", "test",
			"--state-dir", filepath.Join(gl.state, h.Name),
			"--dns", "127.0.0.1:5353", "--dns-upstream", "127.0.0.1:5300", "--dns-ttl", "1s")
	}
	addrs := gl.setup()[:2]
	gl.waitRoutes(15*time.Second, "both hosts learn both routes", func(int, map[string]string) bool { return gl.converged("blue") })
	h1, h2, outside := gl.lab.Hosts[0], gl.lab.Hosts[1], gl.lab.Hosts[2]
	const dnsAddr = "10.210.0.1"

	// The DNS address, from a TUN host, over UDP and TCP; the host listener.
	digUntil(t, h1, 10*time.Second, addrs[1], "@"+dnsAddr, "h2.blue.overlay")
	digUntil(t, h2, 10*time.Second, addrs[0], "+tcp", "@"+dnsAddr, "h1.blue.overlay")
	digUntil(t, h1, 5*time.Second, addrs[0], "@127.0.0.1", "-p", "5353", "h1.blue.overlay")
	digUntil(t, h2, 5*time.Second, "h1.blue.overlay.", "@"+dnsAddr, "-x", addrs[0])
	// Forwarded to the dnsmasq on the host's loopback.
	digUntil(t, h2, 5*time.Second, "192.0.2.10", "@"+dnsAddr, "www.example.test")
	digUntil(t, h1, 5*time.Second, "192.0.2.10", "@127.0.0.1", "-p", "5353", "www.example.test")
	if out := h1.Run("dig", "+time=1", "+tries=1", "@"+dnsAddr, "nosuch.blue.overlay"); !strings.Contains(out, "status: NXDOMAIN") {
		t.Errorf("h1: dig @%s nosuch.blue.overlay:\n%s\nwant NXDOMAIN", dnsAddr, out)
	}

	// A host outside the overlay that sends to the DNS address through h1.
	outside.Run("ip", "route", "add", "10.210.0.0/24", "via", h1.Underlay.String())
	for _, name := range []string{"h1.blue.overlay", "www.example.test"} {
		out, _ := outside.Try("dig", "+time=2", "+tries=1", "@"+dnsAddr, name)
		refused := strings.Contains(out, "status: REFUSED")
		silent := strings.Contains(out, "timed out") || strings.Contains(out, "no servers could be reached")
		if !refused && !silent || strings.Contains(out, "ANSWER SECTION") {
			t.Errorf("%s (outside the overlay): dig @%s %s answered:\n%s", outside.Name, dnsAddr, name, out)
		} else {
			t.Logf("%s (outside): dig @%s %s → refused %v, no reply %v", outside.Name, dnsAddr, name, refused, silent)
		}
	}
	// The host listener is on h1's loopback only.
	if out, _ := outside.Try("dig", "+time=1", "+tries=1", "@"+h1.Underlay.String(), "-p", "5353", "h1.blue.overlay"); strings.Contains(out, "ANSWER SECTION") {
		t.Errorf("%s: the host listener answered on the underlay:\n%s", outside.Name, out)
	}

	st, err := gl.ods[0].Status()
	if err != nil {
		t.Fatal(err)
	}
	if d := st.DNS; d == nil || d.Responses["REFUSED"] == 0 || d.Responses["NOERROR"] == 0 || d.Listen != "127.0.0.1:5353" || len(d.Addrs) != 1 || d.Addrs[0] != dnsAddr {
		t.Errorf("h1 status DNS = %+v; want REFUSED and NOERROR answers, listen 127.0.0.1:5353, %s served", d, dnsAddr)
	}
	bin, _ := Binary()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "status", "--control", gl.ods[0].Control).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "dns: overlay. on 127.0.0.1:5353, "+dnsAddr+":53") {
		t.Errorf("overlayd status: %v\n%s", err, out)
	}
	t.Logf("h1: overlayd status:\n%s", out)
}
