package stack

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestHelperProtocol(t *testing.T) {
	open := helperRequest{Op: helperOpen, Name: "eth0", MTU: 1450,
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.1.0.2/24")}, Routes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}
	b, err := json.Marshal(open)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeHelperRequest(b); err != nil || !reflect.DeepEqual(got, open) {
		t.Errorf("decodeHelperRequest(%s) = %+v, %v, want %+v", b, got, err, open)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"op":"open","name":"eth0","mtu":1450}x`, "request: data after the message"},
		{`{"op":"open","name":"eth0","mtu":1450}{}`, "request: data after the message"},
		{`{"op":"open","name":"eth0","mtu":0}`, "request: MTU 0, want a positive one"},
		{`{"op":"open","name":"a/b","mtu":1450}`, `request: stack: "a/b" is not a valid interface name; use 1 to 15 letters, digits, '-' or '_'`},
		{`{"op":"open","name":"eth0","mtu":1450,"addrs":["10.1.0.2"]}`, `request: netip.ParsePrefix("10.1.0.2"): no '/'`},
		{`{"op":"adopt","name":"eth0","mtu":1450}`, "request: adopt takes a name only"},
		{`{"op":"rm","name":"eth0"}`, `request: unknown op "rm"`},
		{`{"op":"delete","name":"eth0","fd":3}`, `request: json: unknown field "fd"`},
		{`[]`, "request: json: cannot unmarshal array into Go value of type stack.helperRequest"},
		{`{"op":"delete","name":"` + strings.Repeat("x", helperMaxMsg) + `"}`, "request of 65561 bytes, more than 65536"},
	} {
		if _, err := decodeHelperRequest([]byte(tc.in)); err == nil || err.Error() != tc.want {
			t.Errorf("decodeHelperRequest(%.60s) = %v, want %q", tc.in, err, tc.want)
		}
	}

	adopt := helperRequest{Op: helperAdopt, Name: "eth0"}
	for _, tc := range []struct {
		in   string
		req  helperRequest
		want string
	}{
		{`{"mtu":1450}`, open, ""},
		{`{"mtu":1400}`, open, "reply: MTU 1400, asked for 1450"},
		{`{"mtu":1280}`, adopt, ""},
		{`{}`, adopt, "reply: MTU 0, want a positive one"},
		{`{"mtu":1280}`, helperRequest{Op: helperDelete, Name: "eth0"}, "reply: an MTU for a delete"},
		{`{"err":{"step":"tun","errno":16,"msg":"device or resource busy"}}`, open, ""},
		{`{"err":{"step":"boot","msg":"x"}}`, open, `reply: unknown step "boot"`},
		{`{"err":{"step":"tun","errno":99999,"msg":"x"}}`, open, "reply: errno 99999 out of range"},
		{`{"err":{"step":"tun","msg":"x"},"mtu":1450}`, open, "reply: a failure with an MTU"},
		{``, open, "an empty reply"},
	} {
		_, err := decodeHelperReply([]byte(tc.in), tc.req)
		if got := errString(err); got != tc.want {
			t.Errorf("decodeHelperReply(%s) for %s = %q, want %q", tc.in, tc.req.Op, got, tc.want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// FuzzHelperRequest: the helper's request parser never panics, and what
// it accepts encodes back to an equal request.
func FuzzHelperRequest(f *testing.F) {
	f.Add([]byte(`{"op":"open","name":"eth0","mtu":1450,"addrs":["10.1.0.2/24"],"routes":["0.0.0.0/0"]}`))
	f.Add([]byte(`{"op":"adopt","name":"eth0"}`))
	f.Add([]byte(`{"op":"delete","name":"ovl0"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeHelperRequest(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", req, err)
		}
		back, err := decodeHelperRequest(again)
		if err != nil || !reflect.DeepEqual(back, req) {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", req, back, err)
		}
	})
}

// FuzzHelperReply: the daemon's reply parser never panics, and what it
// accepts has an MTU only on success and a known step on failure.
func FuzzHelperReply(f *testing.F) {
	f.Add([]byte(`{"mtu":1450}`), false)
	f.Add([]byte(`{"err":{"step":"configure","errno":22,"msg":"set MTU 1048576: invalid argument"}}`), true)
	f.Add([]byte(`{"err":{"step":"tun","no_persistent":true,"msg":"no persistent TUN"}}`), false)
	f.Fuzz(func(t *testing.T, b []byte, adopt bool) {
		req := helperRequest{Op: helperOpen, Name: "eth0", MTU: 1450}
		if adopt {
			req = helperRequest{Op: helperAdopt, Name: "eth0"}
		}
		rep, err := decodeHelperReply(b, req)
		if err != nil {
			return
		}
		if rep.Err != nil {
			if rep.MTU != 0 {
				t.Fatalf("accepted a failure with an MTU: %+v", rep)
			}
			if e := rep.Err.err("/proc/1/ns/net", req); e == nil || e.Error() == "" {
				t.Fatalf("failure %+v made no error", rep.Err)
			}
			return
		}
		if rep.MTU <= 0 {
			t.Fatalf("accepted a success with MTU %d", rep.MTU)
		}
	})
}
