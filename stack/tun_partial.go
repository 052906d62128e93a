package stack

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// PartialReader is an optional capability of a Device (found by type
// assertion): it can hand out TCP segments whose checksum is left to be
// done, as a TUN with offloads gets them from the kernel (the socket
// never computed it: CHECKSUM_PARTIAL). Between two overlayd nodes the
// checksum can stay undone end to end; the router completes it
// (CompleteChecksum) for anything else.
type PartialReader interface {
	// ReadPartial is Read, but a TCP segment (IsPartialCandidate or
	// IsPartialCandidate6) whose checksum the sender left undone may keep
	// it so: its checksum field holds the sum of its pseudo-header alone
	// (RFC 9293 §3.1 and RFC 8200 §8.1, with the segment's length;
	// folded, not complemented) and partial[i] is set. For every other
	// packet partial[i] is false and its checksums are complete.
	// len(partial) >= len(bufs).
	ReadPartial(bufs [][]byte, sizes []int, partial []bool, offset int) (int, error)
}

// PartialWriter is an optional capability of a Device: it takes IPv4 TCP
// segments (IsPartialCandidate; IPv6 ones too if it is a PartialWriter6) whose checksum is still to be done (as ReadPartial returns
// them), and has the host finish them only where they leave it: a kernel
// TUN writes them as CHECKSUM_PARTIAL, which the host's own TCP accepts
// without computing anything, and it coalesces runs of one flow (GRO)
// without reading their payload.
type PartialWriter interface {
	// WritePartial is Write, where partial[i] says packet i is such a
	// segment. len(partial) >= len(bufs).
	WritePartial(bufs [][]byte, partial []bool, offset int) (int, error)
}

// PartialWriter6 is an optional capability of a PartialWriter: it takes
// IPv6 TCP segments (IsPartialCandidate6) whose checksum is still to be
// done as well. A PartialWriter without it is handed IPv6 packets
// complete.
type PartialWriter6 interface {
	PartialWriter
	// WritesPartial6 reports whether WritePartial takes partial IPv6
	// segments.
	WritesPartial6() bool
}

// IsPartialCandidate reports whether pkt is an IPv4 TCP segment, not a
// fragment, with a whole TCP header: with IsPartialCandidate6's, the only
// packets whose checksum overlayd leaves undone.
func IsPartialCandidate(pkt []byte) bool {
	if len(pkt) < 20 || pkt[0]>>4 != 4 || pkt[9] != 6 {
		return false
	}
	ihl := int(pkt[0]&0xf) * 4
	if ihl < 20 || len(pkt) < ihl+20 || binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 {
		return false
	}
	return int(binary.BigEndian.Uint16(pkt[2:4])) <= len(pkt)
}

// IsPartialCandidate6 reports whether pkt is an IPv6 TCP segment with
// the TCP header right after the fixed header (no extension headers, as
// the kernel's TCP sends it) and whole: IsPartialCandidate's IPv6 twin.
func IsPartialCandidate6(pkt []byte) bool {
	if len(pkt) < ipv6HeaderLen+20 || pkt[0]>>4 != 6 || pkt[6] != 6 {
		return false
	}
	n := int(binary.BigEndian.Uint16(pkt[4:6]))
	return n >= 20 && ipv6HeaderLen+n <= len(pkt)
}

// IsPartialTCP reports whether pkt is either: IsPartialCandidate or
// IsPartialCandidate6.
func IsPartialTCP(pkt []byte) bool {
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		return IsPartialCandidate6(pkt)
	}
	return IsPartialCandidate(pkt)
}

// CompleteChecksum finishes the TCP checksum of pkt, an IPv4 or IPv6 TCP
// segment (IsPartialTCP) whose checksum field holds its pseudo-header
// sum: afterwards the segment is as any host would send it. It reads the
// whole segment once and allocates nothing.
func CompleteChecksum(pkt []byte) {
	var seg []byte
	if pkt[0]>>4 == 6 {
		seg = pkt[ipv6HeaderLen : ipv6HeaderLen+int(binary.BigEndian.Uint16(pkt[4:6]))]
	} else {
		seg = pkt[int(pkt[0]&0xf)*4 : binary.BigEndian.Uint16(pkt[2:4])]
	}
	// The field holds the pseudo-header's sum, so the sum over the
	// segment as it is counts the pseudo-header once.
	binary.BigEndian.PutUint16(seg[16:18], ^checksum.Checksum(seg, 0))
}

// PseudoSum is the TCP checksum field of a partial segment (ip its IPv4
// header, or its IPv6 fixed header) of tcpLen bytes of TCP header and
// payload: the folded sum of the pseudo-header.
func PseudoSum(ip []byte, tcpLen int) uint16 {
	if ip[0]>>4 == 6 {
		return pseudoSum6(ip, 6, tcpLen)
	}
	return pseudoSum(ip, 6, tcpLen)
}

// pseudoSum is the folded sum of the pseudo-header of an IPv4 packet
// (ip its header) for proto and l4Len bytes of transport header and
// payload.
func pseudoSum(ip []byte, proto uint8, l4Len int) uint16 {
	s := uint32(proto) + uint32(l4Len) + sum16(ip[12:20])
	return fold(s)
}

// ipv6HeaderLen is the length of the IPv6 fixed header.
const ipv6HeaderLen = 40

// pseudoSum6 is the folded sum of the pseudo-header of an IPv6 packet
// (ip its fixed header) for proto and l4Len bytes of transport header
// and payload (RFC 8200 §8.1).
func pseudoSum6(ip []byte, proto uint8, l4Len int) uint16 {
	s := uint32(proto) + uint32(l4Len>>16) + uint32(l4Len&0xffff) + sum16(ip[8:40])
	return fold(s)
}

// ipv4HeaderChecksum sets the header checksum of the IPv4 header h. A
// header is 20 to 60 bytes: the plain loop beats a general checksum's
// setup.
func ipv4HeaderChecksum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:12], ^fold(sum16(h)))
}

// sum16 adds the big-endian 16-bit words of b (of even length) without
// folding; b is at most a few hundred bytes.
func sum16(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	return s
}

// fold folds a 32-bit sum into 16 bits (ones' complement addition).
func fold(s uint32) uint16 {
	s = s>>16 + s&0xffff
	s += s >> 16
	return uint16(s)
}
