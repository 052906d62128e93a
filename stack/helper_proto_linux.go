package stack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
)

// The helper's protocol: one request from the daemon, one reply from the
// helper, each a JSON object in one SOCK_SEQPACKET message on the
// socketpair the helper inherits; the reply to an open or an adopt that
// succeeded carries the TUN descriptor (SCM_RIGHTS). Both sides decode
// strictly: unknown fields, trailing data and out-of-range values are
// errors, never a guess.

// helperMaxMsg bounds one message of the protocol.
const helperMaxMsg = 64 << 10

// The operations a helper performs.
const (
	helperOpen   = "open"   // create and configure a TUN, return it
	helperAdopt  = "adopt"  // attach to a persistent TUN, return it and its MTU
	helperDelete = "delete" // attach to a persistent TUN, clear persistence, close it
)

// helperRequest is what the daemon asks.
type helperRequest struct {
	Op     string         `json:"op"`
	Name   string         `json:"name"`
	MTU    int            `json:"mtu,omitempty"`    // open
	Addrs  []netip.Prefix `json:"addrs,omitempty"`  // open
	Routes []netip.Prefix `json:"routes,omitempty"` // open, default routes included
}

// The steps a helper's failure is in, so that the daemon says it in the
// words the direct path uses.
const (
	stepTUN       = "tun"       // attachTUN: open /dev/net/tun, TUNSETIFF
	stepDevTUN    = "devtun"    // /dev/net/tun is not open to the user
	stepConfigure = "configure" // configureLink
	stepMTU       = "mtu"       // reading an adopted device's MTU
	stepDelete    = "delete"    // clearing persistence
)

// helperReply is what the helper answers.
type helperReply struct {
	// Err is the failure; nil for success.
	Err *helperFailure `json:"err,omitempty"`
	// MTU of the device (open, adopt).
	MTU int `json:"mtu,omitempty"`
}

// helperFailure is a helper's failure, carried across.
type helperFailure struct {
	Step string `json:"step"`
	// Errno is the system's error number, 0 if the failure was none.
	Errno uint32 `json:"errno,omitempty"`
	// NoPersistent: adopting found no persistent TUN of the name.
	NoPersistent bool `json:"no_persistent,omitempty"`
	// IPv6Off: the device cannot have IPv6 addresses (ErrIPv6Disabled).
	IPv6Off bool `json:"ipv6_off,omitempty"`
	// Msg is the helper's text of the error.
	Msg string `json:"msg"`
}

// decodeStrict decodes one JSON object from b into v: unknown fields and
// anything after the object are errors.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the message")
	}
	if _, err := dec.Token(); err == nil {
		return errors.New("data after the message")
	}
	return nil
}

// decodeHelperRequest parses and checks a request (the helper's side).
func decodeHelperRequest(b []byte) (helperRequest, error) {
	var req helperRequest
	if len(b) > helperMaxMsg {
		return req, fmt.Errorf("request of %d bytes, more than %d", len(b), helperMaxMsg)
	}
	if err := decodeStrict(b, &req); err != nil {
		return req, fmt.Errorf("request: %w", err)
	}
	switch req.Op {
	case helperOpen:
		// The kernel refuses an MTU it cannot take, as on the direct path.
		if req.MTU <= 0 {
			return req, fmt.Errorf("request: MTU %d, want a positive one", req.MTU)
		}
		for _, p := range append(append([]netip.Prefix(nil), req.Addrs...), req.Routes...) {
			if !p.IsValid() {
				return req, fmt.Errorf("request: invalid prefix %v", p)
			}
		}
	case helperAdopt, helperDelete:
		if req.MTU != 0 || len(req.Addrs) != 0 || len(req.Routes) != 0 {
			return req, fmt.Errorf("request: %s takes a name only", req.Op)
		}
	default:
		return req, fmt.Errorf("request: unknown op %q", req.Op)
	}
	if err := checkIfName(req.Name); err != nil {
		return req, fmt.Errorf("request: %w", err)
	}
	return req, nil
}

// decodeHelperReply parses and checks a reply to req (the daemon's side).
func decodeHelperReply(b []byte, req helperRequest) (helperReply, error) {
	var rep helperReply
	if len(b) == 0 {
		return rep, errors.New("an empty reply")
	}
	if len(b) > helperMaxMsg {
		return rep, fmt.Errorf("a reply of %d bytes, more than %d", len(b), helperMaxMsg)
	}
	if err := decodeStrict(b, &rep); err != nil {
		return rep, fmt.Errorf("reply: %w", err)
	}
	if f := rep.Err; f != nil {
		switch f.Step {
		case stepTUN, stepDevTUN, stepConfigure, stepMTU, stepDelete:
		default:
			return rep, fmt.Errorf("reply: unknown step %q", f.Step)
		}
		if rep.MTU != 0 {
			return rep, errors.New("reply: a failure with an MTU")
		}
		if f.Errno > 4095 {
			return rep, fmt.Errorf("reply: errno %d out of range", f.Errno)
		}
		return rep, nil
	}
	switch req.Op {
	case helperOpen:
		if rep.MTU != req.MTU {
			return rep, fmt.Errorf("reply: MTU %d, asked for %d", rep.MTU, req.MTU)
		}
	case helperAdopt:
		if rep.MTU <= 0 {
			return rep, fmt.Errorf("reply: MTU %d, want a positive one", rep.MTU)
		}
	case helperDelete:
		if rep.MTU != 0 {
			return rep, errors.New("reply: an MTU for a delete")
		}
	}
	return rep, nil
}
