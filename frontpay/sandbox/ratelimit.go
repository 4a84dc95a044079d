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

// SetRateLimit changes the requests allowed per minute per token at run time and starts a fresh
// window; 0 restores the default, a negative value turns the limit off.
func (s *Sandbox) SetRateLimit(perMinute int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = normalLimit(perMinute)
	clear(s.hits)
}

// rateLimit counts one request of token in a sliding one-minute window. It sets the
// x-ratelimit-* headers and returns the 429 answer when the token is over its limit. The window
// runs on real time, not Options.Clock, so that a frozen test clock does not lock a token out.
func (s *Sandbox) rateLimit(h http.Header, token string) (answer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limit < 0 {
		return answer{}, false
	}
	now := time.Now()
	hits := s.hits[token]
	keep := 0
	for keep < len(hits) && now.Sub(hits[keep]) >= rateWindow {
		keep++
	}
	hits = hits[keep:]
	h.Set("x-ratelimit-limit", strconv.Itoa(s.limit))
	if len(hits) >= s.limit {
		s.hits[token] = hits
		h.Set("x-ratelimit-remaining", "0")
		wait := rateWindow - now.Sub(hits[len(hits)-s.limit])
		h.Set("Retry-After", strconv.Itoa(max(1, int((wait+time.Second-1)/time.Second))))
		return refusal(http.StatusTooManyRequests, "tooManyAttempts", shapeErrorTrue), true
	}
	hits = append(hits, now)
	s.hits[token] = hits
	h.Set("x-ratelimit-remaining", strconv.Itoa(s.limit-len(hits)))
	return answer{}, false
}
