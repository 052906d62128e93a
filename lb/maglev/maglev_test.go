package maglev

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func backends(n int, weight func(i int) uint32) []Backend {
	bs := make([]Backend, n)
	for i := range bs {
		bs[i] = Backend{ID: fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1), Weight: weight(i)}
	}
	return bs
}

func counts(t *Table) []int {
	c := make([]int, len(t.Backends()))
	for _, s := range t.slots {
		c[s]++
	}
	return c
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		backends []Backend
		size     uint64
		want     string
	}{
		{"not prime", backends(3, func(int) uint32 { return 1 }), 65536, "not a prime"},
		{"one", backends(1, func(int) uint32 { return 1 }), 1, "not a prime"},
		{"too big", backends(1, func(int) uint32 { return 1 }), 1<<26 + 15, "not a prime"},
		{"empty ID", []Backend{{ID: "", Weight: 1}}, 7, "empty ID"},
		{"duplicate", []Backend{{ID: "a", Weight: 1}, {ID: "a", Weight: 2}}, 7, "duplicate"},
		{"too many", backends(8, func(int) uint32 { return 1 }), 7, "do not fit"},
	} {
		_, err := New(tc.backends, tc.size)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New(%d backends, %d) = %v, want error containing %q", tc.name, len(tc.backends), tc.size, err, tc.want)
		}
	}
}

func TestEmpty(t *testing.T) {
	for _, bs := range [][]Backend{nil, {{ID: "a"}, {ID: "b"}}} {
		tb, err := New(bs, 0)
		if err != nil {
			t.Fatalf("New(%v) = %v", bs, err)
		}
		if tb.Size() != DefaultSize {
			t.Errorf("Size() = %d, want %d", tb.Size(), DefaultSize)
		}
		if idx, ok := tb.Lookup(12345); ok {
			t.Errorf("Lookup on empty table = %d, true; want false", idx)
		}
		if !tb.Empty() {
			t.Errorf("Empty() = false for %v", bs)
		}
	}
	// Eight zero-weight backends fit a table of 7: they take no slots.
	if _, err := New(backends(8, func(int) uint32 { return 0 }), 7); err != nil {
		t.Errorf("New(8 drained backends, 7) = %v, want nil", err)
	}
}

// TestShares checks the property: with M > 100 × backends every
// backend's share of slots is within 1% (relative) of its weight's share.
func TestShares(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		n    int
		size uint64
		w    func(i int) uint32
	}{
		{"3 equal", 3, DefaultSize, func(int) uint32 { return 1 }},
		{"3 weighted 1:2:3", 3, DefaultSize, func(i int) uint32 { return uint32(i + 1) }},
		{"10 equal M=1009", 10, 1009, func(int) uint32 { return 100 }},
		{"100 equal", 100, DefaultSize, func(int) uint32 { return 7 }},
		{"100 weighted 1..4", 100, DefaultSize, func(int) uint32 { return 1 + rng.Uint32N(4) }},
		{"600 equal", 600, DefaultSize, func(int) uint32 { return 1 }},
		{"10 huge weights", 10, DefaultSize, func(i int) uint32 { return math.MaxUint32 - uint32(i)*1000 }},
		{"50 weighted M=655373", 50, 655373, func(i int) uint32 { return uint32(i%5 + 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := backends(tc.n, tc.w)
			tb, err := New(bs, tc.size)
			if err != nil {
				t.Fatal(err)
			}
			var total float64
			for _, b := range tb.Backends() {
				total += float64(b.Weight)
			}
			worst := 0.0
			for i, c := range counts(tb) {
				want := float64(tb.Size()) * float64(tb.Backends()[i].Weight) / total
				dev := math.Abs(float64(c)-want) / want
				worst = max(worst, dev)
				if dev > 0.01 {
					t.Errorf("backend %s (weight %d) has %d slots, want %.1f ±1%%", tb.Backends()[i].ID, tb.Backends()[i].Weight, c, want)
				}
			}
			t.Logf("worst relative deviation %.4f%%", worst*100)
		})
	}
}

func TestInsertOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	bs := backends(97, func(i int) uint32 { return uint32(i%3 + 1) })
	want, err := New(bs, DefaultSize)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		shuffled := append([]Backend(nil), bs...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got, err := New(shuffled, DefaultSize)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(want) {
			t.Fatalf("table from shuffled backends differs from the sorted build")
		}
	}
}

// TestGolden pins the hash and the population loop: every node and every
// release must build the same table from the same backends.
func TestGolden(t *testing.T) {
	tb, err := New([]Backend{{ID: "a", Weight: 1}, {ID: "b", Weight: 2}, {ID: "c", Weight: 1}}, 13)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(tb.slots)
	const want = "[2 1 0 1 1 0 1 2 1 2 1 1 0]"
	if got != want {
		t.Errorf("slots = %s, want %s", got, want)
	}
}

// TestRemoveOne checks minimal disruption: removing one of N backends moves
// that backend's slots and at most about 1% of the others'.
func TestRemoveOne(t *testing.T) {
	for _, n := range []int{5, 10, 100, 500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			bs := backends(n, func(int) uint32 { return 1 })
			before, err := New(bs, DefaultSize)
			if err != nil {
				t.Fatal(err)
			}
			for _, victim := range []int{0, n / 2, n - 1} {
				rest := append(append([]Backend(nil), bs[:victim]...), bs[victim+1:]...)
				after, err := New(rest, DefaultSize)
				if err != nil {
					t.Fatal(err)
				}
				moved, orphaned := 0, 0
				for s := range before.slots {
					was := before.Backends()[before.slots[s]].ID
					now := after.Backends()[after.slots[s]].ID
					if was == bs[victim].ID {
						orphaned++
						continue
					}
					if was != now {
						moved++
					}
				}
				frac := float64(moved) / float64(int(before.Size())-orphaned)
				t.Logf("remove %d of %d: %d slots reassigned, %d of the others moved (%.3f%%)", victim, n, orphaned, moved, frac*100)
				if frac > 0.01 {
					t.Errorf("removing backend %d of %d moved %.2f%% of the other backends' slots, want ≤ 1%%", victim, n, frac*100)
				}
			}
		})
	}
}

func TestLookupAllocs(t *testing.T) {
	tb, err := New(backends(10, func(int) uint32 { return 1 }), DefaultSize)
	if err != nil {
		t.Fatal(err)
	}
	h := uint64(0)
	if a := testing.AllocsPerRun(1000, func() { h += 0x9e3779b97f4a7c15; tb.Lookup(h) }); a != 0 {
		t.Errorf("Lookup allocates %v times, want 0", a)
	}
}

func FuzzNew(f *testing.F) {
	f.Add([]byte{1, 2, 3}, uint16(13))
	f.Add([]byte{0, 0, 0, 0}, uint16(7))
	f.Add([]byte{255, 0, 1}, uint16(2))
	f.Add([]byte("\x01a\x00b\x05c"), uint16(65521))
	f.Fuzz(func(t *testing.T, data []byte, size uint16) {
		// Each pair of bytes is one backend: an ID from a small alphabet (so
		// duplicates happen) and a weight.
		var bs []Backend
		for i := 0; i+1 < len(data) && len(bs) < 256; i += 2 {
			bs = append(bs, Backend{ID: string(rune('a' + data[i]%40)), Weight: uint32(data[i+1]) * uint32(data[i+1]) * 65537})
		}
		tb, err := New(bs, uint64(size))
		if err != nil {
			return
		}
		active := 0
		for _, b := range tb.Backends() {
			if b.Weight > 0 {
				active++
			}
		}
		if len(tb.Backends()) != len(bs) {
			t.Fatalf("Backends() has %d entries, want %d", len(tb.Backends()), len(bs))
		}
		if active == 0 {
			if _, ok := tb.Lookup(1); ok {
				t.Fatal("Lookup on a table without weights reported ok")
			}
			return
		}
		if uint64(len(tb.slots)) != tb.Size() {
			t.Fatalf("%d slots, want %d", len(tb.slots), tb.Size())
		}
		if want := populateRef(tb.Backends(), tb.Size()); !slices.Equal(tb.slots, want) {
			t.Fatalf("slots differ from the reference build:\n got %v\nwant %v", tb.slots[:min(len(want), 64)], want[:min(len(want), 64)])
		}
		for s, b := range tb.slots {
			if int(b) >= len(tb.Backends()) || tb.Backends()[b].Weight == 0 {
				t.Fatalf("slot %d = %d: not a backend of positive weight", s, b)
			}
		}
		for _, h := range []uint64{0, 1, math.MaxUint64, uint64(len(data)) << 60} {
			idx, ok := tb.Lookup(h)
			if !ok || tb.Backends()[idx].Weight == 0 {
				t.Fatalf("Lookup(%#x) = %d, %v", h, idx, ok)
			}
		}
	})
}
