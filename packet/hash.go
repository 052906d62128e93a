package packet

import (
	"encoding/binary"
	"math/bits"
)

// Hash returns a fast, unkeyed hash of the packet's 5-tuple, for the outer
// UDP source port of VXLAN (RFC 7348 §5) and other path choices where only
// spread matters: packets of one flow always hash the same (in every call,
// in every process), different flows spread over all 32 bits. A packet
// whose transport header is too short (not L4Valid) is hashed by its first
// 64 bytes and its length instead. It allocates nothing.
//
// Hash is not keyed, so a sender can choose flows that collide; the
// balancer keys its own tables with a secret seed.
func (p *IP) Hash() uint32 {
	if !p.l4Valid {
		return prefixHash(p.b)
	}
	return p.Tuple.hash()
}

// Hash is the unkeyed flow hash of t (see IP.Hash).
func (t Tuple) Hash() uint32 { return t.hash() }

// hash reads t through a pointer: a Tuple copied by value is written
// byte by byte and then loaded as words, a store-forwarding stall that
// doubled the cost of the hash. Addresses enter in their 16-byte form
// (IPv4-mapped for IPv4: the values are those of the IPv6-ready layout
// the hash was first written for), and the 4 in e is the layout's, for
// both families: an IPv6 tuple never holds an IPv4-mapped address, so the
// addresses tell the families apart.
func (t *Tuple) hash() uint32 {
	// The high words are 0 for IPv4, in any byte order: read without a swap.
	srcHi, src := binary.LittleEndian.Uint64(t.Src[:8]), binary.BigEndian.Uint64(t.Src[8:])
	dstHi, dst := binary.LittleEndian.Uint64(t.Dst[:8]), binary.BigEndian.Uint64(t.Dst[8:])
	e := uint64(t.SPort) | uint64(t.DPort)<<16 | uint64(t.Proto)<<32 | 4<<40
	h := mix(p0^srcHi, src^p1) // the high words of v4-mapped addresses are 0
	h = mix(h^p2^dstHi, dst^p3)
	h = mix(h^e^p4, p1^40)
	return uint32(h ^ h>>32)
}

// Hash returns the flow hash of pkt, an IPv4 or IPv6 packet: IP.Hash
// after Parse, or the hash of pkt's first 64 bytes and length when it does not
// parse. It is for packets the caller has not parsed already (a frame from
// an L2 attachment, a packet that waited for ARP).
func Hash(pkt []byte) uint32 {
	var p IP
	if !p.Parse(pkt) {
		return prefixHash(pkt)
	}
	return p.Hash()
}

// wyhash constants.
const (
	p0 = 0xa0761d6478bd642f
	p1 = 0xe7037ed1a0b428db
	p2 = 0x8ebc6af09c88c6e3
	p3 = 0x589965cc75374cc3
	p4 = 0x1d8e4e27c47d124f
)

// mix is wyhash's multiply-fold.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// prefixHash hashes the length of b and its first 64 bytes.
func prefixHash(b []byte) uint32 {
	h := mix(uint64(len(b))^p0, p1)
	if len(b) > 64 {
		b = b[:64]
	}
	for len(b) >= 16 {
		h = mix(binary.LittleEndian.Uint64(b)^p2^h, binary.LittleEndian.Uint64(b[8:])^p3)
		b = b[16:]
	}
	var t uint64
	for i, c := range b {
		t |= uint64(c) << (8 * (i & 7))
		if i == 7 {
			h = mix(t^p2^h, p4)
			t = 0
		}
	}
	h = mix(h^t^p4, p1)
	return uint32(h ^ h>>32)
}
