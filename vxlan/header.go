package vxlan

import "encoding/binary"

const (
	// HeaderLen is the length of the VXLAN header.
	HeaderLen = 8
	// EthernetLen is the length of an (untagged) Ethernet II header.
	EthernetLen = 14
	// EncapLen is what Encap writes in front of an inner packet: the VXLAN
	// header and the inner Ethernet header. It is the headroom Encap needs.
	EncapLen = HeaderLen + EthernetLen
	// Overhead is what VXLAN over IPv4 adds to an inner IP packet on the
	// underlay: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
	// The overlay MTU is the underlay MTU minus Overhead (1450 on 1500).
	Overhead = 20 + 8 + EncapLen
	// Overhead6 is Overhead over an IPv6 underlay: outer IPv6 (40) + UDP
	// (8) + VXLAN (8) + inner Ethernet (14); 1430 on 1500.
	Overhead6 = 40 + 8 + EncapLen
	// DefaultPort is the IANA-assigned VXLAN UDP port (RFC 7348 §5).
	DefaultPort = 4789
	// MaxVNI is the largest VXLAN Network Identifier (24 bits).
	MaxVNI = 1<<24 - 1
	// FlagI is the I flag: set when the VNI is valid (RFC 7348 §5).
	FlagI = 0x08
	// FlagPartial, in the second byte (the first reserved one), is
	// overlayd's own: the inner packet is a TCP segment (IPv4, or IPv6
	// with no extension headers) whose checksum field holds only its
	// pseudo-header's sum, to be finished where it leaves the overlay. It
	// goes only to VTEPs that said they take it (an ARP or NDP Trailer
	// with TrailerPartial); a Linux vxlan device
	// drops datagrams with reserved bits set, and never gets one.
	FlagPartial = 0x01
)

// Header is a view of a VXLAN header (RFC 7348 §5):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|R|R|R|R|I|R|R|R|            Reserved                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                VXLAN Network Identifier (VNI) |   Reserved    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Its methods need len(h) >= HeaderLen and panic otherwise; Decap checks
// the length before it hands out views.
type Header []byte

// Flags returns the flags byte.
func (h Header) Flags() uint8 { return h[0] }

// Valid reports whether the I flag is set, that is whether the VNI is valid.
// Reserved bits are ignored, as the RFC asks of receivers.
func (h Header) Valid() bool { return h[0]&FlagI != 0 }

// Partial reports whether FlagPartial is set: the inner TCP segment's
// checksum is still to be done.
func (h Header) Partial() bool { return h[1]&FlagPartial != 0 }

// SetPartial sets FlagPartial.
func (h Header) SetPartial() { h[1] |= FlagPartial }

// VNI returns the VXLAN Network Identifier.
func (h Header) VNI() uint32 { return binary.BigEndian.Uint32(h[4:8]) >> 8 }

// Encode writes a header for vni: flags 0x08 (I), every reserved field
// zero. vni must be at most MaxVNI; higher bits are dropped.
func (h Header) Encode(vni uint32) {
	binary.BigEndian.PutUint32(h[0:4], FlagI<<24)
	binary.BigEndian.PutUint32(h[4:8], vni<<8)
}
