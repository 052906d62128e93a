//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/overlayd/overlayd/dns/dnstest"
	"github.com/overlayd/overlayd/internal/testutil"
)

// startDnsmasq runs dnsmasq on 127.0.0.1:5300 in host h's namespace,
// answering example.test (and names under it) with 192.0.2.10, and waits
// until it answers. It logs every query it gets to its output
// ("query[A] NAME from 127.0.0.1"): the upstream queries of a node.
func startDnsmasq(t *testing.T, h *Host) *Proc {
	t.Helper()
	bin := dnstest.RequireDnsmasq(t)
	p := h.Start(bin, "--no-daemon", "--port=5300", "--listen-address=127.0.0.1", "--bind-interfaces",
		"--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--pid-file=", "--log-facility=-", "--log-queries",
		"--user=root", "--group=root", "--address=/example.test/192.0.2.10")
	if _, err := testutil.Poll(5*time.Second, func() error {
		out, _ := h.Try("dig", "+short", "+time=1", "+tries=1", "@127.0.0.1", "-p", "5300", "www.example.test")
		if got := strings.TrimSpace(out); got != "192.0.2.10" {
			return fmt.Errorf("www.example.test = %q", got)
		}
		return nil
	}); err != nil {
		t.Fatalf("%s: dnsmasq did not answer: %v\n%s", h.Name, err, p.Output())
	}
	return p
}

// digUntil runs dig in h until its trimmed output is want, for up to d.
func digUntil(t *testing.T, h *Host, d time.Duration, want string, args ...string) {
	t.Helper()
	args = append([]string{"dig", "+short", "+time=1", "+tries=1"}, args...)
	testutil.Eventually(t, d, fmt.Sprintf("%s: %s = %q", h.Name, strings.Join(args, " "), want), func() error {
		if out, _ := h.Try(args...); strings.TrimSpace(out) != want {
			return fmt.Errorf("got %q", out)
		}
		return nil
	})
	t.Logf("%s: %s → %s", h.Name, strings.Join(args[4:], " "), want)
}

// upstreamAsked reports whether the dnsmasq p was asked for name.
func upstreamAsked(p *Proc, name string) bool {
	return strings.Contains(p.Output(), "] "+name+" from ")
}

// waitUpstream waits until the dnsmasq p has been asked for name.
func waitUpstream(t *testing.T, p *Proc, name string, d time.Duration) {
	t.Helper()
	testutil.Eventually(t, d, fmt.Sprintf("%s: dnsmasq to be asked for %s", p.Host.Name, name), func() error {
		if !upstreamAsked(p, name) {
			return fmt.Errorf("its log:\n%s", p.Output())
		}
		return nil
	})
}

// noAnswer checks that dig (args after dig's own) run in h got no answer:
// REFUSED, or nothing at all.
func noAnswer(t *testing.T, h *Host, args ...string) {
	t.Helper()
	out, _ := h.Try(append([]string{"dig", "+time=2", "+tries=1"}, args...)...)
	refused := strings.Contains(out, "status: REFUSED")
	silent := strings.Contains(out, "timed out") || strings.Contains(out, "no servers could be reached") ||
		strings.Contains(out, "connection refused") || strings.Contains(out, "end of file")
	if !refused && !silent || strings.Contains(out, "ANSWER SECTION") {
		t.Errorf("%s: dig %s answered:\n%s", h.Name, strings.Join(args, " "), out)
		return
	}
	t.Logf("%s: dig %s → refused %v, no reply %v: %s", h.Name, strings.Join(args, " "), refused, silent, firstComment(out))
}

// firstComment is dig's verdict: the header line with the status, or
// else the first ";;" line (an error).
func firstComment(out string) string {
	lines := strings.Split(out, "\n")
	for _, l := range lines {
		if strings.Contains(l, "status: ") {
			return l
		}
	}
	for _, l := range lines {
		if strings.HasPrefix(l, ";; ") && !strings.HasPrefix(l, ";; global options") {
			return l
		}
	}
	return strings.TrimSpace(out)
}

// holdTCP opens n TCP connections to addr from host h's namespace (the
// sockets are made on a thread that entered it) and returns those that
// connected, kept open until the test ends, and how many failed.
func holdTCP(t *testing.T, h *Host, addr string, n int) (open []net.Conn, failed int) {
	t.Helper()
	type result struct {
		conns  []net.Conn
		failed int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		// The sockets are made on this thread while it is in h's
		// namespace; then it goes back to the test's. A thread that ended
		// locked would be killed, and with it, through Pdeathsig, every
		// process the lab started from it: so it is unlocked only once
		// back, and left locked to the goroutine (the runtime then ends
		// it) only if going back fails.
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer self.Close()
		f, err := os.Open("/run/netns/" + h.NS)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("setns %s: %w", h.NS, err)}
			return
		}
		var r result
		for range n {
			c, err := net.DialTimeout("tcp", addr, 3*time.Second)
			if err != nil {
				r.failed++
				continue
			}
			r.conns = append(r.conns, c)
		}
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			r.err = fmt.Errorf("setns back from %s: %w", h.NS, err)
		} else {
			runtime.UnlockOSThread()
		}
		done <- r
	}()
	r := <-done
	t.Cleanup(func() {
		for _, c := range r.conns {
			c.Close()
		}
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.conns, r.failed
}

// TestNetnsDNS: two hosts in tun mode with gossip serve the overlay's
// names on the network's DNS address (host sockets on the TUN's address)
// over UDP and TCP and on their host listeners, and forward other names to
// a dnsmasq on their loopback. A third host on the underlay, not in the
// overlay, that routes the overlay's CIDR through h1 (ip_forward is 0
// everywhere) gets no answer and causes no upstream query, also from a
// source address inside the CIDR; h2's host listener on 0.0.0.0 refuses
// it; and 300 TCP connections from it do not keep the hosts' own dig +tcp
// out (issue 10 §3).
func TestNetnsDNS(t *testing.T) {
	RequireRoot(t, "dig")
	dnstest.RequireDnsmasq(t)
	gl := newGossipLab(t, 3, "test")
	upstream := make([]*Proc, 2)
	for i := range 2 {
		h := gl.lab.Hosts[i]
		upstream[i] = startDnsmasq(t, h)
		seed := gl.lab.Hosts[1-i]
		// h2's host listener is on every address: it must still answer
		// only the host's own programs.
		listen := []string{"127.0.0.1:5353", "0.0.0.0:5353"}[i]
		gl.ods[i] = h.StartOverlayd("--mode", "tun",
			"--listen", fmt.Sprintf("%s:%d", h.Underlay, labVXLANPort),
			"--gossip", fmt.Sprintf("%s:%d", h.Underlay, labGossipPort),
			"--join", fmt.Sprintf("%s:%d", seed.Underlay, labGossipPort),
			"--gossip-profile", "test",
			"--state-dir", filepath.Join(gl.state, h.Name),
			"--dns", listen, "--dns-upstream", "127.0.0.1:5300", "--dns-ttl", "1s")
	}
	addrs := gl.setup()[:2]
	gl.waitRoutes(15*time.Second, "both hosts learn both routes", func(int, map[string]string) bool { return gl.converged("blue") })
	h1, h2, outside := gl.lab.Hosts[0], gl.lab.Hosts[1], gl.lab.Hosts[2]
	const dnsAddr = "10.210.0.1"

	t.Run("overlay", func(t *testing.T) {
		// The DNS address, from a TUN host, over UDP and TCP; the host listener.
		digUntil(t, h1, 10*time.Second, addrs[1], "@"+dnsAddr, "h2.blue.overlay")
		digUntil(t, h2, 10*time.Second, addrs[0], "+tcp", "@"+dnsAddr, "h1.blue.overlay")
		digUntil(t, h1, 5*time.Second, addrs[0], "@127.0.0.1", "-p", "5353", "h1.blue.overlay")
		digUntil(t, h2, 5*time.Second, addrs[0], "+tcp", "@127.0.0.1", "-p", "5353", "h1.blue.overlay")
		digUntil(t, h2, 5*time.Second, "h1.blue.overlay.", "@"+dnsAddr, "-x", addrs[0])
		// Forwarded to the dnsmasq on the host's loopback.
		digUntil(t, h2, 5*time.Second, "192.0.2.10", "@"+dnsAddr, "www.example.test")
		digUntil(t, h1, 5*time.Second, "192.0.2.10", "@127.0.0.1", "-p", "5353", "www.example.test")
		if out := h1.Run("dig", "+time=1", "+tries=1", "@"+dnsAddr, "nosuch.blue.overlay"); !strings.Contains(out, "status: NXDOMAIN") {
			t.Errorf("h1: dig @%s nosuch.blue.overlay:\n%s\nwant NXDOMAIN", dnsAddr, out)
		}
	})

	// A host outside the overlay that sends to the overlay's addresses
	// through h1, from its own address and from one inside the CIDR.
	outside.Run("ip", "route", "add", "10.210.0.0/24", "via", h1.Underlay.String())
	const spoofed = "10.210.0.77"
	outside.Run("ip", "addr", "add", spoofed+"/32", "dev", "eth0")
	for _, h := range []*Host{h1, h2} {
		if v := strings.TrimSpace(h.Run("cat", "/proc/sys/net/ipv4/ip_forward")); v != "0" {
			t.Fatalf("%s: ip_forward = %s, want 0", h.Name, v)
		}
	}

	t.Run("neighbour", func(t *testing.T) {
		var asked []string // names no upstream may be asked for
		for _, src := range []string{outside.Underlay.String(), spoofed} {
			for _, proto := range []string{"+notcp", "+tcp"} {
				name := fmt.Sprintf("outside-%s-%s.example.test", strings.ReplaceAll(src, ".", "-"), proto[1:])
				asked = append(asked, name)
				noAnswer(t, outside, proto, "-b", src, "@"+dnsAddr, name)
				noAnswer(t, outside, proto, "-b", src, "@"+dnsAddr, "h1.blue.overlay")
				// h2's host listener on 0.0.0.0:5353, at h2's underlay address.
				name = "host-" + name
				asked = append(asked, name)
				noAnswer(t, outside, proto, "-b", src, "@"+h2.Underlay.String(), "-p", "5353", name)
			}
		}
		// The host listener on h1's loopback is not on the underlay at all.
		noAnswer(t, outside, "@"+h1.Underlay.String(), "-p", "5353", "h1.blue.overlay")
		// A query after them that is forwarded, on each host, proves that
		// their queries would have reached the upstream by now.
		digUntil(t, h1, 5*time.Second, "192.0.2.10", "@"+dnsAddr, "marker-1.example.test")
		digUntil(t, h2, 5*time.Second, "192.0.2.10", "@127.0.0.1", "-p", "5353", "marker-2.example.test")
		waitUpstream(t, upstream[0], "marker-1.example.test", 5*time.Second)
		waitUpstream(t, upstream[1], "marker-2.example.test", 5*time.Second)
		for i, p := range upstream {
			for _, name := range asked {
				if upstreamAsked(p, name) {
					t.Errorf("h%d's upstream was asked for %s, sent from outside the overlay", i+1, name)
				}
			}
		}
	})

	t.Run("tcp-flood", func(t *testing.T) {
		// More connections than a listener serves at once (256), to h1's
		// DNS address and to h2's host listener, held open meanwhile.
		open1, failed1 := holdTCP(t, outside, dnsAddr+":53", 300)
		open2, failed2 := holdTCP(t, outside, h2.Underlay.String()+":5353", 300)
		t.Logf("from outside: %s:53 %d connected, %d refused; %s:5353 %d connected (then closed by the server), %d refused",
			dnsAddr, len(open1), failed1, h2.Underlay, len(open2), failed2)
		if len(open1) > 0 {
			t.Errorf("%d TCP connections from outside to %s:53 were accepted, want none (the sockets are bound to the TUN and loopback)", len(open1), dnsAddr)
		}
		defer func() {
			for i, o := range gl.ods[:2] {
				select {
				case <-o.done:
					t.Errorf("h%d: overlayd exited during the flood: %v\n%s", i+1, o.err, o.Output())
				default:
				}
			}
		}()
		digUntil(t, h1, 10*time.Second, addrs[1], "+tcp", "@"+dnsAddr, "h2.blue.overlay")
		digUntil(t, h2, 10*time.Second, addrs[0], "+tcp", "@"+dnsAddr, "h1.blue.overlay")
		digUntil(t, h2, 10*time.Second, addrs[0], "+tcp", "@127.0.0.1", "-p", "5353", "h1.blue.overlay")
	})

	st, err := gl.ods[0].Status()
	if err != nil {
		t.Fatal(err)
	}
	if d := st.DNS; d == nil || d.Responses["NOERROR"] == 0 || d.Listen != "127.0.0.1:5353" || len(d.Addrs) != 1 || d.Addrs[0] != dnsAddr {
		t.Errorf("h1 status DNS = %+v; want NOERROR answers, listen 127.0.0.1:5353, %s served", d, dnsAddr)
	}
	if st, err := gl.ods[1].Status(); err != nil || st.DNS == nil || st.DNS.Responses["REFUSED"] == 0 {
		t.Errorf("h2 status DNS = %+v, %v; want REFUSED answers (the outside host at its host listener)", st.DNS, err)
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
