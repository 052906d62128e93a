package maglev

import (
	"cmp"
	"slices"
)

// schedule returns the order in which the active backends cur (in the
// order of bs) take their turns: indexes into cur, one period of the order
// or the first M turns, whichever is shorter.
//
// Backend k's turn t comes at the time t/w(k), and turns go by time, ties
// to the lower index, so the schedule is the turns sorted by (t/w, k). They
// are sorted a window of time at a time, each of about window turns: the
// turns whose time falls in the window are put into buckets by their time
// rounded to a float64, and each bucket is sorted exactly. Rounding is
// monotonic, so turns in different buckets are already in order and equal
// times share a bucket; within a bucket times are compared by
// cross-multiplying in 64 bits (t < 2^27, w < 2^32).
func schedule(bs []Backend, cur []cursor, m uint64) []uint16 {
	var g uint32 // gcd of the weights
	for _, c := range cur {
		g = gcd(g, bs[c.idx].Weight)
	}
	var period uint64
	w := make([]uint64, len(cur))
	for k, c := range cur {
		w[k] = uint64(bs[c.idx].Weight / g)
		period += w[k]
	}
	n := int(min(period, m))
	sched := make([]uint16, 0, n)
	if period == uint64(len(cur)) { // equal weights: a round robin
		for k := range cur {
			sched = append(sched, uint16(k))
		}
		return sched
	}

	const window = 4096 // turns per window, and buckets
	width := window / float64(period)
	next := make([]uint32, len(cur)) // each backend's next turn, from 1
	for k := range next {
		next[k] = 1
	}
	turns := make([]turn, 0, window+len(cur))
	sorted := make([]turn, window+len(cur))
	start := make([]int32, window+1) // bucket b is sorted[start[b]:start[b+1]]
	free := make([]int32, window)    // the next free place of each bucket
	for lo := 0.0; len(sched) < n; {
		hi := lo + width
		turns = turns[:0]
		for k, wk := range w {
			t, fw := next[k], float64(wk)
			for {
				at := float64(t) / fw
				if at >= hi {
					break
				}
				turns = append(turns, turn{at: at, t: t, k: uint16(k)})
				t++
			}
			next[k] = t
		}
		// A counting sort by bucket, stable: turns of one bucket stay in
		// the order of their backends.
		scale := window / width
		bucket := func(at float64) int {
			return min(max(int((at-lo)*scale), 0), window-1)
		}
		clear(start)
		for _, tn := range turns {
			start[bucket(tn.at)+1]++
		}
		for b := 1; b <= window; b++ {
			start[b] += start[b-1]
		}
		sorted = slices.Grow(sorted[:0], len(turns))[:len(turns)]
		copy(free, start[:window])
		for _, tn := range turns {
			b := bucket(tn.at)
			sorted[free[b]] = tn
			free[b]++
		}
		for b := range window {
			if start[b+1]-start[b] > 1 {
				sortBucket(sorted[start[b]:start[b+1]], w)
			}
		}
		for _, tn := range sorted {
			if len(sched) == n {
				break
			}
			sched = append(sched, tn.k)
		}
		lo = hi
	}
	return sched
}

// turn is backend k's turn t, at the time at = t/w(k) rounded.
type turn struct {
	at float64
	t  uint32
	k  uint16
}

// earlier compares turns a and b of backends with the weights w: by time,
// then by backend.
func earlier(a, b turn, w []uint64) int {
	if a.at != b.at {
		return cmp.Compare(a.at, b.at)
	}
	if c := cmp.Compare(uint64(a.t)*w[b.k], uint64(b.t)*w[a.k]); c != 0 {
		return c
	}
	return cmp.Compare(a.k, b.k)
}

// sortBucket sorts one bucket's turns, which are mostly one or two.
func sortBucket(ts []turn, w []uint64) {
	if len(ts) > 16 {
		slices.SortFunc(ts, func(a, b turn) int { return earlier(a, b, w) })
		return
	}
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && earlier(ts[j], ts[j-1], w) < 0; j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
