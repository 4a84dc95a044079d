package sandbox

import (
	"net/http"
	"strconv"
	"time"
)

// rateWindow is the span the rate limit counts requests over.
const rateWindow = time.Minute

// normalLimit turns Options.RateLimit into the limit in force: 0 is the default, negative is off.
func normalLimit(perMinute int) int {
	if perMinute == 0 {
		return DefaultRateLimit
	}
	return perMinute
}

// SetRateLimit changes the requests allowed per minute at run time for every token, those added
// later too, replacing the limits SetTokenRateLimit set, and starts a fresh window for each; 0
// restores the default, a negative value turns the limit off.
func (s *Sandbox) SetRateLimit(perMinute int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = normalLimit(perMinute)
	for _, t := range s.tokenList {
		t.limit, t.hits = s.limit, nil
	}
}

// SetTokenRateLimit changes the requests allowed per minute for one token and starts a fresh
// window for it; 0 restores the default, a negative value turns its limit off.
func (s *Sandbox) SetTokenRateLimit(token string, perMinute int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.token(token)
	if err != nil {
		return err
	}
	t.limit, t.hits = normalLimit(perMinute), nil
	return nil
}

// since drops the times that have left the window ending at now.
func since(times []time.Time, now time.Time) []time.Time {
	keep := 0
	for keep < len(times) && now.Sub(times[keep]) >= rateWindow {
		keep++
	}
	return times[keep:]
}

// rateLimit counts one request of the token in its traffic and in a sliding one-minute window. It
// sets the x-ratelimit-* headers and returns the 429 answer when the token is over its limit. The
// window runs on real time, not Options.Clock, so that a frozen test clock does not lock a token
// out.
func (s *Sandbox) rateLimit(h http.Header, t *tokenState) (answer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.rateClock()
	t.recent = append(since(t.recent, now), now)
	t.traffic.Requests++
	t.traffic.MaxPerMinute = max(t.traffic.MaxPerMinute, len(t.recent))
	if t.limit < 0 {
		return answer{}, false
	}
	t.hits = since(t.hits, now)
	h.Set("x-ratelimit-limit", strconv.Itoa(t.limit))
	if len(t.hits) >= t.limit {
		t.traffic.Limited++
		h.Set("x-ratelimit-remaining", "0")
		wait := rateWindow - now.Sub(t.hits[len(t.hits)-t.limit])
		h.Set("Retry-After", strconv.Itoa(max(1, int((wait+time.Second-1)/time.Second))))
		return refusal(http.StatusTooManyRequests, "tooManyAttempts", shapeErrorTrue), true
	}
	t.hits = append(t.hits, now)
	h.Set("x-ratelimit-remaining", strconv.Itoa(t.limit-len(t.hits)))
	return answer{}, false
}
