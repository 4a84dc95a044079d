package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// Fault is what the sandbox does wrong for one operation. The shares are drawn once per call from
// a random source seeded by Options.Seed, in the order ErrorShare, TooManyShare, DropBeforeShare,
// DropShare; their sum should not exceed 1.
type Fault struct {
	Latency         time.Duration `json:"latency"`         // added before handling; the call ends without answer or effect if the client goes away meanwhile
	ErrorShare      float64       `json:"errorShare"`      // share of calls answered 5xx with no effect
	ErrorStatus     int           `json:"errorStatus"`     // status of those answers, 500–599; default 503 (510 answers somethingWentWrong, others internalErrorOccurredPleaseTryAgainLater)
	TooManyShare    float64       `json:"tooManyShare"`    // share answered 429 with Retry-After: 1, no effect
	DropShare       float64       `json:"dropShare"`       // share where the effect IS applied, then the connection is closed with no answer
	DropBeforeShare float64       `json:"dropBeforeShare"` // share where the connection is closed with no answer and NO effect
	// HangAfterEffect holds a dropped connection open this long after the effect (or until the
	// client goes away) before closing it: a worker killed while its call is at the API, after the
	// effect.
	HangAfterEffect time.Duration `json:"hangAfterEffect"`
	Times           int           `json:"times"` // if > 0, the fault applies to the next Times calls of the operation only, then clears itself
}

// UnmarshalJSON reads a Fault whose durations are either nanoseconds or duration strings such
// as "250ms".
func (f *Fault) UnmarshalJSON(b []byte) error {
	type plain Fault
	var v struct {
		plain
		Latency         json.RawMessage `json:"latency"`
		HangAfterEffect json.RawMessage `json:"hangAfterEffect"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Fault(v.plain)
	var err error
	if f.Latency, err = duration("latency", v.Latency); err != nil {
		return err
	}
	f.HangAfterEffect, err = duration("hangAfterEffect", v.HangAfterEffect)
	return err
}

// duration reads nanoseconds or a duration string; absent or null is 0.
func duration(name string, raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		return d, nil
	}
	var ns int64
	if err := json.Unmarshal(raw, &ns); err != nil {
		return 0, fmt.Errorf("%s: want nanoseconds or a duration string such as \"250ms\"", name)
	}
	return time.Duration(ns), nil
}

// validate checks the shares and status.
func (f Fault) validate() error {
	sum := 0.0
	for _, v := range []float64{f.ErrorShare, f.TooManyShare, f.DropShare, f.DropBeforeShare} {
		if v < 0 || v > 1 {
			return fmt.Errorf("shares must lie between 0 and 1")
		}
		sum += v
	}
	switch {
	case sum > 1+1e-9:
		return fmt.Errorf("shares add up to %g, more than 1", sum)
	case f.ErrorStatus != 0 && (f.ErrorStatus < 500 || f.ErrorStatus > 599):
		return fmt.Errorf("errorStatus must be 500–599")
	case f.Latency < 0 || f.Times < 0 || f.HangAfterEffect < 0:
		return fmt.Errorf("latency, hangAfterEffect and times must not be negative")
	}
	return nil
}

// SetFault sets the fault of an operation for every token, replacing any earlier one; the zero
// Fault clears it. A token's own fault of the operation (SetTokenFault) goes before it. Times
// counts the calls of every token together.
func (s *Sandbox) SetFault(op frontpay.Operation, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	setFault(s.faults, op, f)
}

// SetTokenFault sets the fault of an operation for one token's calls only, replacing any earlier
// one of the token and going before the one SetFault set; the zero Fault clears the token's own.
func (s *Sandbox) SetTokenFault(token string, op frontpay.Operation, f Fault) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.token(token)
	if err != nil {
		return err
	}
	setFault(t.faults, op, f)
	return nil
}

// setFault sets or, with the zero Fault, clears the fault of op in faults.
func setFault(faults map[frontpay.Operation]Fault, op frontpay.Operation, f Fault) {
	if f == (Fault{}) {
		delete(faults, op)
		return
	}
	faults[op] = f
}

// faultKind is what one call suffers.
type faultKind int

const (
	faultNone faultKind = iota
	faultError
	faultTooMany
	faultDropBefore
	faultDropAfter
)

// outcome is the drawn fault of one call.
type outcome struct {
	kind   faultKind
	status int
	hang   time.Duration // before a drop after the effect
}

// answer is the envelope of an error or 429 outcome.
func (o outcome) answer(now time.Time) answer {
	if o.kind == faultTooMany {
		return refusal(http.StatusTooManyRequests, "tooManyAttempts", shapeErrorTrue)
	}
	return serverError(o.status, now)
}

// takeFault draws the outcome of one call of op by the token, from the token's own fault or
// else the one for every token, and counts the call against that fault's Times.
func (s *Sandbox) takeFault(t *tokenState, op frontpay.Operation) (outcome, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	faults := t.faults
	f, ok := faults[op]
	if !ok {
		faults = s.faults
		if f, ok = faults[op]; !ok {
			return outcome{}, 0
		}
	}
	if f.Times > 0 {
		if f.Times == 1 {
			delete(faults, op)
		} else {
			g := f
			g.Times--
			faults[op] = g
		}
	}
	draw := s.rng.Float64()
	status := f.ErrorStatus
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	for _, c := range []struct {
		share float64
		kind  faultKind
	}{
		{f.ErrorShare, faultError},
		{f.TooManyShare, faultTooMany},
		{f.DropBeforeShare, faultDropBefore},
		{f.DropShare, faultDropAfter},
	} {
		if draw < c.share {
			return outcome{kind: c.kind, status: status, hang: f.HangAfterEffect}, f.Latency
		}
		draw -= c.share
	}
	return outcome{}, f.Latency
}

// drop closes the connection without an answer.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // HTTP/2: reset the stream
}
