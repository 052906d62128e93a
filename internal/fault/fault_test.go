package fault

import (
	"errors"
	"fmt"
	"testing"
)

func TestKinds(t *testing.T) {
	cause := errors.New("ipam: range exhausted")
	tests := []struct {
		err  error
		kind *Kind
		msg  string
	}{
		{Invalid("port %d is given twice", 80), ErrInvalid, "port 80 is given twice"},
		{NotFound("no service %q", "web"), ErrNotFound, `no service "web"`},
		{Conflict("%v", cause), ErrConflict, "ipam: range exhausted"},
		{Unavailable("no address yet (%w)", cause), ErrUnavailable, "no address yet (ipam: range exhausted)"},
		{&OwnerError{What: "service web", Verb: "created", Owner: "n0"}, ErrConflict, "service web was created by node n0; run the command there"},
		{&OwnerError{What: "backend 10.1.0.5:80", Verb: "added"}, ErrConflict, "backend 10.1.0.5:80 was added by another node; run the command there"},
		// Wrapped with context, the kind and the text carry through.
		{fmt.Errorf("line 3: service web: %w", NotFound("no service")), ErrNotFound, "line 3: service web: no service"},
		// The outer kind wins over its cause's.
		{Conflict("taken: %w", Unavailable("stopping")), ErrConflict, "taken: stopping"},
		{ErrUnavailable, ErrUnavailable, "unavailable"},
		{cause, nil, "ipam: range exhausted"},
		{nil, nil, ""},
	}
	for _, tt := range tests {
		if got := KindOf(tt.err); got != tt.kind {
			t.Errorf("KindOf(%v) = %v, want %v", tt.err, got, tt.kind)
		}
		if tt.kind != nil && !errors.Is(tt.err, tt.kind) {
			t.Errorf("errors.Is(%v, %v) = false", tt.err, tt.kind)
		}
		if tt.err != nil && tt.err.Error() != tt.msg {
			t.Errorf("message %q, want %q", tt.err.Error(), tt.msg)
		}
	}
	if err := Unavailable("no address yet (%w)", cause); !errors.Is(err, cause) {
		t.Errorf("%v does not wrap its %%w operand", err)
	}
	if err := Conflict("%v", cause); errors.Is(err, cause) {
		t.Errorf("%v wraps its %%v operand", err)
	}
	var oe *OwnerError
	if err := fmt.Errorf("x: %w", &OwnerError{What: "service web", Verb: "created", Owner: "n0"}); !errors.As(err, &oe) || oe.Owner != "n0" {
		t.Errorf("the owner is not found in %v", err)
	}
}

func TestAtLine(t *testing.T) {
	err := AtLine(7, "network blue", Conflict("exists with VNI %d, not %d", 1, 2))
	if err.Error() != "line 7: network blue: exists with VNI 1, not 2" || KindOf(err) != ErrConflict {
		t.Errorf("AtLine: %q, kind %v", err, KindOf(err))
	}
	if err := AtLine(0, "service web", Invalid("bad")); err.Error() != "service web: bad" || KindOf(err) != ErrInvalid {
		t.Errorf("AtLine without a line: %q, kind %v", err, KindOf(err))
	}
}
