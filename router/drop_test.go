package router

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/overlayd/overlayd/vxlan"
)

// The names are the metrics labels, the API's keys and what overlayd
// status explains: each is pinned here.
func TestDropReason(t *testing.T) {
	seen := map[string]bool{}
	for r := range NumDropReasons {
		s := r.String()
		if s == "" || seen[s] || strings.ToLower(s) != s || strings.ContainsAny(s, " -") || strings.HasPrefix(s, "drop_reason_") {
			t.Errorf("DropReason(%d).String() = %q, want a unique snake_case name", r, s)
		}
		seen[s] = true
	}
	want := map[DropReason]string{
		DropNone: "none", DropShort: "short", DropFlags: "flags", DropUnknownVNI: "unknown_vni",
		DropNotPeer: "not_peer", DropNotForUs: "not_for_us", DropMalformed: "malformed",
		DropUnsupported: "unsupported", DropNoRoute: "no_route", DropTooBig: "too_big",
		DropARPUnresolved: "arp_unresolved", DropQueueFull: "queue_full", DropWriteError: "write_error",
		DropLBReset: "lb_reset", DropLBRefused: "lb_refused", DropNotOwner: "not_owner",
		DropKernelRcvbuf: "kernel_rcvbuf", DropSpoofedSource: "spoofed_source", DropOtherNetwork: "other_network",
		DropExtHeaders:  "ext_headers",
		DropReason(200): "drop_reason_200",
	}
	if len(want) != int(NumDropReasons)+1 {
		t.Errorf("the table pins %d reasons, there are %d: pin the new one's name", len(want)-1, NumDropReasons)
	}
	for r, want := range want {
		if got := r.String(); got != want {
			t.Errorf("DropReason(%d).String() = %q, want %q", uint8(r), got, want)
		}
	}

	var d DropCounters
	if s := d.Snapshot(); len(s) != 0 {
		t.Errorf("zero DropCounters.Snapshot() = %v, want empty", s)
	}
	d.Add(DropNotPeer)
	d.Add(DropNotPeer)
	d.AddN(DropWriteError, 5)
	if d.Load(DropNotPeer) != 2 || d.Load(DropWriteError) != 5 || d.Load(DropShort) != 0 {
		t.Errorf("Load = %d, %d, %d, want 2, 5, 0", d.Load(DropNotPeer), d.Load(DropWriteError), d.Load(DropShort))
	}
	if s := d.Snapshot(); len(s) != 2 || s["not_peer"] != 2 || s["write_error"] != 5 {
		t.Errorf("Snapshot() = %v, want map[not_peer:2 write_error:5]", s)
	}
	if n := testing.AllocsPerRun(100, func() { d.Add(DropTooBig) }); n != 0 {
		t.Errorf("DropCounters.Add: %v allocs per run, want 0", n)
	}
}

// What vxlan.Decap refuses is counted as the router's "short" and "flags".
func TestDecapDrop(t *testing.T) {
	for _, tt := range []struct {
		pkt  []byte
		want DropReason
	}{
		{nil, DropShort},
		{make([]byte, vxlan.EncapLen-1), DropShort},
		{make([]byte, vxlan.EncapLen), DropFlags}, // all zero: I flag clear
	} {
		_, _, err := vxlan.Decap(tt.pkt)
		if got := decapDrop(err); got != tt.want {
			t.Errorf("decapDrop(Decap(%x) = %v) = %v, want %v", tt.pkt, err, got, tt.want)
		}
	}
	if got := decapDrop(fmt.Errorf("wrapped: %w", vxlan.ErrFlags)); got != DropFlags {
		t.Errorf("decapDrop(wrapped ErrFlags) = %v, want %v", got, DropFlags)
	}
	if got := decapDrop(errors.New("vxlan: something new")); got != DropMalformed {
		t.Errorf("decapDrop(an unknown refusal) = %v, want %v", got, DropMalformed)
	}
}
