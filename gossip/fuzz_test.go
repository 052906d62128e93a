package gossip

import (
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
	f.Add(encodeDeltas(es))
	f.Add(encodeBulk("a", "blue", bulkReply, es[:2]))
	f.Add(encodeState("a", es[2:], true, []digest{{"", 1}, {"blue", 2}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeMessage(b)
		// Whatever decodes, the node must survive handling it.
		g := newTestStore()
		g.joined["blue"] = true
		g.handle(b)
	})
}

func FuzzMergeRemoteState(f *testing.F) {
	es := seedEntries()
	f.Add(encodeState("a", es[2:], true, []digest{{"", 1}, {"blue", 2}}))
	f.Add(encodeState("z", nil, false, []digest{{"", 1}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		g := newTestStore()
		g.joined["blue"] = true
		g.nets["blue"] = &netState{entries: map[ekey]*record{}}
		before := g.Stats()
		g.mergeRemoteState(b)
		after := g.Stats()
		if _, err := decodeMessage(b); err != nil && after.MsgsIn != before.MsgsIn {
			t.Fatalf("bad state counted as received")
		}
	})
}
