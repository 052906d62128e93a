package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
)

// TestErrorKinds: the node's refusals are kinds of error (the API maps
// them to a status), and a change to another node's service or backend is
// an *OwnerError that names the owner, taken from gossip, not from an
// error's text.
func TestErrorKinds(t *testing.T) {
	a := clusterNode(t, "a")
	b := clusterNode(t, "b", a.gossip().Addr())
	waitMembers(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.93.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	ja, err := a.JoinNetwork(ctx, "blue")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.JoinNetwork(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateService(ctx, api.CreateService{Name: "web", Network: "blue", Ports: []string{"80/tcp"}}); err != nil {
		t.Fatal(err)
	}
	backend := ja.Addr[:len(ja.Addr)-len("/24")] + ":8080"
	if _, err := a.AddBackend(ctx, api.AddBackend{Service: "web", Network: "blue", Addr: backend, Weight: 1}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 15*time.Second, "b sees a's service and backend", func() error {
		si, err := b.Service(ctx, "blue", "web")
		if err == nil && len(si.Backends) != 1 {
			return errors.New("no backend yet")
		}
		return err
	})

	tests := []struct {
		what  string
		err   error
		kind  error
		code  int
		owner string
		msg   string
	}{
		{what: "remove a's service on b", err: b.RemoveService(ctx, "blue", "web"),
			kind: ErrConflict, code: 409, owner: "a", msg: "service web was created by node a; run the command there"},
		{what: "remove a's backend on b", err: second(b.RemoveBackend(ctx, api.BackendRef{Service: "web", Network: "blue", Addr: backend}, false)),
			kind: ErrConflict, code: 409, owner: "a", msg: "backend " + backend + " was added by node a; run the command there"},
		{what: "remove an unknown service", err: b.RemoveService(ctx, "blue", "nope"),
			kind: ErrNotFound, code: 404, msg: `no service "nope" on network "blue"`},
		{what: "create a service with a bad name", err: second(b.CreateService(ctx, api.CreateService{Name: "-x", Network: "blue", Ports: []string{"80/tcp"}})),
			kind: ErrInvalid, code: 400, msg: `service name "-x" is not valid: it is a DNS label, 1 to 63 letters, digits or '-', not starting or ending with '-'`},
		{what: "leave a network not joined", err: b.LeaveNetwork(ctx, "green"),
			kind: ErrNotFound, code: 404, msg: `unknown network "green"`},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.kind) || api.StatusOf(tt.err) != tt.code || tt.err.Error() != tt.msg {
			t.Errorf("%s: %v (status %d), want %v (%d): %q", tt.what, tt.err, api.StatusOf(tt.err), tt.kind, tt.code, tt.msg)
		}
		var oe *OwnerError
		if got := errors.As(tt.err, &oe); got != (tt.owner != "") || got && oe.Owner != tt.owner {
			t.Errorf("%s: %#v, want an *OwnerError: %v, owner %q", tt.what, tt.err, tt.owner != "", tt.owner)
		}
	}
}

// second returns the error of a (value, error) pair.
func second[T any](_ T, err error) error { return err }
