package maglev

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// DefaultSize is the table size used by the paper for small deployments and
// by overlayd by default: prime, and more than 100 times the backends of
// any service up to 655 backends, which keeps every backend within 1% of
// its weighted share.
const DefaultSize = 65537

// MaxSize is the largest table size New accepts.
const MaxSize = 1<<26 - 5 // the largest prime below 2^26

// MaxBackends is the largest number of backends a table can hold.
const MaxBackends = 1<<16 - 1

// Fixed seeds of the permutation hashes. See the package documentation.
const (
	offsetSeed uint64 = 0x6f7665726c617964 // "overlayd"
	skipSeed   uint64 = 0x6d61676c65763031 // "maglev01"
)

// Backend is one entry of a Table.
type Backend struct {
	// ID identifies the backend stably across nodes and rebuilds (for
	// example its overlay address and port). It orders the backends and
	// seeds its permutation, so it must not be empty and must be unique.
	ID string
	// Weight is the backend's relative share of the table. 0 means the
	// backend holds no slots (draining).
	Weight uint32
}

// Table is an immutable Maglev lookup table. It is safe for concurrent use.
type Table struct {
	backends []Backend // sorted by ID
	slots    []uint16  // index into backends, len == size, or nil when empty
	size     uint64
}

// New builds the table of size M (which must be prime; 0 means
// DefaultSize) for backends. The order of backends does not matter. With
// no backend of positive weight New returns an empty table whose Lookup
// always reports false. It returns an error for a size that is not prime or
// is larger than MaxSize, an empty or duplicate ID, more than MaxBackends
// backends, or more backends of positive weight than slots.
func New(backends []Backend, size uint64) (*Table, error) {
	if size == 0 {
		size = DefaultSize
	}
	if size > MaxSize || !isPrime(size) {
		return nil, fmt.Errorf("maglev: table size %d is not a prime between 2 and %d", size, uint64(MaxSize))
	}
	if len(backends) > MaxBackends {
		return nil, fmt.Errorf("maglev: %d backends, at most %d allowed", len(backends), MaxBackends)
	}
	bs := slices.Clone(backends)
	slices.SortFunc(bs, func(a, b Backend) int { return cmp.Compare(a.ID, b.ID) })
	active := 0
	for i, b := range bs {
		if b.ID == "" {
			return nil, errors.New("maglev: backend with an empty ID")
		}
		if i > 0 && bs[i-1].ID == b.ID {
			return nil, fmt.Errorf("maglev: duplicate backend ID %q", b.ID)
		}
		if b.Weight > 0 {
			active++
		}
	}
	if uint64(active) > size {
		return nil, fmt.Errorf("maglev: %d backends do not fit in a table of size %d", active, size)
	}
	t := &Table{backends: bs, size: size}
	if active > 0 {
		t.slots = populate(bs, size)
	}
	return t, nil
}

// Lookup returns the index in Backends of the backend that owns hash. ok is
// false when the table is empty. The slot is the high 64 bits of hash×M, so
// hash should be uniformly distributed over all 64 bits. Lookup allocates
// nothing.
func (t *Table) Lookup(hash uint64) (idx int, ok bool) {
	if t == nil || t.slots == nil {
		return -1, false
	}
	hi, _ := bits.Mul64(hash, t.size)
	return int(t.slots[hi]), true
}

// Backends returns the table's backends ordered by ID; Lookup indexes into
// this slice. The caller must not modify it.
func (t *Table) Backends() []Backend { return t.backends }

// Size returns the number of slots, M.
func (t *Table) Size() uint64 { return t.size }

// Empty reports whether the table has no backend of positive weight.
func (t *Table) Empty() bool { return t == nil || t.slots == nil }

// Equal reports whether t and u have the same backends, weights and slots.
func (t *Table) Equal(u *Table) bool {
	return t.size == u.size && slices.Equal(t.backends, u.backends) && slices.Equal(t.slots, u.slots)
}

// hashID is FNV-1a 64 seeded by XOR into the offset basis, finished with
// MurmurHash3's fmix64.
func hashID(seed uint64, s string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64) ^ seed
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime64
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// isPrime reports whether n is prime, by trial division (n ≤ MaxSize).
func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for d := uint64(3); d*d <= n; d += 2 {
		if n%d == 0 {
			return false
		}
	}
	return true
}
