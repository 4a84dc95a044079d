package testworld

import (
	"context"
	"testing"
	"time"
)

// Patience is how long a test waits for anything before it fails: generous, for -race on a busy
// 2-core machine. A wait that is met returns at once, so patience costs nothing when all goes
// well.
const Patience = 60 * time.Second

// poll is how often WaitFor looks again.
const poll = 10 * time.Millisecond

// WaitFor polls cond until it holds, failing tb after Patience with what it waited for.
func WaitFor(tb testing.TB, cond func() bool, what string) {
	tb.Helper()
	WaitWithin(tb, Patience, cond, what)
}

// WaitWithin is WaitFor with a deadline of its own, for what must happen within a time the
// contract names (e.g. a change of the merchants file applied within 30 s).
func WaitWithin(tb testing.TB, d time.Duration, cond func() bool, what string) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(poll)
	}
}

// Context returns a context that ends after Patience. It does not end with the test, so that
// cleanups may use it too.
func Context(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Patience)
	tb.Cleanup(cancel)
	return ctx
}
