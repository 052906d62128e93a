package vxlan

import (
	"errors"
	"strconv"
)

// Encap encapsulates the inner packet buf[offset:offset+size] in place: it
// writes the VXLAN header for vni and an Ethernet header (dst, src,
// etherType) into the headroom buf[offset-EncapLen:offset] and returns
// buf[offset-EncapLen:offset+size], the UDP payload to send. The payload is
// not copied and nothing is allocated.
//
// offset must be at least EncapLen and offset+size at most len(buf); anything
// else is a programmer error and panics. vni must be at most MaxVNI.
func Encap(buf []byte, offset, size int, vni uint32, dst, src MAC, etherType uint16) []byte {
	if offset < EncapLen {
		panicHeadroom(offset)
	}
	p := buf[offset-EncapLen : offset+size]
	Header(p[:HeaderLen]).Encode(vni)
	Ethernet(p[HeaderLen:EncapLen]).Encode(dst, src, etherType)
	return p
}

//go:noinline
func panicHeadroom(offset int) {
	panic("vxlan: Encap needs " + strconv.Itoa(EncapLen) + " bytes of headroom, offset is " + strconv.Itoa(offset))
}

// Decap's refusals: the only checks of a datagram that are the wire
// format's (the router counts them as its drop reasons "short" and
// "flags"). Decap returns them unwrapped.
var (
	// ErrShort: the datagram cannot hold the VXLAN and Ethernet headers.
	ErrShort = errors.New("vxlan: datagram shorter than the VXLAN and Ethernet headers")
	// ErrFlags: the VXLAN I flag is clear, so the VNI is not valid
	// (RFC 7348 §5).
	ErrFlags = errors.New("vxlan: I flag clear")
)

// Decap checks a VXLAN datagram (the payload of an underlay UDP packet) and
// returns its VNI and the inner Ethernet frame, a view into pkt. err is
// ErrShort if pkt cannot hold the VXLAN and Ethernet headers and ErrFlags
// if the I flag is clear; then vni is 0 and frame nil. Reserved bits are
// ignored (RFC 7348 §5). Whether the VNI is one of ours and whether the
// sender is a member VTEP are for the caller to decide. Decap allocates
// nothing.
func Decap(pkt []byte) (vni uint32, frame Ethernet, err error) {
	if len(pkt) < EncapLen {
		return 0, nil, ErrShort
	}
	h := Header(pkt[:HeaderLen])
	if !h.Valid() {
		return 0, nil, ErrFlags
	}
	return h.VNI(), Ethernet(pkt[HeaderLen:]), nil
}
