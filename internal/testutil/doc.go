// Package testutil holds the helpers the module's tests share; it
// imports only the standard library.
//
// Eventually is the one way a test waits for something to become true:
// it polls a condition with a short backoff until a deadline and, on
// timeout, fails with what was awaited and the last error the
// condition returned, so a failure says what was seen, not only that
// time ran out. Poll is the same loop for code that cannot fail a test
// itself (a goroutine, a helper that returns an error).
//
// Tests do not sleep to order events. A check that something did NOT
// happen waits with Eventually for a later positive event that proves
// the window passed (a packet sent after the one that must be dropped
// arrives, a counter the same code path bumps moves), then asserts the
// absence.
package testutil
