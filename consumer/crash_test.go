package consumer

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/schemas"
)

// deadLease is the lease of a worker that crashed a while ago.
var deadLease = time.Now().Add(-time.Minute)

// seed writes the record that a worker which crashed while working on c would have left, in
// state st, owned by "dead-worker" with its lease run out; edit adjusts it.
func (h *harness) seed(t *testing.T, c command, st state, edit func(*record)) {
	t.Helper()
	cmd := mustParse(t, c)
	rec := &record{
		State: st, Op: c.Op, Fingerprint: cmd.Fingerprint, CommandID: c.ID,
		Resource: cmd.Resource, Owner: "dead-worker", Lease: deadLease, Updated: deadLease,
	}
	if st != stateClaimed {
		rec.Attempts, rec.SentAt = 1, deadLease
	}
	if edit != nil {
		edit(rec)
	}
	if _, err := (&store{kv: h.kv}).create(t.Context(), c.Key, rec); err != nil {
		t.Fatalf("seed record of %s: %v", c, err)
	}
}

// seedFinished seeds a record whose result event is recorded (st succeeded or failed, or
// "published" as workers before this engine wrote it) and returns the event's bytes.
func (h *harness) seedFinished(t *testing.T, c command, st state, ok bool) []byte {
	t.Helper()
	o := mustParse(t, c).Origin()
	var ev schemas.Event
	var err error
	if ok {
		ev, err = schemas.NewSuccess(testSource, o, schemas.Success{HTTPStatus: 202, Message: "reservationCapturedSuccessfully",
			Response: json.RawMessage(`{"uuid":"CAP1000000001"}`)}, deadLease)
	} else {
		ev, err = schemas.NewFailure(testSource, o, schemas.Failure{Reason: schemas.BusinessRule, HTTPStatus: 400,
			Message: "requestedCaptureAmountExceedAvailableCaptureRunway", Errors: json.RawMessage("null"), Attempts: 1, Command: c.Raw}, deadLease)
	}
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	h.seed(t, c, st, func(r *record) {
		r.OK, r.Subject, r.EventID, r.Event = ok, schemas.ResultSubject(h.topo.Prefix, c.Op, ok), ev.ID, raw
	})
	return raw
}

// baselineNow reads the reservation as a worker would before its first request.
func (h *harness) baselineNow(t *testing.T, uuid string) *baseline {
	t.Helper()
	d := h.details(t, uuid)
	return baselineOf(&d)
}

// record reads the record of key.
func (h *harness) record(t *testing.T, key string) *record {
	t.Helper()
	c, err := (&store{kv: h.kv}).load(t.Context(), key)
	if err != nil || c.rev == 0 {
		t.Fatalf("record of %s: %v", key, err)
	}
	return &c.rec
}

// TestCrashWindows exercises each crash window of the package documentation: the state bucket is
// left as a worker killed at that instant would leave it, then the command is delivered again.
func TestCrashWindows(t *testing.T) {
	t.Parallel()
	h := setup(t)

	// captured runs a capture whose record st was seeded by seed and checks that it ends in
	// exactly one capture, which the success names, and that the worker sent it `sent` times.
	captured := func(t *testing.T, seed func(c command, r reservation), sent int) sandbox.Effect {
		t.Helper()
		r := h.paid(t)
		c := newCommand(t, frontpay.ReservationCapture, captureData(r, 300, "crash"))
		seed(c, r)
		before := h.calls.Count(frontpay.ReservationCapture, r.UUID)
		h.send(t, c, "")
		ref := responseUUID(t, success(t, h.resultOf(t, c)))
		e := h.effects(frontpay.ReservationCapture, r.UUID)
		if len(e) != 1 || e[0].Reference != ref {
			t.Fatalf("ledger %+v, success names %s", e, ref)
		}
		if n := h.calls.Count(frontpay.ReservationCapture, r.UUID) - before; n != sent {
			t.Errorf("the worker sent the capture %d times, want %d", n, sent)
		}
		if rec := h.record(t, c.Key); rec.Owner == "dead-worker" || !rec.OK {
			t.Errorf("record after take-over: %+v", rec)
		}
		return e[0]
	}

	for _, tt := range []struct {
		name     string
		st       state // "": no record
		baseline bool  // the record holds the baseline read (a worker that sent no marker)
		marker   bool  // the dead worker's request carried the read-back marker
		applied  bool  // the dead worker's capture took effect; its answer was never recorded
		sent     int
	}{
		{"1/before the record exists", "", false, false, false, 1},
		{"2/claimed", stateClaimed, false, false, false, 1},
		{"2/claimed with baseline", stateClaimed, true, false, false, 1},
		{"3/sending with marker, effect not applied", stateSending, false, true, false, 1},
		{"3/sending with marker, effect applied", stateSending, false, true, true, 0},
		{"3/sending with baseline, effect not applied", stateSending, true, false, false, 1},
		{"3/sending with baseline, effect applied", stateSending, true, false, true, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			captured(t, func(c command, r reservation) {
				var b *baseline
				if tt.baseline {
					b = h.baselineNow(t, r.UUID)
				}
				marker, text := "", "crash"
				if tt.marker {
					marker = markerOf("", c.Key, 0)
					text += " " + marker
				}
				if tt.applied {
					h.capture(t, r, 300, text)
				}
				if tt.st != "" {
					h.seed(t, c, tt.st, func(rec *record) { rec.Baseline, rec.Marker = b, marker })
				}
			}, tt.sent)
		})
	}
	t.Run("3/sending with marker, an unmarked capture of the amount", func(t *testing.T) {
		t.Parallel()
		// The API may have dropped the note: an entry that could be the effect makes the outcome
		// undecided, never "not applied".
		r := h.paid(t)
		c := newCommand(t, frontpay.ReservationCapture, captureData(r, 300, "crash"))
		h.captureLine(t, r, 1, 300, "")
		h.captureLine(t, r, 1, 100, "another key [fp:0123456789]")
		h.seed(t, c, stateSending, func(rec *record) { rec.Marker = markerOf("", c.Key, 0) })
		h.send(t, c, "")
		failure(t, h.resultOf(t, c), schemas.OutcomeUnknown)
		if n := h.calls.Count(frontpay.ReservationCapture, r.UUID); n != 2 {
			t.Errorf("the worker sent the capture %d times after an undecided read-back", n-2)
		}
	})
	t.Run("3/sending, read-back undecided", func(t *testing.T) {
		t.Parallel()
		r := h.paid(t)
		c := newCommand(t, frontpay.ReservationCapture, captureData(r, 300, "crash"))
		b := h.baselineNow(t, r.UUID)
		h.capture(t, r, 100, "someone else")
		h.capture(t, r, 100, "someone else")
		h.seed(t, c, stateSending, func(rec *record) { rec.Baseline = b })
		h.send(t, c, "")
		if f := failure(t, h.resultOf(t, c), schemas.OutcomeUnknown); f.Attempts != 1 {
			t.Errorf("attempts %d", f.Attempts)
		}
		if n := h.calls.Count(frontpay.ReservationCapture, r.UUID); n != 2 {
			t.Errorf("the worker sent the capture %d times after an undecided read-back", n-2)
		}
	})
	t.Run("3/sending, submit", func(t *testing.T) {
		t.Parallel()
		// What a submit created only its lost answer could say: outcome_unknown, nothing sent.
		c := newCommand(t, frontpay.ReservationSubmit, submitData("crashed-submit"))
		h.seed(t, c, stateSending, nil)
		h.send(t, c, "")
		failure(t, h.resultOf(t, c), schemas.OutcomeUnknown)
		if e := h.marked("crashed-submit"); len(e) != 0 {
			t.Errorf("submit sent again: %+v", e)
		}
	})
	t.Run("3/sending, details", func(t *testing.T) {
		t.Parallel()
		// A read is simply sent again.
		r := h.paid(t)
		c := newCommand(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": r.UUID})
		h.seed(t, c, stateSending, nil)
		h.send(t, c, "")
		success(t, h.resultOf(t, c))
	})

	// answered checks that the recorded event, byte for byte, answers c with no API call.
	answered := func(t *testing.T, c command, raw []byte, copies int) {
		t.Helper()
		uuid := mustParse(t, c).Resource
		calls := h.calls.Count("", uuid)
		h.send(t, c, "")
		h.await(t, byKey(c.Key), "the result of "+c.String())
		got := h.copies(t, c.Key, copies)
		if !bytes.Equal(got[0].Data, raw) {
			t.Errorf("published\n%s\nrecorded\n%s", got[0].Data, raw)
		}
		if stored := h.results.find(byKey(c.Key)); len(stored) != 1 || !bytes.Equal(stored[0].Data, raw) {
			t.Errorf("the stream holds %d results of the key", len(stored))
		}
		if n := h.calls.Count("", uuid); n != calls {
			t.Errorf("%d API calls", n-calls)
		}
	}
	for _, ok := range []bool{true, false} {
		st := map[bool]state{true: stateSucceeded, false: stateFailed}[ok]
		t.Run("4/"+string(st)+", not published", func(t *testing.T) {
			t.Parallel()
			c := newCommand(t, frontpay.ReservationCapture, captureData(h.paid(t), 300, "crash"))
			answered(t, c, h.seedFinished(t, c, st, ok), 1)
		})
	}
	t.Run("5/published, not acked", func(t *testing.T) {
		t.Parallel()
		r := h.paid(t)
		c := newCommand(t, frontpay.ReservationCapture, captureData(r, 300, "crash"))
		// A record as workers before this engine left it once the event was out.
		raw := h.seedFinished(t, c, "published", true)
		var ev schemas.Event
		_ = json.Unmarshal(raw, &ev)
		if err := publisher.New(h.js, nil, time.Second).Publish(t.Context(), schemas.ResultSubject("", c.Op, true), ev.ID, raw); err != nil {
			t.Fatal(err)
		}
		answered(t, c, raw, 2) // the dead worker's copy and the one the stream drops

		// The reservation takes the next command.
		next := h.publish(t, frontpay.ReservationCapture, captureData(r, 300, "after the crash"))
		success(t, h.resultOf(t, next))
	})
	t.Run("live lease", func(t *testing.T) {
		t.Parallel()
		// Another worker holds the key: nothing is sent before its lease runs out.
		var lease time.Time
		e := captured(t, func(c command, r reservation) {
			lease = time.Now().Add(time.Second)
			h.seed(t, c, stateClaimed, func(rec *record) { rec.Owner, rec.Lease = "live-worker", lease })
		}, 1)
		if e.At.Before(lease) {
			t.Errorf("captured at %s, within the other worker's lease (until %s)", e.At, lease)
		}
	})
}
