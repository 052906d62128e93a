package table

import "time"

var zeroTime time.Time

// newTestStore returns a Store without queues, for merge tests; every
// owner counts as up.
func newTestStore() *Store {
	s, err := New(Options{Name: "self", WatchBuffer: 4, MaxPushPullBytes: 1 << 16})
	if err != nil {
		panic(err)
	}
	for _, n := range []string{"a", "b", "c"} {
		s.up[n] = true
	}
	return s
}
