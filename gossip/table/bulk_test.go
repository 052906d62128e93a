package table

import "testing"

// TestBulkCarriesParticipation: a bulk sync of a network may carry the
// network's participation entries (and only those besides its own), and
// the receiver learns from them that the sender takes part.
func TestBulkCarriesParticipation(t *testing.T) {
	part := Entry{Table: tableNet, Key: "blue\x00a", Value: []byte("blue"), Owner: "a", Time: 3}
	route := Entry{Table: "routes", Network: "blue", Key: "a", Value: []byte("r"), Owner: "a", Time: 4}
	m, err := decodeMessage(encodeBulk("a", "blue", 0, []Entry{part, route}))
	if err != nil || len(m.Entries) != 2 {
		t.Fatalf("decode = %+v, %v", m, err)
	}
	for _, bad := range []Entry{
		{Table: tableNet, Key: "red\x00a", Value: []byte("red"), Owner: "a", Time: 3}, // another network's
		{Table: "other", Key: "blue\x00a", Value: []byte("x"), Owner: "a", Time: 3},   // not participation
	} {
		if _, err := decodeMessage(encodeBulk("a", "blue", 0, []Entry{bad})); err == nil {
			t.Errorf("bulk of blue carrying %+v decoded", bad)
		}
	}
	s := newTestStore()
	s.joined["blue"] = true
	s.netLocked("blue")
	s.Receive(encodeBulk("a", "blue", 0, []Entry{part, route}))
	if _, ok := s.Get("routes", "blue", "a"); !ok {
		t.Error("the route of a bulk's sender is hidden: its participation was not taken")
	}
	for _, bad := range []string{"", "x", "nope:1", "0.0.0.0:7946", "10.0.0.1:0"} {
		b := appendString(appendString(appendHeader(nil, msgHello), "c"), bad)
		if _, err := decodeMessage(b); err == nil {
			t.Errorf("hello with address %q decoded", bad)
		}
	}
}
