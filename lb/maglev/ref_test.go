package maglev

import "math/bits"

// refPerm is one backend's position in its preference list.
type refPerm struct {
	pos, skip uint64 // next candidate slot and the step between candidates
	weight    uint64
	turns     uint64 // turns taken so far
	idx       uint16 // index into backends
}

// populateRef is the population loop as first written (a heap of turns
// and 128-bit time comparisons), kept as the reference that the optimised
// populate must match slot for slot. bs is sorted by ID and holds
// at least one backend of positive weight.
func populateRef(bs []Backend, m uint64) []uint16 {
	const empty = 0xffff // MaxBackends < 0xffff, so no backend has this index
	slots := make([]uint16, m)
	for i := range slots {
		slots[i] = empty
	}
	ps := make([]refPerm, 0, len(bs))
	for i, b := range bs {
		if b.Weight == 0 {
			continue
		}
		ps = append(ps, refPerm{
			pos:    hashID(offsetSeed, b.ID) % m,
			skip:   hashID(skipSeed, b.ID)%(m-1) + 1,
			weight: uint64(b.Weight),
			idx:    uint16(i),
		})
	}
	// h is a binary min-heap of indexes into ps ordered by next turn time
	// (turns+1)/weight, ties by backend index.
	h := make([]int, len(ps))
	for i := range h {
		h[i] = i
	}
	less := func(a, b int) bool {
		pa, pb := &ps[h[a]], &ps[h[b]]
		// (ta+1)/wa < (tb+1)/wb  <=>  (ta+1)*wb < (tb+1)*wa, in 128 bits.
		ah, al := bits.Mul64(pa.turns+1, pb.weight)
		bh, bl := bits.Mul64(pb.turns+1, pa.weight)
		if ah != bh {
			return ah < bh
		}
		if al != bl {
			return al < bl
		}
		return pa.idx < pb.idx
	}
	down := func(i int) {
		n := len(h)
		for {
			l := 2*i + 1
			if l >= n {
				return
			}
			c := l
			if r := l + 1; r < n && less(r, l) {
				c = r
			}
			if !less(c, i) {
				return
			}
			h[i], h[c] = h[c], h[i]
			i = c
		}
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		down(i)
	}
	for filled := uint64(0); filled < m; filled++ {
		p := &ps[h[0]]
		// Walk the preference list to the first empty slot. M is prime, so
		// the list is a permutation of all slots and one is always found.
		for slots[p.pos] != empty {
			p.pos += p.skip
			if p.pos >= m {
				p.pos -= m
			}
		}
		slots[p.pos] = p.idx
		p.turns++
		down(0)
	}
	return slots
}
