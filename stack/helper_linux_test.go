package stack_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/internal/testutil"

	"github.com/overlayd/overlayd/stack"
)

// TestNetnsHelperProcess is the helper the other tests run (the test
// binary re-executed through nsenter, as overlayd runs itself): it does
// nothing unless given the helper's arguments after "--".
func TestNetnsHelperProcess(t *testing.T) {
	args := flag.Args()
	if len(args) == 0 {
		t.Skip("the rootless helper's entry point for the other tests")
	}
	if fake := os.Getenv("OVERLAYD_TEST_FAKE_HELPER"); fake != "" {
		os.Exit(fakeHelper(fake))
	}
	if err := stack.RunNetnsHelper(args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// fakeHelper answers a request on the helper's socket (descriptor 6)
// with a well-formed reply and the wrong descriptors: /dev/null
// ("notun") or two of them ("twofds").
func fakeHelper(how string) int {
	buf := make([]byte, 1<<16)
	n, _, _, _, err := unix.Recvmsg(6, buf, nil, 0)
	if err != nil {
		return 1
	}
	var req struct {
		MTU int `json:"mtu"`
	}
	json.Unmarshal(buf[:n], &req)
	null, err := unix.Open("/dev/null", unix.O_RDWR, 0)
	if err != nil {
		return 1
	}
	fds := []int{null}
	if how == "twofds" {
		fds = append(fds, null)
	}
	if err := unix.Sendmsg(6, fmt.Appendf(nil, `{"mtu":%d}`, req.MTU), unix.UnixRights(fds...), nil, 0); err != nil {
		return 1
	}
	return 0
}

// testHelper is a NetnsHelper that runs this test binary as the helper.
func testHelper() *stack.NetnsHelper {
	return &stack.NetnsHelper{Path: os.Args[0], Args: []string{"-test.run=^TestNetnsHelperProcess$", "--"}}
}

// rootlessNetns starts a process in a new user namespace (this user
// mapped to root there) and a network namespace it owns, as a rootless
// container runtime does, and returns the process's PID and its
// namespace's path. The process is killed when the test ends.
func rootlessNetns(t *testing.T) (pid int, path string) {
	t.Helper()
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--net", "sh", "-c", "echo in; exec sleep 120")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "in\n" {
		t.Fatalf("unshare --user --map-root-user --net said %q (%v), want \"in\"", line, err)
	}
	return cmd.Process.Pid, fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
}

// inside runs a command in the user and network namespaces of pid and
// returns its output, failing the test on an error.
func inside(t *testing.T, pid int, args ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(pid), "-U", "--preserve-credentials", "-n", "--"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter -t %d -U -n %s: %v: %s", pid, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// linkInside reports whether the namespace of pid has an interface name.
func linkInside(pid int, name string) bool {
	return exec.Command("nsenter", "-t", strconv.Itoa(pid), "-U", "--preserve-credentials", "-n", "--", "ip", "link", "show", "dev", name).Run() == nil
}

// ipAddrs returns the IPv4 addresses of name in the namespace of pid,
// whether it is up and its MTU, from ip -j addr.
func ipAddrs(t *testing.T, pid int, name string) (addrs []string, up bool, mtu int) {
	t.Helper()
	var links []struct {
		Flags    []string `json:"flags"`
		MTU      int      `json:"mtu"`
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	out := inside(t, pid, "ip", "-j", "-4", "addr", "show", "dev", name)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j addr show dev %s = %q (%v), want one link", name, out, err)
	}
	for _, a := range links[0].AddrInfo {
		addrs = append(addrs, fmt.Sprintf("%s/%d", a.Local, a.PrefixLen))
	}
	for _, f := range links[0].Flags {
		up = up || f == "UP"
	}
	return addrs, up, links[0].MTU
}

// pingInside pings dst from inside the namespace of pid and answers the
// echo request the device reads, as pingThrough does for a named
// namespace.
func pingInside(t *testing.T, dev stack.Device, pid int, src, dst netip.Addr) {
	t.Helper()
	answered := make(chan error, 1)
	go func() { answered <- answerOneEcho(dev, src, dst) }()
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-U", "--preserve-credentials", "-n", "--",
		"ping", "-n", "-c", "1", "-w", "10", dst.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ping %v inside: %v: %s", dst, err, out)
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

// answerOneEcho reads dev until an echo request from src to dst comes,
// and writes the reply to it.
func answerOneEcho(dev stack.Device, src, dst netip.Addr) error {
	bufs := make([][]byte, dev.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, stack.Headroom+65535)
	}
	sizes := make([]int, len(bufs))
	for {
		n, err := dev.Read(bufs, sizes, stack.Headroom)
		if err != nil {
			return fmt.Errorf("Read: %w", err)
		}
		for i := range n {
			reply, ok := echoReplyTo(bufs[i][stack.Headroom:stack.Headroom+sizes[i]], src, dst)
			if !ok {
				continue
			}
			if _, err := dev.Write([][]byte{append(make([]byte, stack.Headroom), reply...)}, stack.Headroom); err != nil {
				return fmt.Errorf("Write: %w", err)
			}
			return nil
		}
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestNetnsHelper(t *testing.T) {
	needTools(t, "ip", "ping", "unshare", "nsenter")
	pid, path := rootlessNetns(t)
	self := netip.MustParsePrefix("10.81.0.2/24")
	routed := netip.MustParsePrefix("10.82.0.0/16")
	h := testHelper()
	fds := openFDs(t)

	dev, err := h.Open(stack.NetnsTUNOptions{Netns: path, MTU: 1400, Addrs: []netip.Prefix{self}, Routes: []netip.Prefix{routed}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer dev.Close()
	if !dev.ViaHelper() || dev.Name() != "eth0" || dev.MTU() != 1400 || dev.Netns() != path || dev.Persistent() || dev.Gone() {
		t.Errorf("ViaHelper %v Name %q MTU %d Netns %q Persistent %v Gone %v",
			dev.ViaHelper(), dev.Name(), dev.MTU(), dev.Netns(), dev.Persistent(), dev.Gone())
	}
	addrs, up, mtu := ipAddrs(t, pid, "eth0")
	if len(addrs) != 1 || addrs[0] != self.String() || !up || mtu != 1400 {
		t.Errorf("inside: eth0 addrs %v up %v mtu %d, want [%v] true 1400", addrs, up, mtu, self)
	}
	wantContains(t, "routes inside", inside(t, pid, "ip", "-4", "route", "show", "dev", "eth0"), "10.82.0.0/16", "10.81.0.0/24")
	pingInside(t, dev, pid, self.Addr(), netip.MustParseAddr("10.82.1.1"))
	if err := dev.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if linkInside(pid, "eth0") {
		t.Error("eth0 stayed after Close of a device that is not persistent")
	}
	if got := openFDs(t); got != fds {
		t.Errorf("%d descriptors open after Open and Close, %d before", got, fds)
	}
}

// unprivilegedUser adds a system user for the test, removed when the test
// ends, and returns its uid and gid.
func unprivilegedUser(t *testing.T) (name string, uid, gid int) {
	t.Helper()
	name = fmt.Sprintf("ovlrl%d", os.Getpid())
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	for _, f := range []struct {
		flag string
		v    *int
	}{{"-u", &uid}, {"-g", &gid}} {
		out, err := exec.Command("id", f.flag, name).Output()
		if err != nil {
			t.Fatalf("id %s %s: %v", f.flag, name, err)
		}
		if *f.v, err = strconv.Atoi(strings.TrimSpace(string(out))); err != nil {
			t.Fatalf("id %s %s = %q", f.flag, name, out)
		}
	}
	return name, uid, gid
}

// runAsUser runs this test binary's test named test as uid:gid, without
// any capability, with env added, and fails unless it passes. The binary
// is copied where the user can run it.
func runAsUser(t *testing.T, uid, gid int, test string, env ...string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ovlrootless")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "stack.test")
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", gid), "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", "--", bin, "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("as uid %d:\n%s", uid, out)
	if err != nil || !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatalf("%s as uid %d: %v", test, uid, err)
	}
}

// TestNetnsHelperRootless runs itself again as an unprivileged user, who
// makes a rootless container's namespace (unshare --user --map-root-user
// --net) and gives it a TUN device through the helper: up with its
// address, a ping through it, persistent, adopted and deleted through the
// helper, and the errors of the direct path and of the helper.
func TestNetnsHelperRootless(t *testing.T) {
	if os.Getenv("OVERLAYD_TEST_ROOTLESS") == "1" {
		rootlessInner(t)
		return
	}
	needTools(t, "ip", "ping", "unshare", "nsenter", "setpriv", "useradd", "userdel")
	_, rootful := testNetns(t)
	// A rootless container's namespace, but root's, bind-mounted where
	// the user can open it.
	_, rootsPath := rootlessNetns(t)
	dir, err := os.MkdirTemp("", "ovlrootless")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	roots := filepath.Join(dir, "netns")
	if err := os.WriteFile(roots, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(rootsPath, roots, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount %s: %v", rootsPath, err)
	}
	t.Cleanup(func() { unix.Unmount(roots, unix.MNT_DETACH) })
	_, uid, gid := unprivilegedUser(t)
	// Before /dev/net/tun is open to the user: the helper says so.
	runAsUser(t, uid, gid, "TestNetnsHelperRootless", "OVERLAYD_TEST_ROOTLESS=1", "OVERLAYD_TEST_DEVTUN=closed")
	testutil.OpenDevTUN(t)
	runAsUser(t, uid, gid, "TestNetnsHelperRootless", "OVERLAYD_TEST_ROOTLESS=1", "OVERLAYD_TEST_ROOTFUL="+rootful, "OVERLAYD_TEST_ROOTS="+roots)
}

func rootlessInner(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Fatal("the rootless half runs as root")
	}
	pid, path := rootlessNetns(t)
	h := testHelper()
	self := netip.MustParsePrefix("10.83.0.2/24")
	self6 := netip.MustParsePrefix("fd83::2/64")
	opts := stack.NetnsTUNOptions{Netns: path, Name: "ovlrl0", Addrs: []netip.Prefix{self, self6}, DefaultRoute: true, Persist: true}
	// A container given no IPv6 has it off for new links: the helper
	// turns it on for its device.
	inside(t, pid, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6")

	// The direct path fails for lack of privilege: the sign to use the
	// helper.
	if d, err := stack.OpenNetnsTUN(opts); !errors.Is(err, stack.ErrPermission) {
		if d != nil {
			d.Close()
		}
		t.Fatalf("OpenNetnsTUN as a user = %v, want an error wrapping ErrPermission", err)
	}
	if os.Getenv("OVERLAYD_TEST_DEVTUN") == "closed" {
		want := fmt.Sprintf(`stack: create TUN "ovlrl0" in network namespace %q: /dev/net/tun is not open to this user; make it mode 0666 (chmod 0666 /dev/net/tun), as distributions ship it`, path)
		d, err := h.Open(opts)
		if err == nil {
			d.Delete()
			t.Fatal("Open with /dev/net/tun mode 0600 succeeded")
		}
		if err.Error() != want || !errors.Is(err, stack.ErrPermission) {
			t.Errorf("Open = %q, want %q wrapping ErrPermission", err, want)
		}
		if linkInside(pid, "ovlrl0") {
			t.Error("a failed Open left its device")
		}
		return
	}

	fds := openFDs(t)
	dev, err := h.Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !dev.ViaHelper() || !dev.Persistent() || dev.MTU() != 1450 || dev.Gone() {
		t.Errorf("ViaHelper %v Persistent %v MTU %d Gone %v, want true true 1450 false", dev.ViaHelper(), dev.Persistent(), dev.MTU(), dev.Gone())
	}
	addrs, up, mtu := ipAddrs(t, pid, "ovlrl0")
	if len(addrs) != 1 || addrs[0] != self.String() || !up || mtu != 1450 {
		t.Errorf("inside: ovlrl0 addrs %v up %v mtu %d, want [%v] true 1450", addrs, up, mtu, self)
	}
	wantContains(t, "routes inside", inside(t, pid, "ip", "-4", "route"), "default dev ovlrl0")
	wantContains(t, "IPv6 routes inside", inside(t, pid, "ip", "-6", "route"), "default dev ovlrl0", "fd83::/64 dev ovlrl0")
	// The kernel's own link-local address may still be tentative; ours
	// is usable at once.
	if a6 := inside(t, pid, "ip", "-o", "-6", "addr", "show", "dev", "ovlrl0"); !strings.Contains(a6, "inet6 "+self6.String()+" scope global nodad") {
		t.Errorf("inside: IPv6 addresses of ovlrl0:\n%s\nwant %v, nodad (not tentative)", a6, self6)
	}
	pingInside(t, dev, pid, self.Addr(), netip.MustParseAddr("192.0.2.9"))
	if err := dev.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if addrs, _, _ := ipAddrs(t, pid, "ovlrl0"); len(addrs) != 1 {
		t.Errorf("after Close of a persistent device: addrs %v, want it kept", addrs)
	}

	dev, err = h.Adopt(path, "ovlrl0", nil)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if !dev.ViaHelper() || !dev.Persistent() || dev.MTU() != 1450 {
		t.Errorf("adopted: ViaHelper %v Persistent %v MTU %d", dev.ViaHelper(), dev.Persistent(), dev.MTU())
	}
	pingInside(t, dev, pid, self.Addr(), netip.MustParseAddr("192.0.2.10"))
	if d, err := h.Adopt(path, "ovlrl0", nil); !errors.Is(err, fault.ErrConflict) {
		if d != nil {
			d.Close()
		}
		t.Errorf("second Adopt = %v, want a conflict", err)
	}
	if err := h.Delete(path, "ovlrl0"); !errors.Is(err, fault.ErrConflict) {
		t.Errorf("Delete of a held device = %v, want a conflict", err)
	}
	if err := dev.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := h.Delete(path, "ovlrl0"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if linkInside(pid, "ovlrl0") {
		t.Error("ovlrl0 stayed after Delete")
	}
	want := fmt.Sprintf(`stack: no persistent TUN "ovlrl0" in network namespace %q`, path)
	if err := h.Delete(path, "ovlrl0"); !errors.Is(err, fault.ErrNotFound) || err.Error() != want {
		t.Errorf("second Delete = %v, want %q", err, want)
	}
	if d, err := h.Adopt(path, "ovlrl0", nil); !errors.Is(err, fault.ErrNotFound) || err.Error() != want {
		if d != nil {
			d.Close()
		}
		t.Errorf("Adopt of a deleted device = %v, want %q", err, want)
	}
	if linkInside(pid, "ovlrl0") {
		t.Error("Adopt of a missing device made one")
	}

	// Delete on a helper's Device, persistent: it clears persistence
	// itself (the descriptor's holder may).
	dev, err = h.Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := dev.Delete(); err != nil {
		t.Errorf("Delete: %v", err)
	}
	if linkInside(pid, "ovlrl0") {
		t.Error("ovlrl0 stayed after the Device's Delete")
	}
	if got := openFDs(t); got != fds {
		t.Errorf("%d descriptors open after the helper's work, %d before", got, fds)
	}

	// A namespace of the host's (root's): the helper cannot enter it.
	if rootful := os.Getenv("OVERLAYD_TEST_ROOTFUL"); rootful != "" {
		want := fmt.Sprintf("stack: enter network namespace %q: operation not permitted: it is not a rootless container's (its user namespace is this process's own); run overlayd as root, or as the user whose container it is", rootful)
		d, err := h.Open(stack.NetnsTUNOptions{Netns: rootful})
		if err == nil {
			d.Close()
			t.Fatal("Open of root's namespace as a user succeeded")
		}
		if err.Error() != want || !errors.Is(err, stack.ErrPermission) {
			t.Errorf("Open of root's namespace = %q, want %q wrapping ErrPermission", err, want)
		}
	}
	// Another user's rootless container: the helper may not enter it.
	if roots := os.Getenv("OVERLAYD_TEST_ROOTS"); roots != "" {
		want := fmt.Sprintf("stack: enter network namespace %q: operation not permitted: it belongs to user 0, not to this user (%d); run overlayd as root, or as the user whose container it is", roots, os.Geteuid())
		d, err := h.Open(stack.NetnsTUNOptions{Netns: roots})
		if err == nil {
			d.Close()
			t.Fatal("Open of another user's container as a user succeeded")
		}
		if err.Error() != want || !errors.Is(err, stack.ErrPermission) {
			t.Errorf("Open of another user's container = %q, want %q wrapping ErrPermission", err, want)
		}
	}
}

// TestNetnsHelperErrors: for the same mistakes, the helper's errors are
// the direct path's, sentence and kind, and nothing is left behind.
func TestNetnsHelperErrors(t *testing.T) {
	needTools(t, "ip", "unshare", "nsenter")
	pid, path := rootlessNetns(t)
	h := testHelper()
	file := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := fmt.Sprintf("/proc/%d/ns/net-missing", pid)
	held, err := h.Open(stack.NetnsTUNOptions{Netns: path, Name: "ovlheld0"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer held.Close()
	fds := openFDs(t)

	for _, tc := range []struct {
		what string
		opts stack.NetnsTUNOptions
		kind *fault.Kind
	}{
		{"missing", stack.NetnsTUNOptions{Netns: missing}, fault.ErrNotFound},
		{"regular file", stack.NetnsTUNOptions{Netns: file}, fault.ErrInvalid},
		{"uts namespace", stack.NetnsTUNOptions{Netns: fmt.Sprintf("/proc/%d/ns/uts", pid)}, fault.ErrInvalid},
		{"no path", stack.NetnsTUNOptions{}, fault.ErrInvalid},
		{"bad name", stack.NetnsTUNOptions{Netns: path, Name: "a/b"}, fault.ErrInvalid},
		{"bad prefix", stack.NetnsTUNOptions{Netns: path, Name: "ovlerr0", Routes: []netip.Prefix{{}}}, fault.ErrInvalid},
		{"name taken", stack.NetnsTUNOptions{Netns: path, Name: "lo"}, fault.ErrConflict},
		{"name held", stack.NetnsTUNOptions{Netns: path, Name: "ovlheld0", Persist: true}, fault.ErrConflict},
		{"configure fails", stack.NetnsTUNOptions{Netns: path, Name: "ovlerr0", MTU: 1 << 20, Persist: true}, nil},
	} {
		t.Run(tc.what, func(t *testing.T) {
			direct, derr := stack.OpenNetnsTUN(tc.opts)
			if derr == nil {
				direct.Delete()
				t.Fatalf("OpenNetnsTUN(%+v) succeeded", tc.opts)
			}
			dev, err := h.Open(tc.opts)
			if err == nil {
				dev.Delete()
				t.Fatalf("Open(%+v) succeeded", tc.opts)
			}
			if err.Error() != derr.Error() || fault.KindOf(err) != tc.kind || fault.KindOf(derr) != tc.kind {
				t.Errorf("Open error = %q (%v), want the direct path's %q (%v), of kind %v", err, fault.KindOf(err), derr, fault.KindOf(derr), tc.kind)
			}
			if linkInside(pid, "ovlerr0") || linkInside(pid, "eth0") {
				t.Errorf("a device was left: %s", inside(t, pid, "ip", "-o", "link"))
			}
		})
	}
	if !linkInside(pid, "ovlheld0") {
		t.Error("a refused Open of its name removed the held device")
	}
	for _, tc := range []struct {
		what, name string
		kind       *fault.Kind
	}{
		{"not a TUN", "lo", fault.ErrInvalid},
		{"held", "ovlheld0", fault.ErrConflict}, // a TUN, but not persistent: refused either way
		{"missing", "ovlnone0", fault.ErrNotFound},
	} {
		derr := stack.DeleteNetnsTUN(path, tc.name)
		err := h.Delete(path, tc.name)
		if err == nil || derr == nil || err.Error() != derr.Error() || fault.KindOf(err) != fault.KindOf(derr) {
			t.Errorf("%s: Delete = %v (%v), want the direct path's %v (%v)", tc.what, err, fault.KindOf(err), derr, fault.KindOf(derr))
		}
		d, aerr := h.Adopt(path, tc.name, nil)
		if d != nil {
			d.Close()
		}
		dd, daerr := stack.AdoptNetnsTUN(path, tc.name, nil)
		if dd != nil {
			dd.Close()
		}
		if aerr == nil || daerr == nil || aerr.Error() != daerr.Error() || fault.KindOf(aerr) != fault.KindOf(daerr) {
			t.Errorf("%s: Adopt = %v (%v), want the direct path's %v (%v)", tc.what, aerr, fault.KindOf(aerr), daerr, fault.KindOf(daerr))
		}
	}
	if linkInside(pid, "ovlnone0") {
		t.Error("Adopt of a missing device made one")
	}
	if got := openFDs(t); got != fds {
		t.Errorf("%d descriptors open after the refusals, %d before", got, fds)
	}

	// A namespace of this process's own user namespace is not a rootless
	// container's: the helper cannot help.
	_, rootful := testNetns(t)
	want := fmt.Sprintf("stack: enter network namespace %q: operation not permitted: it is not a rootless container's (its user namespace is this process's own); run overlayd as root, or as the user whose container it is", rootful)
	if d, err := h.Open(stack.NetnsTUNOptions{Netns: rootful}); err == nil || err.Error() != want || !errors.Is(err, stack.ErrPermission) {
		if d != nil {
			d.Close()
		}
		t.Errorf("Open of a namespace of the host's = %v, want %q wrapping ErrPermission", err, want)
	}
}

// TestNetnsHelperFailures: a helper that cannot run, crashes, hangs or
// answers garbage gives one sentence saying so, within the timeout, and
// leaves no descriptor and no device.
func TestNetnsHelperFailures(t *testing.T) {
	needTools(t, "ip", "unshare", "nsenter")
	pid, path := rootlessNetns(t)
	dir := t.TempDir()
	// A script reads the request (one message) first, as a helper does.
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\ndd bs=65536 count=1 <&6 >/dev/null 2>&1\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	opts := stack.NetnsTUNOptions{Netns: path, Name: "ovlfail0"}
	prefix := fmt.Sprintf("stack: the rootless helper for network namespace %q ", path)
	fds := openFDs(t)
	for _, tc := range []struct {
		what string
		h    *stack.NetnsHelper
		env  string
		want string
	}{
		{"garbage", &stack.NetnsHelper{Path: script("garbage", "printf 'not json' >&6")},
			"", prefix + "answered garbage: reply: invalid character 'o' in literal null (expecting 'u')"},
		{"unknown field", &stack.NetnsHelper{Path: script("field", `printf '{"mtu":1450,"fd":3}' >&6`)},
			"", prefix + `answered garbage: reply: json: unknown field "fd"`},
		{"no descriptor", &stack.NetnsHelper{Path: script("nofd", `printf '{"mtu":1450}' >&6`)},
			"", prefix + "answered garbage: 0 descriptors with the reply, want 1"},
		{"crash", &stack.NetnsHelper{Path: script("crash", "echo boom >&2; kill -SEGV $$")},
			"", prefix + "failed before answering: signal: segmentation fault: boom"},
		{"exit", &stack.NetnsHelper{Path: script("exit", "exit 0")},
			"", prefix + "exited without answering: exit status 0"},
		{"not a helper", &stack.NetnsHelper{Path: "/bin/false"},
			"", prefix + "failed before answering: exit status 1"},
		{"hangs", &stack.NetnsHelper{Path: script("hang", "exec sleep 30"), Timeout: 300 * time.Millisecond},
			"", prefix + "did not answer within 300ms"},
		{"not a TUN", testHelper(), "OVERLAYD_TEST_FAKE_HELPER=notun",
			prefix + `answered garbage: the descriptor is not a TUN device's: inappropriate ioctl for device`},
		{"two descriptors", testHelper(), "OVERLAYD_TEST_FAKE_HELPER=twofds",
			prefix + "answered garbage: 2 descriptors with the reply, want 1"},
		{"missing binary", &stack.NetnsHelper{Path: filepath.Join(dir, "none")},
			"", fmt.Sprintf("stack: the rootless helper for network namespace %q: open %s: no such file or directory", path, filepath.Join(dir, "none"))},
	} {
		t.Run(tc.what, func(t *testing.T) {
			if k, v, ok := strings.Cut(tc.env, "="); ok {
				t.Setenv(k, v)
			}
			start := time.Now()
			dev, err := tc.h.Open(opts)
			if err == nil {
				dev.Close()
				t.Fatal("Open succeeded")
			}
			if err.Error() != tc.want {
				t.Errorf("Open error = %q, want %q", err, tc.want)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Open took %v", took)
			}
			if linkInside(pid, "ovlfail0") {
				t.Error("a device was left")
			}
		})
	}
	t.Run("no nsenter", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		want := fmt.Sprintf("stack: the rootless helper for network namespace %q needs nsenter, which is not in PATH; install util-linux", path)
		if _, err := testHelper().Open(opts); err == nil || err.Error() != want || !errors.Is(err, fault.ErrUnavailable) {
			t.Errorf("Open without nsenter = %v, want %q (unavailable)", err, want)
		}
	})
	if got := openFDs(t); got != fds {
		t.Errorf("%d descriptors open after the failures, %d before", got, fds)
	}
}
