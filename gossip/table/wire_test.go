package table

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestWireRoundTrip(t *testing.T) {
	es := []Entry{
		{Table: "routes", Network: "blue", Key: "10.1.0.2", Value: []byte("a"), Owner: "a", Time: 1},
		{Table: "routes", Network: "blue", Key: "10.1.0.3", Owner: "b", Time: 1 << 60, Deleted: true},
		{Table: strings.Repeat("t", MaxTableLen), Network: strings.Repeat("n", MaxNetworkLen), Key: strings.Repeat("k", MaxKeyLen),
			Owner: strings.Repeat("o", MaxNameLen), Time: ^uint64(0), Value: bytes.Repeat([]byte{1}, MaxValueLen)},
	}
	for _, e := range es {
		got, err := DecodeEntry(appendEntry(nil, &e))
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Errorf("DecodeEntry(appendEntry(%+v)) = %+v, %v", e, got, err)
		}
	}
	// The largest entry fits a UDP gossip packet with room for framing.
	if n := len(EncodeDeltas(es[2:])); n > 1400-128 {
		t.Errorf("largest delta is %d bytes, more than a packet allows", n)
	}
	m, err := decodeMessage(EncodeDeltas(es))
	if err != nil || !reflect.DeepEqual(m.Entries, es) {
		t.Errorf("deltas round trip = %+v, %v", m, err)
	}
	m, err = decodeMessage(encodeBulk("a", "blue", bulkReply, es[:2]))
	if err != nil || m.Sender != "a" || m.Network != "blue" || m.Flags != bulkReply || len(m.Entries) != 2 {
		t.Errorf("bulk round trip = %+v, %v", m, err)
	}
	ds := []digest{{"", 1}, {"blue", 2}}
	glob := []Entry{{Table: "t", Key: "k", Owner: "a", Time: 3, Value: []byte{}}}
	m, err = decodeMessage(encodeState("a", glob, true, ds))
	if err != nil || !m.HasGlobal || !reflect.DeepEqual(m.Digests, ds) || len(m.Entries) != 1 {
		t.Errorf("state round trip = %+v, %v", m, err)
	}
	for _, tc := range []struct {
		in   []byte
		want error
	}{
		{nil, errTruncated},
		{[]byte{2, msgDeltas, 0}, errVersion},
		{[]byte{1, 9}, errType},
		{[]byte{1, msgDeltas, 0, 0}, errTrailing},
		{[]byte{1, msgDeltas, 200}, errTruncated}, // count larger than the bytes left
		{append([]byte{1, msgDeltas, 1}, appendEntry(nil, &Entry{Table: "", Owner: "a"})...), errInvalid},
	} {
		if _, err := decodeMessage(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("decodeMessage(%x) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

// TestWireGolden pins the wire format byte for byte (the bytes were taken
// from the encoders before the tables moved out of package gossip), and
// the sync digest's entry hash, which both ends of a push/pull compare.
func TestWireGolden(t *testing.T) {
	es := []Entry{
		{Table: "routes", Network: "blue", Key: "10.1.0.2", Value: []byte("a"), Owner: "a", Time: 7},
		{Table: "routes", Network: "blue", Key: "10.1.0.3", Owner: "b", Time: 300, Deleted: true},
	}
	part := Entry{Table: tableNet, Key: "blue\x00a", Value: []byte("blue"), Owner: "a", Time: 1}
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"entry", appendEntry(nil, &es[0]), "06726f7574657304626c75650831302e312e302e32016107000161"},
		{"deltas", EncodeDeltas(es), "01010206726f7574657304626c75650831302e312e302e3201610700016106726f7574657304626c75650831302e312e302e330162ac020100"},
		{"packed deltas", PackDeltas([][]byte{appendEntry(nil, &es[0]), appendEntry(nil, &es[1])}), "01010206726f7574657304626c75650831302e312e302e3201610700016106726f7574657304626c75650831302e312e302e330162ac020100"},
		{"bulk", encodeBulk("a", "blue", bulkReply, append([]Entry{part}, es...)), "0102016104626c756501030a676f737369702e6e65740006626c756500610161010004626c756506726f7574657304626c75650831302e312e302e3201610700016106726f7574657304626c75650831302e312e302e330162ac020100"},
		{"state", encodeState("a", []Entry{part}, true, []digest{{"", 1}, {"blue", 0xdeadbeef}}), "0103016101010a676f737369702e6e65740006626c756500610161010004626c75650200000000000000000104626c756500000000deadbeef"},
		{"state without global entries", encodeState("a", nil, false, []digest{{"", 1}}), "010301610001000000000000000001"},
		{"hello", EncodeHello("c", netip.MustParseAddrPort("198.18.0.3:7946")), "010401630f3139382e31382e302e333a37393436"},
	} {
		if got := hex.EncodeToString(tc.got); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.name, got, tc.want)
		}
	}
	if h := entryHash(&es[0]); h != 0x253aa734eeb18792 {
		t.Errorf("entryHash(%+v) = %#x, want 0x253aa734eeb18792", es[0], h)
	}
	if h := entryHash(&part); h != 0x3dcbe42b8906e5d7 {
		t.Errorf("entryHash(%+v) = %#x, want 0x3dcbe42b8906e5d7", part, h)
	}
}
