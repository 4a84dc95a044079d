package frontpay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
)

// noSecret fails when the token shows in any of vs: formatted with %v, %+v, %#v or %s, inside a
// struct, as an error's text, or in a JSON log line.
func noSecret(t *testing.T, vs ...any) {
	t.Helper()
	var line bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&line, nil))
	for _, v := range vs {
		out := fmt.Sprintf("%v %+v %#v %s %+v", v, v, v, v, struct{ V any }{v})
		if err, ok := v.(error); ok {
			out += err.Error()
		}
		log.Error("call failed", "value", v)
		if strings.Contains(out, "SECRET") {
			t.Errorf("the token shows in %s", out)
		}
	}
	if strings.Contains(line.String(), "SECRET") {
		t.Errorf("the token shows in the log line %s", line.String())
	}
}

// warm returns an HTTP client of one connection per host, which a call has opened: the next call
// takes that connection at once, as a busy worker's calls do.
func (e *env) warm() *http.Client {
	e.t.Helper()
	tr := &http.Transport{MaxConnsPerHost: 1}
	e.t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	e.ok(errOf(e.client(frontpay.WithHTTPClient(hc)).History(e.t.Context(), time.Time{}, time.Time{})))
	return hc
}

// droppedEffects checks that the ledger holds n effects, each applied with its answer dropped.
func droppedEffects(t *testing.T, effects []sandbox.Effect, n int) {
	t.Helper()
	if len(effects) != n {
		t.Errorf("%d effects, want %d", len(effects), n)
	}
	for _, f := range effects {
		if !f.Dropped {
			t.Errorf("effect %+v not marked dropped", f)
		}
	}
}

// sender sends one prepared call with a client.
type sender func(ctx context.Context, c *frontpay.Client) error

// capturing reserves a reservation; it returns its uuid and a capture of all of it.
func (e *env) capturing() (string, sender) {
	e.t.Helper()
	uuid, lines := e.reserved()
	req := captureReq(e.t, lines)
	return uuid, func(ctx context.Context, c *frontpay.Client) error { return errOf(c.Capture(ctx, uuid, req)) }
}

// wraps fails unless err wraps target (when there is one).
func wraps(t *testing.T, err, target error) {
	t.Helper()
	if target != nil && !errors.Is(err, target) {
		t.Errorf("%v does not wrap %v", err, target)
	}
}

// TestClassifyFaults sends a capture that the sandbox answers wrongly, once: the class, what the
// *Error holds, and the effect the ledger shows, which a read back confirms.
func TestClassifyFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		fault    sandbox.Fault
		opts     []frontpay.Option
		class    frontpay.Class
		status   int
		message  string
		captures int           // 1 when the effect applied (and its answer was dropped)
		is       error         // what the error wraps, if anything in particular
		wait     time.Duration // the Retry-After asked for
	}{
		{name: "500", fault: sandbox.Fault{ErrorShare: 1, ErrorStatus: 500},
			class: frontpay.Ambiguous, status: 500, message: "internalErrorOccurredPleaseTryAgainLater"},
		{name: "510", fault: sandbox.Fault{ErrorShare: 1, ErrorStatus: 510},
			class: frontpay.Ambiguous, status: 510, message: "somethingWentWrong"},
		{name: "429", fault: sandbox.Fault{TooManyShare: 1},
			class: frontpay.Retryable, status: 429, message: "tooManyAttempts", wait: time.Second},
		{name: "connection cut after the effect", fault: sandbox.Fault{DropShare: 1},
			class: frontpay.Ambiguous, captures: 1},
		{name: "connection cut before the effect", fault: sandbox.Fault{DropBeforeShare: 1},
			class: frontpay.Ambiguous},
		{name: "timeout after sending", fault: sandbox.Fault{Latency: time.Minute},
			opts: []frontpay.Option{frontpay.WithTimeout(50 * time.Millisecond)}, class: frontpay.Ambiguous, is: context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			uuid, capture := e.capturing()
			tc.fault.Times = 1
			e.sb.SetFault(frontpay.ReservationCapture, tc.fault)
			err := capture(t.Context(), e.client(append([]frontpay.Option{frontpay.WithHTTPClient(e.warm())}, tc.opts...)...))

			fe := apiError(t, err)
			fields(t,
				field{"class", frontpay.Classify(err), tc.class},
				field{"answer", []any{fe.HTTPStatus, fe.Message, fe.RetryAfter}, []any{tc.status, tc.message, tc.wait}},
				field{"sent", fe.Sent, true},
				field{"captured on reading back", e.details(uuid).PaymentDetails.CapturedAmount, map[bool]string{false: "0.00", true: "55.00"}[tc.captures > 0]},
			)
			droppedEffects(t, e.effects(frontpay.ReservationCapture), tc.captures)
			wraps(t, err, tc.is)
		})
	}
}

// TestClassifyNotSent covers the failures before anything reaches the API: Retryable, Sent false.
func TestClassifyNotSent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		call func(e *env, capture sender) error
		is   error
	}{
		{"no connection: the port is closed", func(e *env, capture sender) error {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			e.ok(err)
			e.ok(ln.Close())
			c, err := frontpay.New("http://"+ln.Addr().String(), token)
			e.ok(err)
			return capture(e.t.Context(), c)
		}, syscall.ECONNREFUSED},
		{"the context ended before the call", func(e *env, capture sender) error {
			ctx, cancel := context.WithCancel(e.t.Context())
			cancel()
			return capture(ctx, e.c)
		}, context.Canceled},
		{"the wait for the rate limit ended", func(e *env, capture sender) error {
			c := e.client(frontpay.WithRateLimit(1))
			e.ok(c.Wait(e.t.Context())) // the minute's one call
			ctx, cancel := context.WithCancel(e.t.Context())
			time.AfterFunc(50*time.Millisecond, cancel)
			return capture(ctx, c)
		}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			_, capture := e.capturing()
			before := len(e.rec.requests())
			err := tc.call(e, capture)
			fe := apiError(t, err)
			fields(t,
				field{"class", frontpay.Classify(err), frontpay.Retryable},
				field{"sent", fe.Sent, false},
				field{"status", fe.HTTPStatus, 0},
				field{"requests seen", len(e.rec.requests()) - before, 0},
				field{"capture effects", len(e.effects(frontpay.ReservationCapture)), 0},
			)
			wraps(t, err, tc.is)
		})
	}
}

// TestClassifyAnswers covers the answers the API gives without a fault.
func TestClassifyAnswers(t *testing.T) {
	t.Parallel()
	const unread = -1 // the status is not checked
	for _, tc := range []struct {
		name    string
		call    func(e *env) error
		class   frontpay.Class
		status  int
		message string
	}{
		{"a readable 2xx", func(e *env) error {
			return errOf(e.c.History(e.t.Context(), time.Time{}, time.Time{}))
		}, frontpay.Success, 0, ""},
		{"400, a business rule", func(e *env) error {
			return errOf(e.c.Complete(e.t.Context(), e.submit(), &frontpay.NoteRequest{Note: "done"}))
		}, frontpay.Permanent, 400, "prerequisiteFailedToCompleteReservation"},
		{"404", func(e *env) error {
			return errOf(e.c.Details(e.t.Context(), unknown))
		}, frontpay.Permanent, 404, "reservationNotFound"},
		{"417 from the API: history ending before it starts", func(e *env) error {
			return errOf(e.c.History(e.t.Context(), t0, t0.Add(-time.Hour)))
		}, frontpay.Permanent, 417, "payloadValidationErrors"},
		{"429 from the rate limit", func(e *env) error {
			e.sb.SetRateLimit(1)
			e.ok(errOf(e.c.History(e.t.Context(), time.Time{}, time.Time{})))
			return errOf(e.c.History(e.t.Context(), time.Time{}, time.Time{}))
		}, frontpay.Retryable, 429, "tooManyAttempts"},
		{"an unreadable 2xx", func(e *env) error {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, "not json")
			}))
			e.t.Cleanup(srv.Close)
			c, err := frontpay.New(srv.URL, token)
			e.ok(err)
			return errOf(c.Details(e.t.Context(), unknown))
		}, frontpay.Ambiguous, unread, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			err := tc.call(e)
			fields(t, field{"class", frontpay.Classify(err), tc.class})
			if tc.class == frontpay.Success {
				return
			}
			fe := apiError(t, err)
			fields(t, field{"sent", fe.Sent, true}, field{"message", fe.Message, tc.message})
			if tc.status != unread {
				fields(t, field{"status", []any{fe.HTTPStatus, fe.StatusMessage}, []any{tc.status, statusMessages[tc.status]}})
			}
			if tc.status == 429 && (fe.RetryAfter <= 0 || fe.RetryAfter > time.Minute) {
				t.Errorf("RetryAfter %v", fe.RetryAfter)
			}
		})
	}
}

// TestNoResendAfterDrop cuts the connection after the effect of a call made on a reused
// connection, where net/http resends a request that it thinks safe to replay (a GET with a body
// it can rewind, or one with an Idempotency-Key): the client's calls go once, so exactly one
// request and one effect.
func TestNoResendAfterDrop(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		op      frontpay.Operation
		prepare func(e *env) sender
	}{
		{frontpay.ReservationCapture, func(e *env) sender {
			_, capture := e.capturing()
			return capture
		}},
		{frontpay.ReservationCancel, func(e *env) sender {
			uuid, _ := e.reserved()
			req := seed[frontpay.NoteRequest](e.t, "cancel.json")
			return func(ctx context.Context, c *frontpay.Client) error { return errOf(c.Cancel(ctx, uuid, req)) }
		}},
	} {
		t.Run(string(tc.op), func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			send := tc.prepare(e)
			c := e.client(frontpay.WithHTTPClient(e.warm()))
			var reused atomic.Bool
			ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
				GotConn: func(info httptrace.GotConnInfo) { reused.Store(info.Reused) },
			})
			before := len(e.rec.requests())
			e.sb.SetFault(tc.op, sandbox.Fault{DropShare: 1, Times: 1})
			err := send(ctx, c)

			fields(t,
				field{"class", frontpay.Classify(err), frontpay.Ambiguous},
				field{"connection reused", reused.Load(), true},
				field{"requests seen", len(e.rec.requests()) - before, 1},
			)
			droppedEffects(t, e.effects(tc.op), 1)
		})
	}
}

// TestTokenNeverShown checks the client itself; every *Error the other tests get is checked by
// apiError, and TestRequests sees the token sent as the bearer.
func TestTokenNeverShown(t *testing.T) {
	t.Parallel()
	e := setup(t)
	noSecret(t, e.c, []*frontpay.Client{e.c}, map[string]any{"client": e.c})
}
