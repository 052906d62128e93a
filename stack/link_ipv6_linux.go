package stack

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/overlayd/overlayd/internal/fault"
)

// ErrIPv6Disabled is wrapped (with fault.ErrUnavailable) by the error of
// giving a device an IPv6 address where the kernel has IPv6 off: booted
// with ipv6.disable=1, or the device's disable_ipv6 set and not to be
// changed.
var ErrIPv6Disabled = errors.New("stack: IPv6 is disabled")

// ipv6OffError is IPv6 disabled for a device: one sentence that says
// what to do.
type ipv6OffError struct{ msg string }

func (e *ipv6OffError) Error() string   { return e.msg }
func (e *ipv6OffError) Unwrap() []error { return []error{ErrIPv6Disabled, fault.ErrUnavailable} }

// errKernelIPv6Off is the kernel without IPv6.
var errKernelIPv6Off = &ipv6OffError{"IPv6 is disabled in this kernel (booted with ipv6.disable=1); boot without it, or use networks without an IPv6 CIDR"}

// hasIPv6 reports whether addrs has an IPv6 address.
func hasIPv6(addrs []netip.Prefix) bool {
	for _, p := range addrs {
		if p.Addr().Is6() && !p.Addr().Is4In6() {
			return true
		}
	}
	return false
}

// enableIPv6 makes the link name of this thread's network namespace take
// IPv6 addresses: where its disable_ipv6 is set (a container runtime sets
// it in a namespace it gave no IPv6, and new links inherit it from
// "default"), it clears it, as the CNI plugins do before they add an IPv6
// address. The link is overlayd's own device. A kernel without IPv6, or
// a setting that cannot be changed, is an ipv6OffError.
func enableIPv6(name string) error {
	path := "/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6"
	b, err := os.ReadFile(path)
	if err != nil {
		if _, serr := os.Stat("/proc/sys/net/ipv6"); errors.Is(serr, os.ErrNotExist) {
			return errKernelIPv6Off
		}
		return nil // no /proc/sys to look at: adding the address will say
	}
	if strings.TrimSpace(string(b)) == "0" {
		return nil
	}
	if err := os.WriteFile(path, []byte("0\n"), 0); err != nil {
		// Not wrapped: a permission error here is not a missing
		// privilege to create devices (privError).
		return &ipv6OffError{fmt.Sprintf("IPv6 is disabled on %q (net.ipv6.conf.%s.disable_ipv6 = 1) and could not be enabled (%v); set it to 0, or use networks without an IPv6 CIDR",
			name, strings.ReplaceAll(name, ".", "/"), errors.Unwrap(err))}
	}
	return nil
}

// addrError is the error of adding the address p: an IPv6 address that
// the kernel refuses for IPv6 being off (EACCES: disable_ipv6;
// EAFNOSUPPORT: no IPv6 at all) is an ipv6OffError.
func addrError(name string, p netip.Prefix, err error) error {
	if p.Addr().Is6() && !p.Addr().Is4In6() {
		switch {
		case errors.Is(err, unix.EAFNOSUPPORT):
			return errKernelIPv6Off
		case errors.Is(err, unix.EACCES):
			return &ipv6OffError{fmt.Sprintf("IPv6 is disabled on %q (net.ipv6.conf.%s.disable_ipv6 = 1), so it cannot have address %v; set it to 0, or use networks without an IPv6 CIDR",
				name, strings.ReplaceAll(name, ".", "/"), p)}
		}
	}
	return fmt.Errorf("add address %v: %w", p, err)
}
