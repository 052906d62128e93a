package stack_test

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/stack"
)

// needTools skips without root or without the programs, but fails under
// CI=true, where the privileged tests must run.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	needRoot(t)
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("needs %s, and CI=true: install it (see .ci/run)", tool)
			}
			t.Skipf("needs %s", tool)
		}
	}
}

var netnsSeq atomic.Int32

// testNetns adds a network namespace (ip netns add, a pid-prefixed name)
// that is deleted when the test ends, also when it fails or deleted it
// itself. It returns the name and the path.
func testNetns(t *testing.T) (name, path string) {
	t.Helper()
	name = fmt.Sprintf("ovltest-%d-nsdev%d", os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	path = "/var/run/netns/" + name
	t.Cleanup(func() {
		if _, err := os.Stat(path); err != nil {
			return // the test deleted it
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name, path
}

// ipIn runs ip -n ns args and returns its output, failing the test on an
// error.
func ipIn(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// linkIn reports whether ns has an interface name.
func linkIn(t *testing.T, ns, name string) bool {
	t.Helper()
	return exec.Command("ip", "-n", ns, "link", "show", "dev", name).Run() == nil
}

func wantContains(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s = %q, want it to contain %q", what, got, w)
		}
	}
}

// pingThrough pings dst from inside ns (ping -c 1), answers the echo
// request the device reads (from src) with a reply written to the device,
// and fails unless ping succeeds.
func pingThrough(t *testing.T, dev stack.Device, ns string, src, dst netip.Addr) {
	t.Helper()
	answered := make(chan error, 1)
	go func() {
		bufs := make([][]byte, dev.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, stack.Headroom+65535)
		}
		sizes := make([]int, len(bufs))
		for {
			n, err := dev.Read(bufs, sizes, stack.Headroom)
			if err != nil {
				answered <- fmt.Errorf("Read: %w", err)
				return
			}
			for i := range n {
				pkt := bufs[i][stack.Headroom : stack.Headroom+sizes[i]]
				reply, ok := echoReplyTo(pkt, src, dst)
				if !ok {
					continue
				}
				if _, err := dev.Write([][]byte{append(make([]byte, stack.Headroom), reply...)}, stack.Headroom); err != nil {
					answered <- fmt.Errorf("Write: %w", err)
					return
				}
				answered <- nil
				return
			}
		}
	}()
	out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-w", "10", dst.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ping %v in %s: %v: %s", dst, ns, err, out)
	}
	select {
	case err := <-answered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ping succeeded but the reader did not answer")
	}
}

// echoReplyTo returns the reply to pkt if it is an ICMPv4 echo request
// from src to dst.
func echoReplyTo(pkt []byte, src, dst netip.Addr) ([]byte, bool) {
	if header.IPVersion(pkt) != 4 {
		return nil, false
	}
	ip := header.IPv4(pkt)
	if !ip.IsValid(len(pkt)) || ip.TransportProtocol() != header.ICMPv4ProtocolNumber ||
		ip.SourceAddress() != tcpipAddr(src) || ip.DestinationAddress() != tcpipAddr(dst) {
		return nil, false
	}
	if icmp := header.ICMPv4(ip.Payload()); len(icmp) < header.ICMPv4MinimumSize || icmp.Type() != header.ICMPv4Echo {
		return nil, false
	}
	reply := header.IPv4(append([]byte(nil), pkt[:ip.TotalLength()]...))
	reply.SetSourceAddress(tcpipAddr(dst))
	reply.SetDestinationAddress(tcpipAddr(src))
	reply.SetChecksum(0)
	reply.SetChecksum(^reply.CalculateChecksum())
	icmp := header.ICMPv4(reply.Payload())
	icmp.SetType(header.ICMPv4EchoReply)
	icmp.SetChecksum(0)
	icmp.SetChecksum(^checksum(icmp))
	return reply, true
}

func TestNetnsTUN(t *testing.T) {
	needTools(t, "ip", "ping")
	ns, path := testNetns(t)
	self4 := netip.MustParsePrefix("10.77.0.2/24")
	self6 := netip.MustParsePrefix("fd77::2/64")
	routed := netip.MustParsePrefix("10.78.0.0/16")

	dev, err := stack.OpenNetnsTUN(stack.NetnsTUNOptions{
		Netns: path, MTU: 1400, Addrs: []netip.Prefix{self4, self6},
		Routes: []netip.Prefix{routed}, DefaultRoute: true,
	})
	if err != nil {
		t.Fatalf("OpenNetnsTUN: %v", err)
	}
	defer dev.Close()
	if dev.Name() != "eth0" || dev.Layer() != stack.L3 || dev.MTU() != 1400 || dev.BatchSize() < 1 ||
		dev.Netns() != path || dev.Persistent() || dev.Gone() {
		t.Errorf("Name %q Layer %v MTU %d BatchSize %d Netns %q Persistent %v Gone %v",
			dev.Name(), dev.Layer(), dev.MTU(), dev.BatchSize(), dev.Netns(), dev.Persistent(), dev.Gone())
	}
	t.Logf("BatchSize() = %d", dev.BatchSize())

	wantContains(t, "link", ipIn(t, ns, "-o", "link", "show", "dev", "eth0"), "mtu 1400", ",UP")
	wantContains(t, "addresses", ipIn(t, ns, "-o", "addr", "show", "dev", "eth0"), "inet 10.77.0.2/24", "inet6 fd77::2/64")
	wantContains(t, "IPv4 routes", ipIn(t, ns, "-4", "route", "show", "dev", "eth0"), "default", "10.77.0.0/24", "10.78.0.0/16")
	wantContains(t, "IPv6 routes", ipIn(t, ns, "-6", "route", "show", "dev", "eth0"), "default", "fd77::/64")

	// Routed into the TUN: the echo request comes out of the device.
	pingThrough(t, dev, ns, self4.Addr(), netip.MustParseAddr("10.78.3.4"))
	// And through the default route.
	pingThrough(t, dev, ns, self4.Addr(), netip.MustParseAddr("192.0.2.7"))

	if err := dev.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := dev.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := dev.Read([][]byte{make([]byte, 2048)}, []int{0}, stack.Headroom); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Close = %v, want os.ErrClosed", err)
	}
	if linkIn(t, ns, "eth0") {
		t.Error("eth0 still exists after Close of a device that is not persistent")
	}
}

func TestNetnsTUNPersist(t *testing.T) {
	needTools(t, "ip", "ping")
	ns, path := testNetns(t)
	const name = "ovlp0"
	self := netip.MustParsePrefix("10.79.0.2/24")
	peer := netip.MustParseAddr("10.79.0.5")

	dev, err := stack.OpenNetnsTUN(stack.NetnsTUNOptions{Netns: path, Name: name, Addrs: []netip.Prefix{self}, Persist: true})
	if err != nil {
		t.Fatalf("OpenNetnsTUN: %v", err)
	}
	if !dev.Persistent() || dev.MTU() != 1450 {
		t.Errorf("Persistent %v MTU %d, want true 1450", dev.Persistent(), dev.MTU())
	}
	if _, err := netlink.LinkByName(name); err == nil {
		t.Errorf("%s is in this process's namespace, not only in %s", name, ns)
	}
	pingThrough(t, dev, ns, self.Addr(), peer)
	if err := dev.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The daemon is gone: the device, its address and its MTU stay.
	wantContains(t, "link after Close", ipIn(t, ns, "-o", "link", "show", "dev", name), "mtu 1450")
	wantContains(t, "addresses after Close", ipIn(t, ns, "-o", "addr", "show", "dev", name), "inet 10.79.0.2/24")
	// Someone else's address: adopting must not touch it.
	ipIn(t, ns, "addr", "add", "10.79.1.2/24", "dev", name)

	dev, err = stack.AdoptNetnsTUN(path, name, nil)
	if err != nil {
		t.Fatalf("AdoptNetnsTUN: %v", err)
	}
	if dev.Name() != name || dev.MTU() != 1450 || !dev.Persistent() {
		t.Errorf("adopted: Name %q MTU %d Persistent %v", dev.Name(), dev.MTU(), dev.Persistent())
	}
	wantContains(t, "addresses after adopt", ipIn(t, ns, "-o", "addr", "show", "dev", name), "inet 10.79.0.2/24", "inet 10.79.1.2/24")
	pingThrough(t, dev, ns, self.Addr(), peer)

	// Held: a second adopt and a delete are refused, the device stays.
	if d, err := stack.AdoptNetnsTUN(path, name, nil); !errors.Is(err, fault.ErrConflict) {
		if d != nil {
			d.Close()
		}
		t.Errorf("second AdoptNetnsTUN = %v, want a conflict", err)
	}
	if err := stack.DeleteNetnsTUN(path, name); !errors.Is(err, fault.ErrConflict) {
		t.Errorf("DeleteNetnsTUN of a held device = %v, want a conflict", err)
	}
	if !linkIn(t, ns, name) {
		t.Fatal("the device went after refused adopt and delete")
	}

	if err := dev.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := stack.DeleteNetnsTUN(path, name); err != nil {
		t.Fatalf("DeleteNetnsTUN: %v", err)
	}
	if linkIn(t, ns, name) {
		t.Error("the device exists after DeleteNetnsTUN")
	}
	want := fmt.Sprintf("stack: no persistent TUN %q in network namespace %q", name, path)
	if err := stack.DeleteNetnsTUN(path, name); !errors.Is(err, fault.ErrNotFound) || err.Error() != want {
		t.Errorf("second DeleteNetnsTUN = %v, want %q (not found)", err, want)
	}
	if d, err := stack.AdoptNetnsTUN(path, name, nil); !errors.Is(err, fault.ErrNotFound) || err.Error() != want {
		if d != nil {
			d.Close()
		}
		t.Errorf("AdoptNetnsTUN of a deleted device = %v, want %q (not found)", err, want)
	}
	if linkIn(t, ns, name) {
		t.Error("AdoptNetnsTUN of a missing device created one")
	}

	// Delete on the Device removes a persistent one it holds.
	dev, err = stack.OpenNetnsTUN(stack.NetnsTUNOptions{Netns: path, Name: name, Persist: true})
	if err != nil {
		t.Fatalf("OpenNetnsTUN: %v", err)
	}
	if err := dev.Delete(); err != nil {
		t.Errorf("Delete: %v", err)
	}
	if linkIn(t, ns, name) {
		t.Error("the device exists after Delete")
	}
}

func TestNetnsTUNErrors(t *testing.T) {
	needTools(t, "ip")
	ns, path := testNetns(t)
	const name = "ovlerr0"
	const give = "; give a path like /var/run/netns/NAME or /proc/PID/ns/net"
	file := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := fmt.Sprintf("/var/run/netns/ovltest-%d-missing", os.Getpid())
	held, err := stack.OpenNetnsTUN(stack.NetnsTUNOptions{Netns: path, Name: "ovlheld0"})
	if err != nil {
		t.Fatalf("OpenNetnsTUN: %v", err)
	}
	defer held.Close()

	for _, tc := range []struct {
		what string
		opts stack.NetnsTUNOptions
		kind *fault.Kind
		want string
	}{
		{"missing", stack.NetnsTUNOptions{Netns: missing}, fault.ErrNotFound,
			fmt.Sprintf("stack: network namespace %q does not exist", missing) + give},
		{"regular file", stack.NetnsTUNOptions{Netns: file}, fault.ErrInvalid,
			fmt.Sprintf("stack: %q is not a network namespace (not a namespace file)", file) + give},
		{"directory", stack.NetnsTUNOptions{Netns: filepath.Dir(file)}, fault.ErrInvalid,
			fmt.Sprintf("stack: %q is not a network namespace (not a namespace file)", filepath.Dir(file)) + give},
		{"uts namespace", stack.NetnsTUNOptions{Netns: "/proc/self/ns/uts"}, fault.ErrInvalid,
			`stack: "/proc/self/ns/uts" is a uts namespace, not a network namespace` + give},
		{"no path", stack.NetnsTUNOptions{}, fault.ErrInvalid, "stack: no network namespace given" + give},
		{"bad name", stack.NetnsTUNOptions{Netns: path, Name: "a/b"}, fault.ErrInvalid,
			`stack: "a/b" is not a valid interface name; use 1 to 15 letters, digits, '-' or '_'`},
		{"long name", stack.NetnsTUNOptions{Netns: path, Name: "ovl0123456789abc"}, fault.ErrInvalid,
			`stack: "ovl0123456789abc" is not a valid interface name; use 1 to 15 letters, digits, '-' or '_'`},
		{"bad prefix", stack.NetnsTUNOptions{Netns: path, Routes: []netip.Prefix{{}}}, fault.ErrInvalid,
			fmt.Sprintf(`stack: TUN "eth0" in network namespace %q: invalid prefix invalid Prefix`, path)},
		{"name taken", stack.NetnsTUNOptions{Netns: path, Name: "lo"}, fault.ErrConflict,
			fmt.Sprintf(`stack: network namespace %q has a device "lo" already; pick another name`, path)},
		{"name held", stack.NetnsTUNOptions{Netns: path, Name: "ovlheld0", Persist: true}, fault.ErrConflict,
			fmt.Sprintf(`stack: network namespace %q has a device "ovlheld0" already; pick another name`, path)},
	} {
		t.Run(tc.what, func(t *testing.T) {
			if tc.opts.Name == "" && tc.opts.Netns != path {
				tc.opts.Name = name
			}
			dev, err := stack.OpenNetnsTUN(tc.opts)
			if err == nil {
				dev.Close()
				t.Fatalf("OpenNetnsTUN(%+v) succeeded", tc.opts)
			}
			if err.Error() != tc.want || !errors.Is(err, tc.kind) {
				t.Errorf("OpenNetnsTUN error = %q (%v), want %q (%v)", err, fault.KindOf(err), tc.want, tc.kind)
			}
			if _, err := netlink.LinkByName(name); err == nil {
				t.Errorf("a device %s was left in this namespace", name)
			}
			if linkIn(t, ns, name) || linkIn(t, ns, "eth0") {
				t.Errorf("a device was left in %s: %s", ns, ipIn(t, ns, "-o", "link"))
			}
		})
	}
	if !linkIn(t, ns, "ovlheld0") {
		t.Error("a refused open of its name removed the held device")
	}

	// Configuring fails half way (the MTU): nothing is left, persistent
	// or not.
	for _, persist := range []bool{false, true} {
		dev, err := stack.OpenNetnsTUN(stack.NetnsTUNOptions{Netns: path, Name: name, MTU: 1 << 20, Persist: persist})
		if err == nil {
			dev.Delete()
			t.Fatal("OpenNetnsTUN with a 1 MiB MTU succeeded")
		}
		t.Logf("persist %v: %v", persist, err)
		if linkIn(t, ns, name) {
			t.Errorf("persist %v: a failed configure left %s behind", persist, name)
		}
	}

	// Adopting what is not a TUN, or a TUN that is not persistent.
	want := fmt.Sprintf(`stack: "lo" in network namespace %q is not a TUN device`, path)
	if d, err := stack.AdoptNetnsTUN(path, "lo", nil); !errors.Is(err, fault.ErrInvalid) || err.Error() != want {
		if d != nil {
			d.Close()
		}
		t.Errorf("AdoptNetnsTUN(lo) = %v, want %q", err, want)
	}
	if d, err := stack.AdoptNetnsTUN(path, "ovlheld0", nil); !errors.Is(err, fault.ErrConflict) {
		if d != nil {
			d.Close()
		}
		t.Errorf("AdoptNetnsTUN of a held device = %v, want a conflict", err)
	}
	if _, err := stack.AdoptNetnsTUN(missing, name, nil); !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("AdoptNetnsTUN(%s) = %v, want not found", missing, err)
	}
	if err := stack.DeleteNetnsTUN("/proc/self/ns/uts", name); !errors.Is(err, fault.ErrInvalid) {
		t.Errorf("DeleteNetnsTUN(/proc/self/ns/uts) = %v, want invalid", err)
	}
}

func TestNetnsTUNGone(t *testing.T) {
	needTools(t, "ip", "unshare", "nsenter")
	t.Run("ip netns del", func(t *testing.T) {
		ns, path := testNetns(t)
		dev, err := stack.OpenNetnsTUN(stack.NetnsTUNOptions{Netns: path})
		if err != nil {
			t.Fatalf("OpenNetnsTUN: %v", err)
		}
		defer dev.Close()
		if dev.Gone() {
			t.Fatal("Gone() = true for a live namespace")
		}
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns del: %v: %s", err, out)
		}
		if !dev.Gone() {
			t.Error("Gone() = false after ip netns del")
		}
	})
	t.Run("process exits", func(t *testing.T) {
		// The shell says so once it is in its new namespace; sleep keeps
		// its PID and namespace.
		cmd := exec.Command("unshare", "--net", "sh", "-c", "echo in; exec sleep 60")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := false
		t.Cleanup(func() {
			if !exited {
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
		if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "in\n" {
			t.Fatalf("unshare said %q (%v), want \"in\"", line, err)
		}
		path := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
		dev, err := stack.OpenNetnsTUN(stack.NetnsTUNOptions{Netns: path, Addrs: []netip.Prefix{netip.MustParsePrefix("10.80.0.2/24")}})
		if err != nil {
			t.Fatalf("OpenNetnsTUN: %v", err)
		}
		defer dev.Close()
		out, err := exec.Command("nsenter", "--net="+path, "ip", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
		if err != nil {
			t.Fatalf("nsenter --net=%s ip addr: %v: %s", path, err, out)
		}
		wantContains(t, "addresses", string(out), "inet 10.80.0.2/24")
		if dev.Gone() {
			t.Fatal("Gone() = true while the process lives")
		}
		cmd.Process.Kill()
		cmd.Wait()
		exited = true
		if !dev.Gone() {
			t.Error("Gone() = false after the namespace's process exited")
		}
	})
}

// TestNetnsTUNNoPrivilege runs itself again without CAP_SYS_ADMIN (which
// entering a namespace needs), then without CAP_NET_ADMIN (which creating
// the TUN needs), and checks each one-sentence error.
func TestNetnsTUNNoPrivilege(t *testing.T) {
	if path := os.Getenv("OVERLAYD_TEST_NETNS"); path != "" {
		want := fmt.Sprintf("stack: enter network namespace %q: operation not permitted; run as root (CAP_SYS_ADMIN and CAP_NET_ADMIN)", path)
		if os.Getenv("OVERLAYD_TEST_NOPRIV") == "net_admin" {
			want = fmt.Sprintf(`stack: create TUN "eth0" in network namespace %q: operation not permitted; run as root (CAP_SYS_ADMIN and CAP_NET_ADMIN)`, path)
		}
		dev, err := stack.OpenNetnsTUN(stack.NetnsTUNOptions{Netns: path})
		if err == nil {
			dev.Close()
			t.Fatal("OpenNetnsTUN without privilege succeeded")
		}
		if err.Error() != want || !errors.Is(err, stack.ErrPermission) || !errors.Is(err, os.ErrPermission) {
			t.Errorf("OpenNetnsTUN error = %q, want %q wrapping ErrPermission and os.ErrPermission", err, want)
		}
		return
	}
	needTools(t, "ip", "setpriv")
	ns, path := testNetns(t)
	for _, drop := range []string{"sys_admin", "net_admin"} {
		cmd := exec.Command("setpriv", "--bounding-set=-"+drop, "--inh-caps=-"+drop, "--",
			os.Args[0], "-test.run=^TestNetnsTUNNoPrivilege$", "-test.v")
		cmd.Env = append(os.Environ(), "OVERLAYD_TEST_NETNS="+path, "OVERLAYD_TEST_NOPRIV="+drop)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestNetnsTUNNoPrivilege") {
			t.Errorf("run without %s: %v\n%s", drop, err, out)
		}
		if linkIn(t, ns, "eth0") {
			t.Errorf("run without %s left eth0 in %s", drop, ns)
		}
	}
}
