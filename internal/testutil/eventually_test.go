package testutil

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeTB records what Eventually reports instead of failing the test.
type fakeTB struct {
	testing.TB // nil: calling anything not overridden panics
	fatals     []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
}

func TestEventuallyBecomesTrue(t *testing.T) {
	var calls atomic.Int32
	f := &fakeTB{}
	took := Eventually(f, 10*time.Second, "third call", func() error {
		if n := calls.Add(1); n < 3 {
			return fmt.Errorf("call %d", n)
		}
		return nil
	})
	if len(f.fatals) != 0 {
		t.Fatalf("Eventually failed a condition that became true: %q", f.fatals)
	}
	if got := calls.Load(); got != 3 {
		t.Fatalf("cond called %d times, want 3 (it stops at the first nil)", got)
	}
	if took <= 0 || took > 10*time.Second {
		t.Fatalf("took %v", took)
	}
}

// A condition true at once is called once and Eventually does not wait.
func TestEventuallyAlreadyTrue(t *testing.T) {
	calls := 0
	f := &fakeTB{}
	Eventually(f, time.Hour, "now", func() error { calls++; return nil })
	if calls != 1 || len(f.fatals) != 0 {
		t.Fatalf("calls %d, fatals %q", calls, f.fatals)
	}
}

// On timeout the failure names what was awaited and the LAST error the
// condition returned, not the first.
func TestEventuallyNeverTrue(t *testing.T) {
	var calls atomic.Int32
	f := &fakeTB{}
	start := time.Now()
	Eventually(f, 100*time.Millisecond, "the answer", func() error {
		return fmt.Errorf("saw %d", calls.Add(1))
	})
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("gave up after %v, before the 100ms timeout", d)
	}
	if len(f.fatals) != 1 {
		t.Fatalf("want one failure, got %q", f.fatals)
	}
	msg := f.fatals[0]
	last := fmt.Sprintf("saw %d", calls.Load())
	if !strings.HasPrefix(msg, "the answer: ") || !strings.HasSuffix(msg, "last: "+last) {
		t.Fatalf("failure %q: want it to start with %q and end with the last value %q", msg, "the answer: ", last)
	}
	if calls.Load() < 3 {
		t.Fatalf("cond called only %d times in 100ms", calls.Load())
	}
	if !strings.Contains(msg, "not within") || !strings.Contains(msg, fmt.Sprintf("(%d tries)", calls.Load())) {
		t.Fatalf("failure %q does not say how long and how many tries", msg)
	}
}

// Poll wraps the last error, so callers can test it with errors.Is.
func TestPollWrapsLastError(t *testing.T) {
	sentinel := errors.New("sentinel")
	_, err := Poll(20*time.Millisecond, func() error { return sentinel })
	if !errors.Is(err, sentinel) {
		t.Fatalf("Poll error %v does not wrap the condition's error", err)
	}
}

// PollContext stops when its context is cancelled and says why.
func TestPollContextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	calls := 0
	_, err := PollContext(ctx, func() error {
		calls++
		if calls == 3 {
			cancel(errors.New("shutting down"))
		}
		return errors.New("not yet")
	})
	if err == nil || !strings.Contains(err.Error(), "shutting down") || !strings.Contains(err.Error(), "not yet") {
		t.Fatalf("PollContext after cancel: %v", err)
	}
}

// A condition that turns true while the deadline passes is seen: after
// the context is done, PollContext looks once more before giving up.
func TestPollLastLook(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	_, err := PollContext(ctx, func() error {
		calls++
		switch calls {
		case 1:
			return errors.New("not yet")
		case 2:
			cancel() // the deadline passes while this call runs
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("PollContext returned %v after %d calls; want nil after 3 (one look after the deadline)", err, calls)
	}
}

// EventuallyEqual reports the last value it saw and the one it wanted.
func TestEventuallyEqual(t *testing.T) {
	var n atomic.Int32
	f := &fakeTB{}
	EventuallyEqual(f, 10*time.Second, "count", func() int32 { return n.Add(1) }, 3)
	if len(f.fatals) != 0 || n.Load() != 3 {
		t.Fatalf("fatals %q after %d calls", f.fatals, n.Load())
	}
	n.Store(0)
	EventuallyEqual(f, 50*time.Millisecond, "count", func() int32 { return n.Add(1) }, -1)
	want := fmt.Sprintf("last: got %d, want -1", n.Load())
	if len(f.fatals) != 1 || !strings.HasPrefix(f.fatals[0], "count: ") || !strings.HasSuffix(f.fatals[0], want) {
		t.Fatalf("failure %q, want it to end with %q", f.fatals, want)
	}
}
