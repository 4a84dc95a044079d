package frontpay_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// TestRetryAfterIsCapped: a 429 asking for an hour pauses the client for WithRetryAfterMax at
// most, says so to the hook, and the next call goes once the capped pause is over.
func TestRetryAfterIsCapped(t *testing.T) {
	t.Parallel()
	w := start()
	t.Cleanup(w.close)
	srv := throttleFirst(t, w, "3600", nil)
	var capped atomic.Int64
	var waited atomic.Int32
	c, err := frontpay.New(srv.URL, token, frontpay.WithRetryAfterMax(200*time.Millisecond), frontpay.WithHooks(frontpay.Hooks{
		RetryAfterCapped: func(asked time.Duration) { capped.Store(int64(asked)) },
		RateLimitWait:    func(time.Duration) { waited.Add(1) },
	}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.History(t.Context(), time.Time{}, time.Time{})
	fe := apiError(t, err)
	if fe.HTTPStatus != http.StatusTooManyRequests || fe.RetryAfter != 200*time.Millisecond {
		t.Fatalf("429 with RetryAfter %v, want 200ms (capped)", fe.RetryAfter)
	}
	if got := time.Duration(capped.Load()); got != time.Hour {
		t.Errorf("the hook was told of %v, want the hour asked for", got)
	}
	// Without the cap the next call would wait an hour: it must be answered within a minute.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := c.History(ctx, time.Time{}, time.Time{}); err != nil {
		t.Fatalf("the call after the capped pause: %v", err)
	}
	if waited.Load() != 1 {
		t.Errorf("the call after the 429 did not wait for its pause (%d waits)", waited.Load())
	}
}

// TestRetryAfterHoldsQueuedCalls: a call already waiting for its turn under the rate limit when
// a 429 arrives waits out the 429's pause too, rather than going at the limiter's pace.
func TestRetryAfterHoldsQueuedCalls(t *testing.T) {
	t.Parallel()
	w := start()
	t.Cleanup(w.close)
	var (
		mu       sync.Mutex
		answered time.Time   // when the 429 was answered
		arrived  []time.Time // when the calls after it arrived
	)
	srv := throttleFirst(t, w, "2", func(first bool) {
		mu.Lock()
		defer mu.Unlock()
		if first {
			answered = time.Now()
		} else {
			arrived = append(arrived, time.Now())
		}
	})
	// A call every 1.01s: the second waits for its turn while the first gets its 429, and its
	// turn comes within the 429's pause of 2s.
	c, err := frontpay.New(srv.URL, token, frontpay.WithRateLimit(60))
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := c.History(t.Context(), time.Time{}, time.Time{})
			errs <- err
		}()
	}
	failed := 0
	for range 2 {
		if err := <-errs; err != nil {
			failed++
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if failed != 1 || len(arrived) != 1 {
		t.Fatalf("%d calls failed, %d arrived after the 429: want the 429 and one call", failed, len(arrived))
	}
	// The server answered the 429 before the client could pause, so the pause ends later still.
	if early := answered.Add(2 * time.Second).Sub(arrived[0]); early > 0 {
		t.Errorf("the queued call arrived %v before the 429's pause was over", early)
	}
}

// throttleFirst serves w's sandbox, but answers the first call 429 with Retry-After retryAfter.
// seen, if not nil, is told of each call (first or not) before it is answered, one at a time.
func throttleFirst(t *testing.T, w *world, retryAfter string, seen func(first bool)) *httptest.Server {
	var (
		mu    sync.Mutex
		calls int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		first := calls == 1
		if seen != nil {
			seen(first)
		}
		mu.Unlock()
		if first {
			rw.Header().Set("Retry-After", retryAfter)
			rw.WriteHeader(http.StatusTooManyRequests)
			_, _ = rw.Write([]byte(`{"status_code":429,"status_message":"Too Many Requests","message":"tooManyRequests"}`))
			return
		}
		w.srv.Config.Handler.ServeHTTP(rw, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestRateLimit: WithRateLimit spaces the calls, so that a client that made its minute's call
// waits for the next; a client without it does not.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	e := setup(t, frontpay.WithRateLimit(1))
	if !e.c.RateLimited() || e.client().RateLimited() {
		t.Errorf("RateLimited: with a limit %v, without %v", e.c.RateLimited(), e.client().RateLimited())
	}
	if _, err := e.c.History(t.Context(), time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	// The second call of the minute waits past any short deadline.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := e.c.History(ctx, time.Time{}, time.Time{})
	if fe := apiError(t, err); frontpay.Classify(err) != frontpay.Retryable || fe.Sent {
		t.Errorf("second call of the minute: %v", err)
	}
}
