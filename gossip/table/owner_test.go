package table

import (
	"errors"
	"testing"
	"time"
)

// TestOwnerError: a write to another node's live entry fails with an
// *OwnerError naming the owner, which still matches ErrNotOwner, so a
// caller learns the owner without reading the message.
func TestOwnerError(t *testing.T) {
	s := newTestStore()
	s.mu.Lock()
	s.mergeLocked(Entry{Table: "services", Key: "web", Owner: "a", Time: 3, Value: []byte("v")}, time.Now())
	s.mu.Unlock()
	if e, ok := s.Get("services", "", "web"); !ok || e.Owner != "a" {
		t.Fatalf("Get(services//web) = %+v, %v; want a's entry", e, ok)
	}
	for name, err := range map[string]error{
		"Put":    s.Put("services", "", "web", []byte("w")),
		"Delete": s.Delete("services", "", "web"),
	} {
		var oe *OwnerError
		if !errors.As(err, &oe) || oe.Owner != "a" || oe.Table != "services" || oe.Key != "web" {
			t.Errorf("%s of a's entry = %#v, want an *OwnerError with owner a", name, err)
		}
		if !errors.Is(err, ErrNotOwner) {
			t.Errorf("%s of a's entry = %v, does not match ErrNotOwner", name, err)
		}
		if want := "gossip: entry is owned by another node: services//web belongs to a"; err == nil || err.Error() != want {
			t.Errorf("%s of a's entry = %v, want %q", name, err, want)
		}
	}
}
