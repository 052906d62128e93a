package config

import (
	"strings"
	"testing"
)

// FuzzParsePeer: ParsePeer never panics; what it refuses gets a "peer "
// error, and what it takes is masked, has a port, is not v4-mapped and
// has no zone, and reads back to itself from its String.
func FuzzParsePeer(f *testing.F) {
	for _, s := range []string{
		"10.1.0.0/16@192.0.2.1:4789", "10.1.2.3@192.0.2.1", "fd00::2/128@[2001:db8::2]:4789",
		"fd00::2@2001:db8::2", "fd00::2@[2001:db8::2]", "10.1.2.3@[::ffff:192.0.2.1]:4789",
		"::ffff:10.1.0.0/112@192.0.2.1", "fd00::2%eth0@[2001:db8::2]", "fd00::2@[fe80::1%eth0]:4789",
		"@", "a@b@c", "fd00::2@[::]:0", "[fd00::2]@[2001:db8::2]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePeer(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "peer ") {
				t.Fatalf("ParsePeer(%q) error %q lacks its prefix", s, err)
			}
			return
		}
		a := p.VTEP.Addr()
		if p.Prefix != p.Prefix.Masked() || p.VTEP.Port() == 0 || a.Is4In6() || a.Zone() != "" || p.Prefix.Addr().Is4In6() {
			t.Fatalf("ParsePeer(%q) = %v: not masked, no port, v4-mapped or zoned", s, p)
		}
		q, err := ParsePeer(p.String())
		if err != nil || q != p {
			t.Fatalf("ParsePeer(%q) = %v, but ParsePeer(%q) = %v, %v", s, p, p.String(), q, err)
		}
	})
}

// FuzzParseAddrPort: ParseAddrPort never panics, never returns a
// v4-mapped address, and what it takes reads back to itself.
func FuzzParseAddrPort(f *testing.F) {
	for _, s := range []string{"192.0.2.1:4789", "192.0.2.1", "[2001:db8::1]:4789", "[2001:db8::1]", "2001:db8::1", "::ffff:1.2.3.4", "[fe80::1%eth0]:1", "[::]:0", "[]", "[:]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, err := ParseAddrPort(s, DefaultPort)
		if err != nil {
			return
		}
		if !ap.IsValid() || ap.Addr().Is4In6() {
			t.Fatalf("ParseAddrPort(%q) = %v: invalid or v4-mapped", s, ap)
		}
		back, err := ParseAddrPort(ap.String(), 1)
		if err != nil || back != ap {
			t.Fatalf("ParseAddrPort(%q) = %v, but ParseAddrPort(%q) = %v, %v", s, ap, ap.String(), back, err)
		}
	})
}
