package testutil

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Backoff bounds between two calls of a polled condition: the first
// retry comes after minBackoff, each later one waits twice as long, up
// to maxBackoff.
const (
	minBackoff = time.Millisecond
	maxBackoff = 25 * time.Millisecond
)

// Eventually calls cond until it returns nil, waiting a short, growing
// backoff between calls. If cond has not returned nil within timeout,
// Eventually fails t with what and the last error cond returned. cond
// should say in its error what it saw ("2 members alive, want 3"), which
// is what the failure reports. It returns how long the wait took.
//
// Eventually calls t.Fatalf, so it must run on the test's goroutine;
// elsewhere use Poll.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	took, err := Poll(timeout, cond)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return took
}

// Poll calls cond until it returns nil or timeout passes, with the
// backoff of Eventually. It returns how long that took, and, on
// timeout, an error that wraps the last error cond returned and says
// how long and how many times it tried.
func Poll(timeout time.Duration, cond func() error) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return PollContext(ctx, cond)
}

// PollContext is Poll bounded by ctx instead of a timeout: it stops when
// cond returns nil or ctx is done, whichever comes first.
func PollContext(ctx context.Context, cond func() error) (time.Duration, error) {
	start := time.Now()
	wait := minBackoff
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for tries := 1; ; tries++ {
		err := cond()
		if err == nil {
			return time.Since(start), nil
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			// One last look: the condition may have turned true while
			// we slept, and a deadline that passed mid-backoff should
			// not hide it.
			if err = cond(); err == nil {
				return time.Since(start), nil
			}
			took := time.Since(start)
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return took, fmt.Errorf("not within %v (%d tries), last: %w", took.Round(time.Millisecond), tries+1, err)
			}
			return took, fmt.Errorf("stopped after %v (%d tries; %v), last: %w", took.Round(time.Millisecond), tries+1, context.Cause(ctx), err)
		case <-timer.C:
		}
		wait = min(2*wait, maxBackoff)
	}
}

// EventuallyEqual is Eventually for the common case of a value that must
// reach want: it polls get until it returns want and, on timeout, fails
// with what and the last value get returned.
func EventuallyEqual[T comparable](t testing.TB, timeout time.Duration, what string, get func() T, want T) time.Duration {
	t.Helper()
	return Eventually(t, timeout, what, func() error {
		if got := get(); got != want {
			return fmt.Errorf("got %v, want %v", got, want)
		}
		return nil
	})
}
