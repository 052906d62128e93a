package table

import (
	"net/netip"
	"testing"
)

func seedEntries() []Entry {
	return []Entry{
		{Table: "routes", Network: "blue", Key: "10.1.0.2", Value: []byte("a"), Owner: "a", Time: 7},
		{Table: "routes", Network: "blue", Key: "10.1.0.3", Owner: "b", Time: 9, Deleted: true},
		{Table: tableNet, Key: "blue\x00a", Value: []byte("blue"), Owner: "a", Time: 1},
	}
}

func FuzzDecodeEntry(f *testing.F) {
	for _, e := range seedEntries() {
		f.Add(appendEntry(nil, &e))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			return
		}
		again, err := DecodeEntry(appendEntry(nil, &e))
		if err != nil || compareEntries(&e, &again) != 0 {
			t.Fatalf("re-encoding %+v gives %+v, %v", e, again, err)
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	es := seedEntries()
	f.Add(EncodeDeltas(es))
	f.Add(encodeBulk("a", "blue", bulkReply, es[:2]))
	f.Add(encodeState("a", es[2:], true, []digest{{"", 1}, {"blue", 2}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeMessage(b)
		// Whatever decodes, the node must survive handling it.
		s := newTestStore()
		s.joined["blue"] = true
		s.Receive(b)
	})
}

func FuzzMergeRemoteState(f *testing.F) {
	es := seedEntries()
	f.Add(encodeState("a", es[2:], true, []digest{{"", 1}, {"blue", 2}}))
	f.Add(encodeState("z", nil, false, []digest{{"", 1}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := newTestStore()
		s.joined["blue"] = true
		s.nets["blue"] = &netState{entries: map[ekey]*record{}}
		before := s.Stats()
		s.MergeState(b)
		after := s.Stats()
		if _, err := decodeMessage(b); err != nil && after.MsgsIn != before.MsgsIn {
			t.Fatalf("bad state counted as received")
		}
	})
}

// FuzzHello: a hello decodes to a name and a usable address, or is a
// counted drop; never a panic.
func FuzzHello(f *testing.F) {
	f.Add(EncodeHello("c", netip.MustParseAddrPort("198.18.0.3:7946")))
	f.Add(EncodeHello("n", netip.MustParseAddrPort("[2001:db8::1]:7946")))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil || m.Type != msgHello {
			return
		}
		if m.Sender == "" || !m.Addr.IsValid() || m.Addr.Port() == 0 {
			t.Fatalf("hello %+v accepted", m)
		}
		if got, err := decodeMessage(EncodeHello(m.Sender, m.Addr)); err != nil || got.Sender != m.Sender || got.Addr != m.Addr {
			t.Fatalf("re-encoded hello = %+v, %v; want %+v", got, err, m)
		}
		s := newTestStore()
		if h, ok := s.Receive(b); !ok || h.Sender != m.Sender || h.Addr != m.Addr {
			t.Fatalf("Receive(hello %+v) = %+v, %v", m, h, ok)
		}
	})
}
