package vxlan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// EtherTypes of the inner frames overlayd handles.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86dd
)

// MAC is an IEEE 802 MAC-48 address. It is comparable and usable as a map key.
type MAC [6]byte

// Broadcast is ff:ff:ff:ff:ff:ff.
var Broadcast = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// IsBroadcast reports whether m is ff:ff:ff:ff:ff:ff.
func (m MAC) IsBroadcast() bool { return m == Broadcast }

// IsMulticast reports whether m is a group address (the I/G bit is set),
// which includes Broadcast.
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

const hexDigits = "0123456789abcdef"

// String returns m as six lowercase hex octets separated by colons.
func (m MAC) String() string {
	b, _ := m.MarshalText()
	return string(b)
}

// MarshalText implements encoding.TextMarshaler (the String form), so a MAC
// reads well in JSON, also as a map key.
func (m MAC) MarshalText() ([]byte, error) {
	b := make([]byte, 0, 17)
	for i, o := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexDigits[o>>4], hexDigits[o&0xf])
	}
	return b, nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseMAC.
func (m *MAC) UnmarshalText(b []byte) error {
	p, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = p
	return nil
}

var errMACSyntax = errors.New("want six hex octets separated by ':' or '-'")

// ParseMAC parses six hex octets separated by colons or hyphens
// ("0a:58:0a:00:00:01", "0A-58-0A-00-00-01").
func ParseMAC(s string) (MAC, error) {
	var m MAC
	if len(s) != 17 {
		return MAC{}, fmt.Errorf("vxlan: parse mac %q: %w", s, errMACSyntax)
	}
	sep := s[2]
	if sep != ':' && sep != '-' {
		return MAC{}, fmt.Errorf("vxlan: parse mac %q: %w", s, errMACSyntax)
	}
	for i := range m {
		if i > 0 && s[3*i-1] != sep {
			return MAC{}, fmt.Errorf("vxlan: parse mac %q: %w", s, errMACSyntax)
		}
		hi, ok1 := unhex(s[3*i])
		lo, ok2 := unhex(s[3*i+1])
		if !ok1 || !ok2 {
			return MAC{}, fmt.Errorf("vxlan: parse mac %q: %w", s, errMACSyntax)
		}
		m[i] = hi<<4 | lo
	}
	return m, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// NodeMAC returns the stable, locally administered unicast MAC that a node
// uses on the overlay for its address addr: 0a:58 and the address's last
// four octets. For the IPv4 address a.b.c.d that is 0a:58:a:b:c:d (an
// IPv4-mapped address counts as IPv4), the convention of Kubernetes CNI
// plugins and OVN; for an IPv6 address it is the low 32 bits (fd00::a:5 →
// 0a:58:00:0a:00:05), the part that tells apart the nodes of one network
// (IPAM hands out addresses of a /64 from a bounded offset space, and
// static ones differ there too), so it reads in tcpdump as the IPv4 one
// does. It is the same on every node and after every restart; the
// invalid Addr gives 0a:58:00:00:00:00.
func NodeMAC(addr netip.Addr) MAC {
	m := MAC{0x0a, 0x58}
	if addr.IsValid() {
		a := addr.As16()
		copy(m[2:], a[12:])
	}
	return m
}

// Ethernet is a view of an Ethernet II header and what follows it
// (IEEE 802.3, untagged):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Destination MAC Address                    |
//	+                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                               |                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//	|                      Source MAC Address                       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           EtherType           |     Payload ...
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Its methods need len(e) >= EthernetLen and panic otherwise; check with
// Valid or get the view from Decap. An 802.1Q tag is not interpreted: Type
// then returns 0x8100 and the payload starts with the tag's remainder.
type Ethernet []byte

// Valid reports whether e is long enough to hold an Ethernet header.
func (e Ethernet) Valid() bool { return len(e) >= EthernetLen }

// Dst returns the destination MAC.
func (e Ethernet) Dst() MAC { return MAC(e[0:6]) }

// Src returns the source MAC.
func (e Ethernet) Src() MAC { return MAC(e[6:12]) }

// Type returns the EtherType.
func (e Ethernet) Type() uint16 { return binary.BigEndian.Uint16(e[12:14]) }

// Payload returns what follows the header (for IPv4 and ARP it may end with
// padding up to the 60-byte minimum frame).
func (e Ethernet) Payload() []byte { return e[EthernetLen:] }

// Encode writes the header.
func (e Ethernet) Encode(dst, src MAC, etherType uint16) {
	_ = e[13]
	copy(e[0:6], dst[:])
	copy(e[6:12], src[:])
	binary.BigEndian.PutUint16(e[12:14], etherType)
}
