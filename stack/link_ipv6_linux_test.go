package stack

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/overlayd/overlayd/internal/fault"
)

func TestAddrErrorIPv6Off(t *testing.T) {
	v6 := netip.MustParsePrefix("fd00::1/64")
	v4 := netip.MustParsePrefix("10.0.0.1/24")
	for _, tc := range []struct {
		p    netip.Prefix
		err  error
		want string
		off  bool
	}{
		{v6, unix.EAFNOSUPPORT, "IPv6 is disabled in this kernel (booted with ipv6.disable=1); boot without it, or use networks without an IPv6 CIDR", true},
		{v6, unix.EACCES, `IPv6 is disabled on "ovl0" (net.ipv6.conf.ovl0.disable_ipv6 = 1), so it cannot have address fd00::1/64; set it to 0, or use networks without an IPv6 CIDR`, true},
		{v4, unix.EACCES, "add address 10.0.0.1/24: permission denied", false},
		{v6, unix.EEXIST, "add address fd00::1/64: file exists", false},
	} {
		err := addrError("ovl0", tc.p, tc.err)
		if err.Error() != tc.want || errors.Is(err, ErrIPv6Disabled) != tc.off || errors.Is(err, fault.ErrUnavailable) != tc.off {
			t.Errorf("addrError(%v, %v) = %q (IPv6 off %v), want %q (%v)", tc.p, tc.err, err, errors.Is(err, ErrIPv6Disabled), tc.want, tc.off)
		}
		// Not a missing privilege: OpenTUN must not say "run as root".
		if tc.off && errors.Is(wrapCreate("TUN", "ovl0", fmt.Errorf("x: %w", err)), ErrPermission) {
			t.Errorf("wrapCreate(%v) wraps ErrPermission", err)
		}
	}
}

func TestEnableIPv6(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change a sysctl")
	}
	// lo of this namespace: read, and left as it is when already on.
	if _, err := os.Stat("/proc/sys/net/ipv6/conf/lo/disable_ipv6"); err != nil {
		t.Skipf("no IPv6 sysctls: %v", err)
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv6/conf/lo/disable_ipv6"); string(b) != "0\n" {
		t.Skip("IPv6 is off on lo here")
	}
	if err := enableIPv6("lo"); err != nil {
		t.Errorf("enableIPv6(lo) = %v", err)
	}
	if err := enableIPv6("nosuchlink0"); err != nil {
		t.Errorf("enableIPv6 of a missing link = %v, want nil (adding the address says)", err)
	}
}
