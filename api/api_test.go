package api

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeBackend struct {
	st  Status
	err error
}

func (f fakeBackend) Status(context.Context) (Status, error) { return f.st, f.err }

func TestStatusRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "ctl.sock")
	want := Status{Name: "alpha", Mode: "netstack", VTEP: "127.0.0.1:4789",
		Routes:  []Route{{Prefix: "10.1.0.0/16", VTEP: "127.0.0.1:4790", VNI: 42, Owner: "static"}},
		Traffic: Traffic{Outbound: Counters{Packets: 3, Bytes: 300}, Drops: map[string]uint64{"not_peer": 2}}}
	s, err := Listen(path, fakeBackend{st: want})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want 0600", fi.Mode().Perm())
	}
	got, err := NewClient(path).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != want.Name || got.Routes[0] != want.Routes[0] || got.Traffic.Drops["not_peer"] != 2 || got.Traffic.Outbound != want.Traffic.Outbound {
		t.Errorf("Status() = %+v, want %+v", got, want)
	}
	// A second daemon on the same socket is refused.
	if s2, err := Listen(path, fakeBackend{}); err == nil {
		s2.Close()
		t.Error("second Listen on a live socket succeeded")
	} else if !strings.Contains(err.Error(), "in use by a running overlayd") {
		t.Errorf("second Listen: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Close: %v", err)
	}
}

func TestBackendError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := Listen(path, fakeBackend{err: errors.New("router is gone")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = NewClient(path).Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "router is gone") {
		t.Errorf("Status() error = %v, want the backend's", err)
	}
}

func TestNoDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sock")
	_, err := NewClient(path).Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no overlayd is running at") {
		t.Errorf("Status() error = %v, want a clear 'no overlayd is running'", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Listen(path, fakeBackend{})
	if err != nil {
		t.Fatalf("Listen over a stale file: %v", err)
	}
	s.Close()
}
