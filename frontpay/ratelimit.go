package frontpay

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Hooks are told of the client's own waits, for metrics. Each may be nil; they must be fast and
// safe for concurrent use.
type Hooks struct {
	// RateLimitWait: a call waited took (over a millisecond) for the rate limit or a 429's
	// Retry-After.
	RateLimitWait func(took time.Duration)
	// RetryAfterCapped: a 429 asked for a wait longer than WithRetryAfterMax allows.
	RetryAfterCapped func(asked time.Duration)
}

// WithRateLimit keeps the client under perMinute requests a minute over all operations, evenly
// spaced, less a 1% margin (0 or less: no limit). The margin keeps the API's sliding minute from
// ever seeing perMinute+1: the first request of a run reaches the API later than it left (it
// opens the connection), and without the margin the request one minute after it would be the one
// too many. A 429 pauses every call of the client for its Retry-After, whatever the limit.
func WithRateLimit(perMinute int) Option {
	return func(c *Client) {
		if perMinute > 0 {
			c.limit.lim = rate.NewLimiter(rate.Every(time.Minute*101/time.Duration(100*perMinute)), 1)
		} else {
			c.limit.lim = nil
		}
	}
}

// WithRetryAfterMax caps the wait a 429's Retry-After may impose (FRONTPAY_RETRY_MAX): an answer
// asking for an hour must not stop every call for an hour. A non-positive d means no cap.
func WithRetryAfterMax(d time.Duration) Option { return func(c *Client) { c.limit.maxPause = d } }

// WithHooks sets the hooks that are told of the client's waits.
func WithHooks(h Hooks) Option { return func(c *Client) { c.limit.hooks = h } }

// limiter is the client's rate limit and the pause a 429 imposes.
type limiter struct {
	lim      *rate.Limiter // nil: no limit
	maxPause time.Duration
	hooks    Hooks

	mu       sync.Mutex
	notUntil time.Time
}

// wait blocks until a request may be sent.
func (l *limiter) wait(ctx context.Context) error {
	start := time.Now()
	for {
		if err := l.paused(ctx); err != nil {
			return err
		}
		if l.lim == nil {
			break
		}
		if err := l.lim.Wait(ctx); err != nil {
			return err
		}
		// A 429 that came while this call waited for its turn holds it back too, and its turn
		// is spent: calls that got theirs during the pause must not all go when it ends.
		if !l.pausing() {
			break
		}
	}
	if took := time.Since(start); took > time.Millisecond && l.hooks.RateLimitWait != nil {
		l.hooks.RateLimitWait(took)
	}
	return nil
}

// pausing reports whether a 429's pause is on.
func (l *limiter) pausing() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Now().Before(l.notUntil)
}

// paused waits out a 429's pause, if one is on.
func (l *limiter) paused(ctx context.Context) error {
	l.mu.Lock()
	until := l.notUntil
	l.mu.Unlock()
	d := time.Until(until)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pause holds every request back for d, as a 429's Retry-After asks, at most maxPause; it
// returns the wait it applied.
func (l *limiter) pause(d time.Duration) time.Duration {
	if l.maxPause > 0 && d > l.maxPause {
		if l.hooks.RetryAfterCapped != nil {
			l.hooks.RetryAfterCapped(d)
		}
		d = l.maxPause
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if t := time.Now().Add(d); t.After(l.notUntil) {
		l.notUntil = t
	}
	return d
}

// RateLimited reports whether the client keeps to a rate limit (WithRateLimit), so that a call
// may wait for its turn.
func (c *Client) RateLimited() bool { return c.limit.lim != nil }
