package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// requireRoot skips a test that needs root and ip(8), with a message;
// under CI (CI=true), which runs as root, it fails instead.
func requireRoot(t *testing.T) {
	t.Helper()
	msg := ""
	if os.Geteuid() != 0 {
		msg = "needs root (network namespaces)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		msg = "needs ip(8) (Debian: iproute2)"
	}
	if msg == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; CI runs as root with it installed, so this is a failure", msg)
	}
	t.Skip(msg)
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// checkLink sees the interface in a real namespace: up with its
// addresses (one of each family) holds; down, without either address,
// gone, or the namespace gone fails, saying which. An IPv6 address alone
// (an IPv6-only network) is checked as well.
func TestCheckLink(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("ocni-check-%d", os.Getpid())
	ip(t, "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	path := "/var/run/netns/" + name
	ip(t, "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
	ip(t, "-n", name, "addr", "add", "10.40.0.2/24", "dev", "eth0")
	ip(t, "-n", name, "addr", "add", "fd00:40::2/64", "dev", "eth0", "nodad")
	ip(t, "-n", name, "link", "set", "eth0", "up")
	addrs := []netip.Prefix{netip.MustParsePrefix("10.40.0.2/24"), netip.MustParsePrefix("fd00:40::2/64")}
	if err := checkLink(path, "eth0", addrs); err != nil {
		t.Fatalf("checkLink of eth0 up with its addresses: %v", err)
	}
	if err := checkLink(path, "eth0", addrs[1:]); err != nil {
		t.Fatalf("checkLink of eth0 up with its IPv6 address alone: %v", err)
	}
	if netnsGone(path) {
		t.Errorf("netnsGone(%s) of a namespace that is there", path)
	}
	for _, tc := range []struct {
		change []string
		want   string
	}{
		{[]string{"-n", name, "link", "set", "eth0", "down"}, "is down"},
		// The kernel drops an interface's IPv6 addresses when it goes
		// down (keep_addr_on_down is off by default).
		{[]string{"-n", name, "link", "set", "eth0", "up"}, "no longer has its address fd00:40::2/64 (it has none of its family)"},
		{[]string{"-n", name, "addr", "add", "fd00:40::3/64", "dev", "eth0", "nodad"}, "no longer has its address fd00:40::2/64 (it has [fd00:40::3/64])"},
		{[]string{"-n", name, "addr", "add", "fd00:40::2/64", "dev", "eth0", "nodad"}, ""},
		{[]string{"-n", name, "addr", "del", "10.40.0.2/24", "dev", "eth0"}, "no longer has its address 10.40.0.2/24 (it has none of its family)"},
		{[]string{"-n", name, "addr", "add", "10.40.0.3/24", "dev", "eth0"}, "(it has [10.40.0.3/24])"},
		{[]string{"-n", name, "link", "del", "eth0"}, "interface eth0 is gone from " + path},
		{[]string{"netns", "del", name}, "the namespace " + path + " is gone"},
	} {
		ip(t, tc.change...)
		err := checkLink(path, "eth0", addrs)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("after ip %s: checkLink = %v, want %q", strings.Join(tc.change, " "), err, tc.want)
		}
	}
	if !netnsGone(path) {
		t.Errorf("netnsGone(%s) after ip netns del is false", path)
	}
}
