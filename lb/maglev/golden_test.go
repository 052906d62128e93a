package maglev

import (
	"encoding/binary"
	"hash/crc64"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// slotsHash is the CRC-64 (ECMA) of the slots as little-endian uint16s.
func slotsHash(t *Table) uint64 {
	b := make([]byte, 0, 2*len(t.slots))
	for _, s := range t.slots {
		b = binary.LittleEndian.AppendUint16(b, s)
	}
	return crc64.Checksum(b, crc64.MakeTable(crc64.ECMA))
}

// TestGoldenHashes pins whole tables of the sizes overlayd builds: the
// tables are compared across nodes, so a faster build must fill exactly the
// same slots. The hashes were taken from the heap-scheduled build of
// commit 88d836e, before it was optimised.
func TestGoldenHashes(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		size uint64
		w    func(i int) uint32
		want uint64
	}{
		{"1 backend", 1, DefaultSize, func(int) uint32 { return 1 }, 0x22bcf5d83b5a77be},
		{"10 equal", 10, DefaultSize, func(int) uint32 { return 1 }, 0x6829f92e8cc3afb6},
		{"100 equal", 100, DefaultSize, func(int) uint32 { return 3 }, 0xcc296510c1b553aa},
		{"1000 equal", 1000, DefaultSize, func(int) uint32 { return 1 }, 0x6916f96fd428e6b6},
		{"1000 weighted 1..4", 1000, DefaultSize, func(i int) uint32 { return uint32(i%4 + 1) }, 0xe4265795231c31a1},
		{"1000 distinct", 1000, DefaultSize, func(i int) uint32 { return uint32(1000 + i) }, 0x310d1c7e43ffa4ab},
		{"300 draining every 3rd", 300, DefaultSize, func(i int) uint32 { return uint32(i % 3) }, 0xa8ee3f0875340720},
		{"10 huge weights", 10, DefaultSize, func(i int) uint32 { return math.MaxUint32 - uint32(i)*1000 }, 0x01b504a92b0f8ae9},
		{"7 weighted M=13", 7, 13, func(i int) uint32 { return uint32(i%2 + 1) }, 0xb3366b585cf97019},
		{"13 equal M=13", 13, 13, func(int) uint32 { return 1 }, 0x1fb24c87a3a2417a},
		{"50 weighted M=655373", 50, 655373, func(i int) uint32 { return uint32(i%5 + 1) }, 0x2bb2f0bdf6bed806},
		{"5000 equal M=655373", 5000, 655373, func(int) uint32 { return 1 }, 0xab318a3e3b3e6007},
		{"20 weights 1 and 2^32-1", 20, 16381, func(i int) uint32 { return []uint32{1, math.MaxUint32}[i%2] }, 0x93ffd5bae8a6c609},
	} {
		tb, err := New(backends(tc.n, tc.w), tc.size)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := slotsHash(tb); got != tc.want {
			t.Errorf("%s: slots hash %#016x, want %#016x", tc.name, got, tc.want)
		}
	}
}

// randomPrimes are table sizes for the differential tests.
var randomPrimes = []uint64{2, 3, 5, 7, 13, 101, 1009, 4093, 16381, DefaultSize}

// TestMatchesReference builds random tables with populate and populateRef
// and requires the same slots: random backend counts, weights (equal, a
// few values, all different, huge, zero) and sizes.
func TestMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	weightKinds := []func() uint32{
		func() uint32 { return 1 },
		func() uint32 { return 1 + rng.Uint32N(4) },
		func() uint32 { return rng.Uint32N(3) },
		func() uint32 { return 1 + rng.Uint32N(100000) },
		func() uint32 { return rng.Uint32() },
		func() uint32 { return math.MaxUint32 - rng.Uint32N(2) },
	}
	// Near-equal weights falling with the index put many turns of
	// different times into one bucket, in reverse order; weight-1 backends
	// among large weights tie with everyone at time 1.
	for _, tc := range []struct {
		n int
		m uint64
		w func(i int) uint32
	}{
		{1000, DefaultSize, func(i int) uint32 { return 61000 - uint32(i) }},
		{600, 4093, func(i int) uint32 { return []uint32{1, 3000 + uint32(i)}[i%2] }},
		{300, DefaultSize, func(i int) uint32 { return uint32(i%7+1) * 9973 }},
	} {
		tb, err := New(backends(tc.n, tc.w), tc.m)
		if err != nil {
			t.Fatal(err)
		}
		if want := populateRef(tb.Backends(), tc.m); !slices.Equal(tb.slots, want) {
			t.Fatalf("%d backends, M = %d: slots differ from the reference", tc.n, tc.m)
		}
	}
	for iter := range 300 {
		m := randomPrimes[rng.IntN(len(randomPrimes))]
		n := 1 + rng.IntN(int(min(m, 1200)))
		w := weightKinds[rng.IntN(len(weightKinds))]
		bs := backends(n, func(int) uint32 { return w() })
		bs[rng.IntN(n)].Weight = max(bs[0].Weight, 1) // at least one active
		tb, err := New(bs, m)
		if err != nil {
			t.Fatalf("iteration %d: New(%d backends, %d) = %v", iter, n, m, err)
		}
		want := populateRef(tb.Backends(), m)
		if !slices.Equal(tb.slots, want) {
			t.Fatalf("iteration %d: %d backends, M = %d: slots differ from the reference", iter, n, m)
		}
	}
}

// TestArithmetic checks the end game's helpers against the plain operators.
func TestArithmetic(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, m := range append(randomPrimes, MaxSize) {
		red := newReducer(m)
		for range 2000 {
			if m > 2 {
				a := 1 + rng.Uint64N(m-1)
				if inv := modInverse(a, m); a*inv%m != 1 {
					t.Fatalf("modInverse(%d, %d) = %d: product mod M is %d, want 1", a, m, inv, a*inv%m)
				}
			}
			x := rng.Uint64N(2 * m * m)
			if got := red.mod(x); got != x%m {
				t.Fatalf("reducer(%d).mod(%d) = %d, want %d", m, x, got, x%m)
			}
			if w := rng.Uint64N(2 * m); wrap(w, m) != w%m {
				t.Fatalf("wrap(%d, %d) = %d, want %d", w, m, wrap(w, m), w%m)
			}
		}
	}
}
