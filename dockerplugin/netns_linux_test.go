package dockerplugin

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// allIPv6Off reads net.ipv6.conf.all.disable_ipv6 of a real namespace,
// not of the test's own.
func TestAllIPv6Off(t *testing.T) {
	msg := ""
	if os.Geteuid() != 0 {
		msg = "needs root (network namespaces)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		msg = "needs ip(8) (Debian: iproute2)"
	} else if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		msg = "needs a kernel with IPv6"
	}
	if msg != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI runs as root with it installed, so this is a failure", msg)
		}
		t.Skip(msg)
	}
	name := fmt.Sprintf("odp-v6off-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	path := "/var/run/netns/" + name
	own, _ := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6")
	if off, err := allIPv6Off(path); err != nil || off {
		t.Fatalf("allIPv6Off of a new namespace = %v, %v; want false", off, err)
	}
	if out, err := exec.Command("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1").CombinedOutput(); err != nil {
		t.Fatalf("sysctl: %v: %s", err, out)
	}
	if off, err := allIPv6Off(path); err != nil || !off {
		t.Errorf("allIPv6Off after all.disable_ipv6=1 = %v, %v; want true", off, err)
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6"); string(b) != string(own) {
		t.Errorf("the test's own all.disable_ipv6 went from %q to %q", own, b)
	}
	if _, err := allIPv6Off("/nonexistent"); err == nil {
		t.Error("allIPv6Off of a missing path: no error")
	}
}
