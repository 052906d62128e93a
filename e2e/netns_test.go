package e2e

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
)

// TestHelperProcess is not a test: the netns tests run the test binary in
// a namespace as a small TCP source or sink, or a service backend or UDP
// client, or the endpoints' paced stream and its sink (see helperMain,
// svcHelperMain and epHelperMain).
func TestHelperProcess(t *testing.T) {
	if os.Getenv("OVERLAYD_E2E_HELPER") != "1" {
		return
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	if err := helperMain(args); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// helperMain: "sink ADDR" accepts one TCP connection and prints the
// SHA-256 and length of what arrived; "source ADDR SIZE" sends SIZE
// pseudo-random bytes and prints the same of what it sent.
func helperMain(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: sink ADDR | source ADDR SIZE")
	}
	switch args[0] {
	case "recv", "stream": // for the endpoints' test
		return epHelperMain(args)
	case "sink":
		ln, err := net.Listen("tcp", args[1])
		if err != nil {
			return err
		}
		fmt.Println("listening")
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(h, conn)
		if err != nil {
			return err
		}
		fmt.Printf("sha256 %x %d\n", h.Sum(nil), n)
		return nil
	case "source":
		size, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		var conn net.Conn
		// The sink may not listen yet.
		if _, err := testutil.Poll(10*time.Second, func() (err error) {
			conn, err = net.DialTimeout("tcp", args[1], 5*time.Second)
			return err
		}); err != nil {
			return err
		}
		data := make([]byte, size)
		fill(data, uint64(size))
		if _, err := conn.Write(data); err != nil {
			return err
		}
		if err := conn.Close(); err != nil {
			return err
		}
		fmt.Printf("sha256 %x %d\n", sha256.Sum256(data), size)
		return nil
	}
	return svcHelperMain(args) // "backend" and "udp", for the service tests
}

// helper runs the test binary as a helper in host h.
func (h *Host) helper(args ...string) *Proc {
	h.lab.t.Helper()
	self, err := os.Executable()
	if err != nil {
		h.lab.t.Fatal(err)
	}
	return h.Start(append([]string{"env", "OVERLAYD_E2E_HELPER=1", self, "-test.run=^TestHelperProcess$", "--"}, args...)...)
}

// transfer sends size bytes over TCP from host src to addr (served in
// host dst) and checks they arrive byte-exact.
func transfer(t *testing.T, src, dst *Host, addr netip.AddrPort, size int) {
	t.Helper()
	sink := dst.helper("sink", addr.String())
	sink.WaitOutput(t, 10*time.Second, "listening")
	source := src.helper("source", addr.String(), strconv.Itoa(size))
	if err := source.Wait(2 * time.Minute); err != nil {
		t.Fatalf("%s → %s: source: %v\n%s", src.Name, dst.Name, err, source.Output())
	}
	if err := sink.Wait(30 * time.Second); err != nil {
		t.Fatalf("%s → %s: sink: %v\n%s", src.Name, dst.Name, err, sink.Output())
	}
	sent, got := lastLine(source.Output()), lastLine(sink.Output())
	if !strings.HasPrefix(sent, "sha256 ") || sent != got {
		t.Fatalf("%s → %s: sent %q, received %q", src.Name, dst.Name, sent, got)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func overlayAddr(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i), 1}), 16)
}

// Two overlayd hosts in tun mode, a kernel vxlan peer, and a host that is
// no one's peer, on a veth underlay.
func TestNetnsTUN(t *testing.T) {
	RequireRoot(t, "ping", "iperf3", "ethtool")
	lab := NewLab(t, 4, 1500)
	h1, h2, h3, h4 := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2], lab.Hosts[3]
	vtep := func(h *Host) string { return h.Underlay.String() + ":4789" }

	// h1's TUN is given MTU 1500, more than the 1450 the underlay carries,
	// so the router must answer big DF packets with "fragmentation needed".
	o1 := h1.StartOverlayd("--mode", "tun", "--listen", vtep(h1), "--addr", overlayAddr(1).String(), "--mtu", "1500",
		"--peer", "10.200.2.0/24@"+vtep(h2), "--peer", "10.200.3.1@"+vtep(h3))
	o2 := h2.StartOverlayd("--mode", "tun", "--listen", vtep(h2), "--addr", overlayAddr(2).String(),
		"--peer", "10.200.1.0/24@"+vtep(h1))
	h3.KernelVXLAN(42, overlayAddr(3), h1.Underlay, 1450)
	h4.KernelVXLAN(42, overlayAddr(4), h1.Underlay, 1450)

	st, err := o1.Status()
	if err != nil || st.Mode != "tun" || st.Device != "ovl0" || st.PathMTU != 1450 || st.MTU != 1500 {
		t.Fatalf("h1 status = %+v, %v; want tun on ovl0, MTU 1500, path MTU 1450", st, err)
	}
	if out := h1.Run("ip", "-o", "addr", "show", "dev", "ovl0"); !strings.Contains(out, "10.200.1.1/16") {
		t.Fatalf("h1 ovl0 has no overlay address:\n%s", out)
	}

	t.Run("ping", func(t *testing.T) {
		if out, err := h1.Try("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.200.2.1"); err != nil {
			t.Fatalf("h1 → h2 ping: %v\n%s", err, out)
		}
		if out, err := h2.Try("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.200.1.1"); err != nil {
			t.Fatalf("h2 → h1 ping: %v\n%s", err, out)
		}
	})

	t.Run("transfer", func(t *testing.T) {
		transfer(t, h1, h2, netip.MustParseAddrPort("10.200.2.1:5001"), 32<<20)
		transfer(t, h2, h1, netip.MustParseAddrPort("10.200.1.1:5002"), 32<<20)
	})

	t.Run("iperf3", func(t *testing.T) {
		gbps, err := h1.Iperf(h2, "10.200.2.1", 3, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("iperf3 h1 → h2 through overlayd: %.2f Gbit/s (informational)", gbps)
		n, lost, err := h2.IperfUDP(h1, "10.200.1.1", "100M", 2)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 || lost > 50 {
			t.Fatalf("iperf3 -u h2 → h1: %d bytes received, %.1f%% lost", n, lost)
		}
		t.Logf("iperf3 -u h2 → h1 at 100 Mbit/s: %d bytes, %.2f%% lost (informational)", n, lost)
	})

	t.Run("kernel-vxlan-peer", func(t *testing.T) {
		if out, err := h1.Try("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.200.3.1"); err != nil {
			t.Fatalf("overlayd h1 → kernel h3 ping: %v\n%s", err, out)
		}
		if out, err := h3.Try("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.200.1.1"); err != nil {
			t.Fatalf("kernel h3 → overlayd h1 ping: %v\n%s", err, out)
		}
		transfer(t, h1, h3, netip.MustParseAddrPort("10.200.3.1:5003"), 8<<20)
		transfer(t, h3, h1, netip.MustParseAddrPort("10.200.1.1:5004"), 8<<20)
	})

	// h3, a member (a kernel vxlan peer), claims h2's address and sends
	// from it: h1 drops its frames as not_owner, keeps h2's MAC, and h1's
	// traffic to h2 still gets through (h2 would drop frames to h3's MAC).
	t.Run("forged-source-from-member", func(t *testing.T) {
		before := o1.Drops("not_owner")
		h3.Run("ip", "addr", "add", "10.200.2.1/32", "dev", "vx0")
		defer h3.Run("ip", "addr", "del", "10.200.2.1/32", "dev", "vx0")
		if out, err := h3.Try("ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "10.200.2.1", "10.200.1.1"); err == nil {
			t.Fatalf("h3's ping from h2's address got an answer:\n%s", out)
		}
		if after := o1.Drops("not_owner"); after <= before {
			t.Fatalf("h1 not_owner drops: %d before, %d after; want more", before, after)
		}
		if out, err := h1.Try("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.200.2.1"); err != nil {
			t.Fatalf("h1 → h2 ping after h3's forgery: %v\n%s", err, out)
		}
	})

	t.Run("non-peer-dropped", func(t *testing.T) {
		before := o1.Drops("not_peer")
		if out, err := h4.Try("ping", "-c", "2", "-i", "0.2", "-W", "1", "10.200.1.1"); err == nil {
			t.Fatalf("h4 is no peer of h1, yet its ping got through:\n%s", out)
		}
		if after := o1.Drops("not_peer"); after <= before {
			t.Fatalf("h1 not_peer drops: %d before, %d after; want more", before, after)
		}
	})

	t.Run("icmp-frag-needed", func(t *testing.T) {
		st, _ := o1.Status()
		before := st.Traffic.ICMPSent
		out, err := h1.Try("ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1472", "10.200.2.1")
		if err == nil {
			t.Fatalf("a 1500-byte DF ping crossed a 1450-byte path:\n%s", out)
		}
		if !strings.Contains(out, "1450") {
			t.Errorf("ping output does not report the path MTU 1450:\n%s", out)
		}
		st, _ = o1.Status()
		if st.Traffic.ICMPSent <= before {
			t.Errorf("h1 sent no ICMP error (icmp_sent %d → %d)", before, st.Traffic.ICMPSent)
		}
		// Below the path MTU the same ping goes through.
		if out, err := h1.Try("ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1422", "10.200.2.1"); err != nil {
			t.Errorf("a 1450-byte DF ping failed: %v\n%s", err, out)
		}
	})

	for _, o := range []*Overlayd{o1, o2} {
		if st, err := o.Status(); err == nil {
			t.Logf("%s: out %d pkts, in %d pkts, drops %v", st.Name, st.Traffic.Outbound.Packets, st.Traffic.Inbound.Packets, st.Traffic.Drops)
		}
	}
	if err := o1.Stop(); err != nil {
		t.Errorf("h1 overlayd exit: %v\n%s", err, o1.Output())
	}
	if _, err := h1.Try("ip", "link", "show", "ovl0"); err == nil {
		t.Errorf("ovl0 still exists after overlayd stopped")
	}
}

// A port in use and a missing privilege are clear errors with exit 1.
func TestNetnsClearErrors(t *testing.T) {
	RequireRoot(t, "ethtool")
	lab := NewLab(t, 1, 1500)
	h1 := lab.Hosts[0]
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	h1.KernelVXLAN(42, overlayAddr(9), netip.MustParseAddr("198.18.0.99"), 1450) // holds UDP 4789
	out, err := h1.Try(bin, "run", "--mode", "netstack", "--control", "", "--addr", "10.200.1.1/16", "--listen", "0.0.0.0:4789")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(out, "address already in use") {
		t.Errorf("run on a taken port = %v\n%s\nwant exit 1 and 'address already in use'", err, out)
	}
	if strings.Contains(out, "goroutine ") {
		t.Errorf("run printed a stack trace:\n%s", out)
	}

	// Without CAP_NET_ADMIN, --mode tun says what to do.
	if _, err := exec.LookPath("setpriv"); err == nil {
		out, err = h1.Try("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
			bin, "run", "--mode", "tun", "--control", "", "--addr", "10.200.1.1/16", "--listen", "127.0.0.1:0")
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(out, "--mode netstack") {
			t.Errorf("unprivileged run --mode tun = %v\n%s\nwant exit 1 and advice to use --mode netstack", err, out)
		}
	}
}

// Two hosts in tap mode: the hosts' kernels speak Ethernet (their own ARP
// included) through overlayd, which floods broadcasts to the peer VTEPs
// and learns MACs.
func TestNetnsTAP(t *testing.T) {
	RequireRoot(t, "ping")
	lab := NewLab(t, 2, 1500)
	h1, h2 := lab.Hosts[0], lab.Hosts[1]
	v1, v2 := h1.Underlay.String()+":4789", h2.Underlay.String()+":4789"
	o1 := h1.StartOverlayd("--mode", "tap", "--listen", v1, "--addr", "10.210.1.1/16", "--peer", "10.210.2.0/24@"+v2)
	h2.StartOverlayd("--mode", "tap", "--listen", v2, "--addr", "10.210.2.1/16", "--peer", "10.210.1.0/24@"+v1)
	if out, err := h1.Try("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.210.2.1"); err != nil {
		t.Fatalf("tap h1 → h2 ping: %v\n%s", err, out)
	}
	transfer(t, h2, h1, netip.MustParseAddrPort("10.210.1.1:5005"), 8<<20)
	st, err := o1.Status()
	if err != nil || st.Mode != "tap" || st.Traffic.Inbound.Packets == 0 {
		t.Fatalf("h1 status = %+v, %v", st, err)
	}
}
