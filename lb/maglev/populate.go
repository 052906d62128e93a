package maglev

import "math/bits"

// This file is the population loop. It fills exactly the slots of the loop
// the package documentation describes (a heap of every backend's next turn,
// each turn walking the backend's preference list to the first empty slot;
// ref_test.go keeps that loop as the reference it is tested against), with
// less work per slot:
//
//   - The order of turns does not depend on the slots, and it repeats:
//     shifting every backend's turn t to t+w shifts its time t/w by exactly
//     1, so the turns with times in (k, k+1] come in the same order for
//     every k. One period is Σw/gcd(w) turns (the backends, with equal
//     weights). populate schedules one period, or M turns if that is
//     shorter, and then replays the schedule.
//   - The schedule is sorted rather than drawn from a heap (schedule.go).
//   - The walk tests a bitmap of filled slots (M/8 bytes, which stays in the
//     L1 cache) rather than the slots, four candidates at a time: their
//     positions come from pos, skip and 2·skip by additions and branch-free
//     conditional subtractions of M, and the first empty one is the lowest
//     zero bit of their four bits, so most walks take one predictable branch
//     rather than a mispredicted one per candidate.
//   - Near the end, when few slots are empty and a walk would pass many
//     filled ones, the slot a walk would stop at is found from the list of
//     empty slots instead: slot s is (s-pos)·skip⁻¹ mod M steps ahead of
//     pos, and the walk stops at the empty slot the fewest steps ahead.

// cursor is one active backend's walk: its next candidate slot and step.
type cursor struct {
	pos, skip uint32
	skip2     uint32 // 2·skip mod M
	inv       uint32 // skip⁻¹ mod M, for the end game; 0 until needed
	idx       uint16 // index into the backends
}

// populate runs the weighted population loop. bs is sorted by ID and holds
// at least one backend of positive weight.
func populate(bs []Backend, m uint64) []uint16 {
	cur := make([]cursor, 0, len(bs))
	for i, b := range bs {
		if b.Weight > 0 {
			cur = append(cur, cursor{
				pos:  uint32(hashID(offsetSeed, b.ID) % m),
				skip: uint32(hashID(skipSeed, b.ID)%(m-1) + 1),
				idx:  uint16(i),
			})
		}
	}
	for k := range cur {
		cur[k].skip2 = uint32(wrap(2*uint64(cur[k].skip), m))
	}
	sched := schedule(bs, cur, m)

	slots := make([]uint16, m)
	filled := make([]uint64, (m+63)/64) // bit s set: slots[s] is taken
	stop := min(endGame(m), m)          // empty slots left to the end game
	next := fill(slots, filled, cur, sched, m-stop)
	left := stop
	if left == 0 {
		return slots
	}

	// The end game, over the list of the slots still empty.
	empty := make([]uint32, 0, left)
	for s := uint64(0); s < m; s++ {
		if filled[s>>6]&(1<<(s&63)) == 0 {
			empty = append(empty, uint32(s))
		}
	}
	red := newReducer(m)
	for len(empty) > 0 {
		c := &cur[sched[next]]
		if next++; next == len(sched) {
			next = 0
		}
		if c.inv == 0 { // not needed before; with 1,000 backends most never are
			c.inv = uint32(modInverse(uint64(c.skip), m))
		}
		pos, inv := uint64(c.pos), uint64(c.inv)
		best, bestSteps := 0, m
		base := m - pos // s+base is s-pos mod M, plus M when s ≥ pos
		for k, s := range empty {
			if steps := red.mod((uint64(s) + base) * inv); steps < bestSteps {
				best, bestSteps = k, steps
			}
		}
		pos = uint64(empty[best])
		empty[best] = empty[len(empty)-1]
		empty = empty[:len(empty)-1]
		slots[pos] = c.idx
		if pos += uint64(c.skip); pos >= m {
			pos -= m
		}
		c.pos = uint32(pos)
	}
	return slots
}

// fill takes n turns in the order of sched from its start, each walking
// the backend's preference list to the first empty slot, and returns where
// in sched it stopped. It is a function of its own so that its loop keeps
// its few variables in registers.
func fill(slots []uint16, filled []uint64, cur []cursor, sched []uint16, n uint64) int {
	m := uint64(len(slots))
	for {
		for i, k := range sched {
			if n == 0 {
				return i
			}
			n--
			c := &cur[k]
			// Walk the preference list to the first empty slot. M is prime,
			// so the list is a permutation of all slots and one is always
			// found.
			pos, skip, skip2 := uint64(c.pos), uint64(c.skip), uint64(c.skip2)
			for {
				var p [4]uint64
				p[0] = pos
				p[1] = wrap(pos+skip, m)
				p[2] = wrap(pos+skip2, m)
				p[3] = wrap(p[1]+skip2, m)
				f := filled[p[0]>>6]>>(p[0]&63)&1 |
					filled[p[1]>>6]>>(p[1]&63)&1<<1 |
					filled[p[2]>>6]>>(p[2]&63)&1<<2 |
					filled[p[3]>>6]>>(p[3]&63)&1<<3
				if f != 15 {
					pos = p[bits.TrailingZeros64(^f)&3]
					break
				}
				pos = wrap(p[2]+skip2, m)
			}
			filled[pos>>6] |= 1 << (pos & 63)
			slots[pos] = c.idx
			// The slot just taken is filled: start the next walk after it.
			if pos += skip; pos >= m {
				pos -= m
			}
			c.pos = uint32(pos)
		}
	}
}

// endGame is the number of empty slots below which populate stops walking
// and searches the empty slots instead. A walk passes about M/E filled
// slots to find one of E empty ones, at a few cycles each; the search costs
// a multiply and a reduction per empty slot. They meet near √M.
func endGame(m uint64) uint64 {
	e := uint64(1)
	for e*e < m {
		e++
	}
	return e
}

// wrap returns x mod m for x < 2m.
func wrap(x, m uint64) uint64 {
	return x - m&uint64(int64(m-1-x)>>63) // branch-free: x ≥ m subtracts m
}

// modInverse returns a⁻¹ mod m for a prime m and 0 < a < m, by the
// extended Euclidean algorithm.
func modInverse(a, m uint64) uint64 {
	t, newT := int64(0), int64(1)
	r, newR := int64(m), int64(a)
	for newR != 0 {
		q := r / newR
		t, newT = newT, t-q*newT
		r, newR = newR, r-q*newR
	}
	if t < 0 {
		t += int64(m)
	}
	return uint64(t)
}

// reducer computes x mod m for x < 2^63 without a division (Barrett
// reduction): q = ⌊x·⌊(2^64-1)/m⌋ / 2^64⌋ is ⌊x/m⌋ or one less. populate's
// x are below 2M·M < 2^53.
type reducer struct {
	m, r uint64
}

func newReducer(m uint64) reducer { return reducer{m: m, r: ^uint64(0) / m} }

func (red reducer) mod(x uint64) uint64 {
	q, _ := bits.Mul64(x, red.r)
	x -= q * red.m
	if x >= red.m {
		x -= red.m
	}
	return x
}
