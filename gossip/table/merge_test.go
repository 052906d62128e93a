package table

import (
	"bytes"
	"testing"

	"pgregory.net/rapid"
)

// genEntry draws versions of one key from a small space, so ties (same time,
// same owner) are frequent.
func genEntry() *rapid.Generator[Entry] {
	return rapid.Custom(func(t *rapid.T) Entry {
		e := Entry{
			Table: "t", Key: "k",
			Owner: rapid.SampledFrom([]string{"a", "b", "c"}).Draw(t, "owner"),
			Time:  rapid.Uint64Range(0, 4).Draw(t, "time"),
		}
		if rapid.Bool().Draw(t, "deleted") {
			e.Deleted = true
		} else {
			e.Value = rapid.SliceOfN(rapid.Byte(), 0, 2).Draw(t, "value")
		}
		return e
	})
}

func same(a, b Entry) bool {
	return a.Owner == b.Owner && a.Time == b.Time && a.Deleted == b.Deleted && bytes.Equal(a.Value, b.Value)
}

func TestMergeProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := genEntry().Draw(t, "a"), genEntry().Draw(t, "b"), genEntry().Draw(t, "c")
		if !same(merge(a, b), merge(b, a)) {
			t.Fatalf("merge not commutative: %+v, %+v", a, b)
		}
		if !same(merge(merge(a, b), c), merge(a, merge(b, c))) {
			t.Fatalf("merge not associative: %+v, %+v, %+v", a, b, c)
		}
		if !same(merge(a, a), a) {
			t.Fatalf("merge not idempotent: %+v", a)
		}
		m := merge(a, b)
		if !same(m, a) && !same(m, b) {
			t.Fatalf("merge(%+v, %+v) = %+v, neither", a, b, m)
		}
		// Last writer wins by (time, owner).
		if a.Time > b.Time && !same(m, a) || a.Time == b.Time && a.Owner > b.Owner && !same(m, a) {
			t.Fatalf("merge(%+v, %+v) = %+v, want the first", a, b, m)
		}
	})
}

// TestMergeDeleteVsOlderWrite: a tombstone beats every older write, and a
// newer write beats the tombstone, in any order of arrival.
func TestMergeDeleteVsOlderWrite(t *testing.T) {
	put := Entry{Table: "t", Key: "k", Owner: "a", Time: 5, Value: []byte("v")}
	del := Entry{Table: "t", Key: "k", Owner: "a", Time: 6, Deleted: true}
	again := Entry{Table: "t", Key: "k", Owner: "a", Time: 7, Value: []byte("w")}
	for _, tc := range []struct {
		a, b, want Entry
	}{
		{put, del, del}, {del, put, del},
		{del, again, again}, {again, del, again},
		// A tie between owners resolves by owner name everywhere.
		{Entry{Owner: "a", Time: 3}, Entry{Owner: "b", Time: 3}, Entry{Owner: "b", Time: 3}},
	} {
		if got := merge(tc.a, tc.b); !same(got, tc.want) {
			t.Errorf("merge(%+v, %+v) = %+v, want %+v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestStoreMergeOrderFree: applying the same versions in any order to a
// node's table gives the same table and the same digest.
func TestStoreMergeOrderFree(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		es := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) Entry {
			e := genEntry().Draw(t, "e")
			e.Key = rapid.SampledFrom([]string{"x", "y", "z"}).Draw(t, "key")
			return e
		}), 1, 12).Draw(t, "entries")
		perm := rapid.Permutation(es).Draw(t, "perm")
		s1, s2 := newTestStore(), newTestStore()
		for _, e := range es {
			s1.mergeLocked(e, zeroTime)
		}
		for _, e := range perm {
			s2.mergeLocked(e, zeroTime)
		}
		if s1.nets[""].sum != s2.nets[""].sum || s1.Digest("") != s2.Digest("") {
			t.Fatalf("order changed the result")
		}
	})
}
