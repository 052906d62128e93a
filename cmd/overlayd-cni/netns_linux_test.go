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

// checkLink sees the interface in a real namespace: up with its address
// holds; down, without the address, gone, or the namespace gone fails,
// saying which.
func TestCheckLink(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("ocni-check-%d", os.Getpid())
	ip(t, "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	path := "/var/run/netns/" + name
	ip(t, "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
	ip(t, "-n", name, "addr", "add", "10.40.0.2/24", "dev", "eth0")
	ip(t, "-n", name, "link", "set", "eth0", "up")
	addr := netip.MustParsePrefix("10.40.0.2/24")
	if err := checkLink(path, "eth0", addr); err != nil {
		t.Fatalf("checkLink of eth0 up with its address: %v", err)
	}
	if netnsGone(path) {
		t.Errorf("netnsGone(%s) of a namespace that is there", path)
	}
	for _, tc := range []struct {
		change []string
		want   string
	}{
		{[]string{"-n", name, "link", "set", "eth0", "down"}, "is down"},
		{[]string{"-n", name, "link", "set", "eth0", "up"}, ""},
		{[]string{"-n", name, "addr", "del", "10.40.0.2/24", "dev", "eth0"}, "no longer has its address 10.40.0.2/24 (it has none)"},
		{[]string{"-n", name, "addr", "add", "10.40.0.3/24", "dev", "eth0"}, "(it has [10.40.0.3/24])"},
		{[]string{"-n", name, "link", "del", "eth0"}, "interface eth0 is gone from " + path},
		{[]string{"netns", "del", name}, "the namespace " + path + " is gone"},
	} {
		ip(t, tc.change...)
		err := checkLink(path, "eth0", addr)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("after ip %s: checkLink = %v, want %q", strings.Join(tc.change, " "), err, tc.want)
		}
	}
	if !netnsGone(path) {
		t.Errorf("netnsGone(%s) after ip netns del is false", path)
	}
}
