package sandbox

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// faulted is a reserved reservation whose capture suffers f; capture sends one capture of 10.00.
func faulted(t *testing.T, f Fault) (e *env, uuid string, capture func(ctx context.Context) (reply, error)) {
	e = setup(t)
	uuid, ids := e.reserved()
	e.sb.SetFault(frontpay.ReservationCapture, f)
	body := encode(t, captureReq(item{ids[0], 1000}))
	return e, uuid, func(ctx context.Context) (reply, error) {
		return e.try(ctx, "POST", path(frontpay.ReservationCapture, uuid), body, "Bearer "+testToken)
	}
}

// captures counts the capture effects and whether they were dropped.
func (e *env) captures() (n int, dropped []bool) {
	for _, f := range e.sb.Ledger() {
		if f.Op == string(frontpay.ReservationCapture) {
			n++
			dropped = append(dropped, f.Dropped)
		}
	}
	return n, dropped
}

// mustReply sends with capture and fails on a transport error.
func mustReply(t *testing.T, capture func(context.Context) (reply, error)) reply {
	t.Helper()
	r, err := capture(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestFaults(t *testing.T) {
	t.Parallel()

	t.Run("latency", func(t *testing.T) {
		t.Parallel()
		e, _, capture := faulted(t, Fault{Latency: 100 * time.Millisecond})
		start := time.Now()
		mustReply(t, capture).expect(t, 202, "reservationCapturedSuccessfully", shapeDataTrue)
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Errorf("answered after %v", d)
		}
		if n, _ := e.captures(); n != 1 {
			t.Errorf("%d captures", n)
		}
	})

	t.Run("latency honours a client that goes away", func(t *testing.T) {
		t.Parallel()
		e, uuid, capture := faulted(t, Fault{Latency: time.Minute})
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if _, err := capture(ctx); err == nil {
			t.Fatal("answer despite a minute of latency")
		}
		eventually(t, "the handler to return", func() bool { return e.sb.active.Load() == 0 })
		if n, _ := e.captures(); n != 0 {
			t.Errorf("%d captures", n)
		}
		amountIs(t, "captured", e.details(uuid).PaymentDetails.CapturedAmount, "0.00")
	})

	t.Run("hang after the effect until the client goes away", func(t *testing.T) {
		t.Parallel()
		e, uuid, capture := faulted(t, Fault{DropShare: 1, HangAfterEffect: time.Minute})
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if _, err := capture(ctx); err == nil {
			t.Fatal("answer despite the hang")
		}
		eventually(t, "the handler to return", func() bool { return e.sb.active.Load() == 0 })
		if _, dropped := e.captures(); !slices.Equal(dropped, []bool{true}) {
			t.Errorf("capture effects marked dropped %v, want one", dropped)
		}
		amountIs(t, "captured", e.details(uuid).PaymentDetails.CapturedAmount, "10.00")
	})

	// Each kind of failure: an answer (status > 0) or none, and whether the effect applied.
	for _, tc := range []struct {
		name    string
		fault   Fault
		status  int
		message string
		applied bool
	}{
		{"5xx", Fault{ErrorShare: 1}, 503, "internalErrorOccurredPleaseTryAgainLater", false},
		{"500", Fault{ErrorShare: 1, ErrorStatus: 500}, 500, "internalErrorOccurredPleaseTryAgainLater", false},
		{"510", Fault{ErrorShare: 1, ErrorStatus: 510}, 510, "somethingWentWrong", false},
		{"429", Fault{TooManyShare: 1}, 429, "tooManyAttempts", false},
		{"drop before the effect", Fault{DropBeforeShare: 1}, 0, "", false},
		{"drop after the effect", Fault{DropShare: 1}, 0, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, uuid, capture := faulted(t, tc.fault)
			r, err := capture(t.Context())
			switch {
			case tc.status == 0 && err == nil:
				t.Fatalf("answer %d %s, want none", r.status, r.body)
			case tc.status != 0 && err != nil:
				t.Fatal(err)
			case tc.status != 0:
				r.expect(t, tc.status, tc.message, shapeErrorTrue)
			}
			if tc.status == 429 && r.header.Get("Retry-After") != "1" {
				t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
			}
			want, captured := []bool(nil), "0.00"
			if tc.applied {
				want, captured = []bool{true}, "10.00"
			}
			if _, dropped := e.captures(); !slices.Equal(dropped, want) {
				t.Errorf("capture effects marked dropped %v, want %v", dropped, want)
			}
			amountIs(t, "captured", e.details(uuid).PaymentDetails.CapturedAmount, captured)
		})
	}

	t.Run("times clears the fault", func(t *testing.T) {
		t.Parallel()
		e, _, capture := faulted(t, Fault{ErrorShare: 1, Times: 2})
		var got []int
		for range 3 {
			got = append(got, mustReply(t, capture).status)
		}
		if !slices.Equal(got, []int{503, 503, 202}) {
			t.Errorf("statuses %v", got)
		}
		if n, _ := e.captures(); n != 1 {
			t.Errorf("%d captures", n)
		}
	})

	t.Run("zero fault clears", func(t *testing.T) {
		t.Parallel()
		e, _, capture := faulted(t, Fault{ErrorShare: 1})
		e.sb.SetFault(frontpay.ReservationCapture, Fault{})
		mustReply(t, capture).expect(t, 202, "reservationCapturedSuccessfully", shapeDataTrue)
	})

	t.Run("shares are drawn from the seed", func(t *testing.T) {
		t.Parallel()
		run := func() []int {
			e := setup(t, func(o *Options) { o.Seed = 7 })
			e.sb.SetFault(frontpay.ReservationDetails, Fault{ErrorShare: 0.5})
			var got []int
			for range 40 {
				got = append(got, e.api(frontpay.ReservationDetails, nil, unknown).status)
			}
			return got
		}
		a, b := run(), run()
		if !slices.Equal(a, b) || !slices.Contains(a, 503) || !slices.Contains(a, 404) {
			t.Errorf("runs differ or lack a mix:\n%v\n%v", a, b)
		}
	})
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	e := setup(t, func(o *Options) { o.RateLimit = 3 })
	details := func() reply { return e.api(frontpay.ReservationDetails, nil, unknown) }
	for i := range 3 {
		r := details()
		r.expect(t, 404, "reservationNotFound", shapeDataFalse)
		if r.header.Get("x-ratelimit-limit") != "3" || r.header.Get("x-ratelimit-remaining") != strconv.Itoa(2-i) {
			t.Errorf("call %d: headers %v", i, r.header)
		}
	}
	r := details()
	r.expect(t, 429, "tooManyAttempts", shapeErrorTrue)
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
	if r.header.Get("x-ratelimit-remaining") != "0" {
		t.Errorf("headers %v", r.header)
	}

	e.sb.SetRateLimit(-1)
	for range 5 {
		r = details()
		r.expect(t, 404, "reservationNotFound", shapeDataFalse)
	}
	if h := r.header.Get("x-ratelimit-limit"); h != "" {
		t.Errorf("limit header %q with the limit off", h)
	}
	e.sb.SetRateLimit(10)
	if r = details(); r.header.Get("x-ratelimit-remaining") != "9" {
		t.Errorf("after turning the limit on again: %v", r.header)
	}
}
