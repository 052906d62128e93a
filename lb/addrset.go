package lb

import (
	"iter"
	"maps"

	"github.com/overlayd/overlayd/packet"
)

// addrSet maps addresses (16 bytes, IPv4-mapped for IPv4) to a time,
// split by family so that an IPv4 lookup, once per packet, takes the
// map's 4-byte fast path.
type addrSet struct {
	v4 map[[4]byte]int64
	v6 map[[16]byte]int64
}

func newAddrSet() addrSet {
	return addrSet{v4: make(map[[4]byte]int64), v6: make(map[[16]byte]int64)}
}

// has reports whether a is in s.
func (s addrSet) has(a *[16]byte) bool {
	var ok bool
	if packet.Is4(*a) {
		_, ok = s.v4[[4]byte(a[12:])]
	} else {
		_, ok = s.v6[*a]
	}
	return ok
}

func (s addrSet) set(a [16]byte, t int64) {
	if packet.Is4(a) {
		s.v4[[4]byte(a[12:])] = t
	} else {
		s.v6[a] = t
	}
}

func (s addrSet) len() int { return len(s.v4) + len(s.v6) }

// all yields every address of s with its time.
func (s addrSet) all() iter.Seq2[[16]byte, int64] {
	return func(yield func([16]byte, int64) bool) {
		for a, t := range s.v4 {
			if !yield([16]byte{10: 0xff, 11: 0xff, 12: a[0], 13: a[1], 14: a[2], 15: a[3]}, t) {
				return
			}
		}
		for a, t := range s.v6 {
			if !yield(a, t) {
				return
			}
		}
	}
}

// filter returns the addresses of s whose time keep accepts.
func (s addrSet) filter(keep func(t int64) bool) addrSet {
	out := addrSet{v4: maps.Clone(s.v4), v6: maps.Clone(s.v6)}
	maps.DeleteFunc(out.v4, func(_ [4]byte, t int64) bool { return !keep(t) })
	maps.DeleteFunc(out.v6, func(_ [16]byte, t int64) bool { return !keep(t) })
	return out
}
