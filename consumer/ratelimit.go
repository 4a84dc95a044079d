package consumer

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimiter keeps this process under FRONTPAY_API_RATE requests a minute over all operations,
// so the worker never provokes the API's own throttle, and holds every call back while a 429's
// Retry-After runs.
type RateLimiter struct {
	lim *rate.Limiter // nil: no limit
	obs Observer

	mu       sync.Mutex
	notUntil time.Time
}

// NewRateLimiter allows perMinute requests a minute, evenly spaced, less a 1% margin; 0 or less
// means no limit. The margin keeps the API's sliding minute from ever seeing perMinute+1: the
// first request of a run reaches the API later than it left (it opens the connection), and
// without the margin the request one minute after it would be the one too many.
func NewRateLimiter(perMinute int, obs Observer) *RateLimiter {
	if obs == nil {
		obs = nopObserver{}
	}
	l := &RateLimiter{obs: obs}
	if perMinute > 0 {
		l.lim = rate.NewLimiter(rate.Every(time.Minute*101/time.Duration(100*perMinute)), 1)
	}
	return l
}

// Wait blocks until a request may be sent.
func (l *RateLimiter) Wait(ctx context.Context) error {
	start := time.Now()
	l.mu.Lock()
	until := l.notUntil
	l.mu.Unlock()
	if d := time.Until(until); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if l.lim != nil {
		if err := l.lim.Wait(ctx); err != nil {
			return err
		}
	}
	if took := time.Since(start); took > time.Millisecond {
		l.obs.RateLimitWait(took)
	}
	return nil
}

// Pause holds every request back for d, as a 429's Retry-After asks.
func (l *RateLimiter) Pause(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t := time.Now().Add(d); t.After(l.notUntil) {
		l.notUntil = t
	}
}
