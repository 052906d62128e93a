package fault

import (
	"errors"
	"fmt"
	"strconv"
)

// Kind is a kind of failure. The kinds are the Err values below; match
// them with errors.Is, or get an error's kind with KindOf.
type Kind struct{ name string }

func (k *Kind) Error() string { return k.name }

// The kinds.
var (
	// ErrInvalid: the request is a user's mistake (a bad name, address,
	// port, weight); the message says what to give instead.
	ErrInvalid = &Kind{"invalid request"}
	// ErrNotFound: the request names something that does not exist.
	ErrNotFound = &Kind{"not found"}
	// ErrConflict: the request conflicts with the cluster's state (it
	// exists already, overlaps, belongs to another node).
	ErrConflict = &Kind{"conflict"}
	// ErrUnavailable: not possible on this node now (no gossip, not
	// started, stopping, no address yet).
	ErrUnavailable = &Kind{"unavailable"}
)

// Error is a domain error: a message of one kind, and the error it was
// made from, if its format had a %w.
type Error struct {
	Kind  *Kind
	Msg   string
	cause error
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the kind, then the cause (if any): errors.Is(err, kind)
// holds, and the kind of an Error wins over its cause's.
func (e *Error) Unwrap() []error {
	if e.cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.cause}
}

// Errorf returns an *Error of kind k with the formatted message; a %w in
// format wraps its operand, as fmt.Errorf does.
func Errorf(k *Kind, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: k, Msg: err.Error(), cause: errors.Unwrap(err)}
}

// Invalid returns an ErrInvalid error: a user's mistake.
func Invalid(format string, args ...any) error { return Errorf(ErrInvalid, format, args...) }

// NotFound returns an ErrNotFound error.
func NotFound(format string, args ...any) error { return Errorf(ErrNotFound, format, args...) }

// Conflict returns an ErrConflict error.
func Conflict(format string, args ...any) error { return Errorf(ErrConflict, format, args...) }

// Unavailable returns an ErrUnavailable error.
func Unavailable(format string, args ...any) error { return Errorf(ErrUnavailable, format, args...) }

// OwnerError is the conflict of a change to something only its owner may
// change (a service, a backend): What was Verb by node Owner. It is an
// ErrConflict.
type OwnerError struct {
	What  string // what was asked to change: "service web", "backend 10.1.0.5:8080"
	Verb  string // how its owner made it: "created", "added"
	Owner string // the owner node's name; "" if not known
}

func (e *OwnerError) Error() string {
	by := "another node"
	if e.Owner != "" {
		by = "node " + e.Owner
	}
	return fmt.Sprintf("%s was %s by %s; run the command there", e.What, e.Verb, by)
}

// Unwrap returns ErrConflict.
func (e *OwnerError) Unwrap() error { return ErrConflict }

// KindOf returns err's kind: the first in its chain (so the outermost
// domain error's), or nil if err has none.
func KindOf(err error) *Kind {
	var k *Kind
	if errors.As(err, &k) {
		return k
	}
	return nil
}

// AtLine puts "line N: what: " (or "what: " when line is 0) before err,
// keeping its kind: the errors of a declarative file name where they are.
func AtLine(line int, what string, err error) error {
	prefix := what + ": "
	if line > 0 {
		prefix = "line " + strconv.Itoa(line) + ": " + prefix
	}
	return fmt.Errorf("%s%w", prefix, err)
}
