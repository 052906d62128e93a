package door

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// splitHostPort parses a destination as the doors take it: "host:port",
// "IPv4:port" or "[IPv6]:port", the port 1-65535, the host a name or an
// IP literal (checkName). An IPv6 address without brackets
// ("fd00::1:80") is refused with a sentence that shows the bracketed
// form, rather than Go's "too many colons".
func splitHostPort(s string) (host string, port uint16, err error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		if err := bracketHint(s); err != nil {
			return "", 0, err
		}
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return "", 0, fmt.Errorf("%q: %s; want host:port, or [IPv6]:port", s, ae.Err)
		}
		return "", 0, fmt.Errorf("%q: %w", s, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("%q: port %q is not 1-65535", s, p)
	}
	if err := checkName(h); err != nil {
		return "", 0, fmt.Errorf("%q: host: %w", s, err)
	}
	if strings.Contains(h, ":") {
		if a, err := netip.ParseAddr(h); err != nil || !a.Is6() {
			return "", 0, fmt.Errorf("%q: host %q is neither a name nor an IP address", s, h)
		}
	}
	return h, uint16(n), nil
}

// bracketHint returns, for s an IPv6 address written without brackets
// (with a port or without), the error that shows how to write it; nil
// for anything else.
func bracketHint(s string) error {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || strings.Contains(s, "[") {
		return nil
	}
	if a, err := netip.ParseAddr(s[:i]); err == nil && a.Is6() {
		if _, err := strconv.ParseUint(s[i+1:], 10, 16); err == nil {
			return fmt.Errorf("%q: an IPv6 address takes brackets before its port: [%s]:%s", s, s[:i], s[i+1:])
		}
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
		return fmt.Errorf("%q: an IPv6 address takes brackets and a port: [%s]:PORT", s, s)
	}
	return nil
}
