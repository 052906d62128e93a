package door

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestSplitHostPort(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port uint16
		err  string
	}{
		{in: "web.default.overlay:80", host: "web.default.overlay", port: 80},
		{in: "10.99.2.1:443", host: "10.99.2.1", port: 443},
		{in: "[fd00::1]:443", host: "fd00::1", port: 443},
		{in: "[::ffff:10.1.2.3]:1", host: "::ffff:10.1.2.3", port: 1},
		{in: "fd00::1:443", err: `"fd00::1:443": an IPv6 address takes brackets before its port: [fd00::1]:443`},
		{in: "fd00::1", err: `"fd00::1": an IPv6 address takes brackets and a port: [fd00::1]:PORT`},
		{in: "fd00::1:http", err: `"fd00::1:http": too many colons in address; want host:port, or [IPv6]:port`},
		{in: "[fd00::1]", err: `"[fd00::1]": missing port in address; want host:port, or [IPv6]:port`},
		{in: "web:0", err: `"web:0": port "0" is not 1-65535`},
		{in: "web:65536", err: `"web:65536": port "65536" is not 1-65535`},
		{in: "web:http", err: `"web:http": port "http" is not 1-65535`},
		{in: "[fe80::1%eth0]:80", err: `"[fe80::1%eth0]:80": host: byte 0x25 not allowed`},
		{in: "[a:b]:80", err: `"[a:b]:80": host "a:b" is neither a name nor an IP address`},
		{in: ":80", err: `":80": host: empty`},
	} {
		host, port, err := splitHostPort(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("splitHostPort(%q) = %q, %d, %v; want error %q", tc.in, host, port, err, tc.err)
			}
			continue
		}
		if err != nil || host != tc.host || port != tc.port {
			t.Errorf("splitHostPort(%q) = %q, %d, %v; want %q, %d", tc.in, host, port, err, tc.host, tc.port)
		}
	}
}

func FuzzSplitHostPort(f *testing.F) {
	for _, s := range []string{"web:80", "[fd00::1]:443", "fd00::1:443", "10.0.0.1:1", "[::]:65535", "a:b:c", "[", "]:1", "[fe80::1%25x]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		host, port, err := splitHostPort(s)
		if err != nil {
			if err.Error() == "" || strings.Contains(err.Error(), "\n") {
				t.Fatalf("splitHostPort(%q): error %q is not one line", s, err)
			}
			return
		}
		if port == 0 || host == "" {
			t.Fatalf("splitHostPort(%q) = %q, %d without an error", s, host, port)
		}
		// What it accepts, joined again, parses back to itself.
		j := net.JoinHostPort(host, strconv.Itoa(int(port)))
		h2, p2, err := splitHostPort(j)
		if err != nil || h2 != host || p2 != port {
			t.Fatalf("splitHostPort(%q) = %q, %d; again from %q: %q, %d, %v", s, host, port, j, h2, p2, err)
		}
	})
}
