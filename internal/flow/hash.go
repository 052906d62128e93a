package flow

import (
	"encoding/binary"
	"math/bits"
)

// Hash returns a fast, unkeyed hash of the 5-tuple of the IP packet pkt, for
// the outer UDP source port of VXLAN (RFC 7348 §5) and other path choices
// where only spread matters: packets of one flow always hash the same
// (in every call, in every process), different flows spread over all 32
// bits. Input that FromPacket rejects is hashed by its first 64 bytes and
// its length instead. Hash never panics and allocates nothing.
//
// Hash is not keyed, so a sender can choose flows that collide; use
// Key.Hash with a secret seed where that matters (connection tracking).
func Hash(pkt []byte) uint32 {
	if a, b, c, d, e, ok := parse(pkt); ok {
		return hash32(a, b, c, d, e)
	}
	return prefixHash(pkt)
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

// words returns k as five words: the addresses' big-endian halves, then
// sport | dport<<16 | proto<<32 | family<<40. Key.Hash reads them as a
// 40-byte string of the words in little-endian order.
func (k *Key) words() (a, b, c, d, e uint64) {
	return k.srcHi, k.srcLo, k.dstHi, k.dstLo, tail(k.sport, k.dport, k.proto, k.family)
}

func (k Key) hash32() uint32 { return hash32(k.words()) }

func hash32(a, b, c, d, e uint64) uint32 {
	h := mix(a^p0, b^p1)
	h = mix(h^c^p2, d^p3)
	h = mix(h^e^p4, p1^40)
	return uint32(h ^ h>>32)
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

// Hash returns SipHash-1-3 of k's 40-byte packed encoding, keyed by seed
// (as the 128-bit SipHash key seed ‖ seed⊕c for a fixed c). With a seed that
// is random per process and kept secret, a sender cannot craft flows that
// collide in a table indexed by this hash. It allocates nothing.
func (k Key) Hash(seed uint64) uint64 {
	a, b, c, d, e := k.words()
	return sip13(seed, seed^p0, a, b, c, d, e)
}

// sip13 is SipHash-1-3 of the 40 bytes m0‖m1‖m2‖m3‖m4 (little-endian words)
// under the key k0‖k1.
func sip13(k0, k1, m0, m1, m2, m3, m4 uint64) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	for _, m := range [...]uint64{m0, m1, m2, m3, m4, 40 << 56} {
		v3 ^= m
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= m
	}
	v2 ^= 0xff
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	return v0 ^ v1 ^ v2 ^ v3
}

func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}
