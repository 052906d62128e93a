package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/overlayd/overlayd/internal/fault"
)

// leaveErr is a control backend whose LeaveNetwork fails with err.
type leaveErr struct {
	fakeControl
	err error
}

func (f *leaveErr) LeaveNetwork(context.Context, string) error { return f.err }

// TestDomainErrorStatus: the domain's kinds of error are answered with
// their status (the one table, statusOf), wrapped or not, and reach the
// client as a RemoteError with the daemon's sentence; only ErrInvalid is
// the user's mistake.
func TestDomainErrorStatus(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{fault.Invalid("network name %q is not valid", "a/b"), http.StatusBadRequest},
		{fault.NotFound("unknown network %q", "blue"), http.StatusNotFound},
		{fault.Conflict("this node has not joined network %q", "blue"), http.StatusConflict},
		{&fault.OwnerError{What: "service web", Verb: "created", Owner: "n0"}, http.StatusConflict},
		{fault.Unavailable("the node is not started yet"), http.StatusServiceUnavailable},
		{fmt.Errorf("line 4: network blue: %w", fault.Conflict("exists with VNI 7, not 8")), http.StatusConflict},
		{Errorf(http.StatusTeapot, "a fake's own status"), http.StatusTeapot},
		{errors.New("node: the gossip table is gone"), http.StatusInternalServerError},
	}
	if got := StatusOf(nil); got != http.StatusOK {
		t.Errorf("StatusOf(nil) = %d, want 200", got)
	}
	for _, tt := range tests {
		if got := StatusOf(tt.err); got != tt.code {
			t.Errorf("StatusOf(%v) = %d, want %d", tt.err, got, tt.code)
		}
		path := filepath.Join(t.TempDir(), "ctl.sock")
		s, err := Listen(path, &leaveErr{fakeControl{nets: map[string]NetworkInfo{}}, tt.err})
		if err != nil {
			t.Fatal(err)
		}
		err = NewClient(path).LeaveNetwork(context.Background(), "blue")
		s.Close()
		var re *RemoteError
		if !errors.As(err, &re) || re.Code != tt.code || re.Msg != tt.err.Error() {
			t.Errorf("LeaveNetwork failing with %v: client got %#v, want code %d and the same message", tt.err, err, tt.code)
			continue
		}
		if re.Mistake() != (tt.code == http.StatusBadRequest) {
			t.Errorf("%v: Mistake() = %v", tt.err, re.Mistake())
		}
	}
}
