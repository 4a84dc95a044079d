package consumer

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
	rec := &record{
		State: st, Op: c.Op, Fingerprint: mustParse(t, c).Fingerprint, CommandID: c.ID,
		Resource: resourceOf(c.Op, c.Raw), Owner: "dead-worker", Lease: deadLease, Updated: deadLease,
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

// seedFinished seeds a record whose result event is recorded (st succeeded, failed or
// published) and returns the event's bytes.
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
	rec, _, err := (&store{kv: h.kv}).get(t.Context(), key)
	if err != nil || rec == nil {
		t.Fatalf("record of %s: %v", key, err)
	}
	return rec
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
		before := h.calls.count(frontpay.ReservationCapture, r.UUID)
		h.send(t, c, "")
		ref := responseUUID(t, success(t, h.resultOf(t, c)))
		e := h.effects(frontpay.ReservationCapture, r.UUID)
		if len(e) != 1 || e[0].Reference != ref {
			t.Fatalf("ledger %+v, success names %s", e, ref)
		}
		if n := h.calls.count(frontpay.ReservationCapture, r.UUID) - before; n != sent {
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
		baseline bool  // the record holds the baseline read
		applied  bool  // the dead worker's capture took effect; its answer was never recorded
		sent     int
	}{
		{"1/before the record exists", "", false, false, 1},
		{"2/claimed", stateClaimed, false, false, 1},
		{"2/claimed with baseline", stateClaimed, true, false, 1},
		{"3/sending, effect not applied", stateSending, true, false, 1},
		{"3/sending, effect applied", stateSending, true, true, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			captured(t, func(c command, r reservation) {
				var b *baseline
				if tt.baseline {
					b = h.baselineNow(t, r.UUID)
				}
				if tt.applied {
					h.capture(t, r, 300, "crash")
				}
				if tt.st != "" {
					h.seed(t, c, tt.st, func(rec *record) { rec.Baseline = b })
				}
			}, tt.sent)
		})
	}
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
		if n := h.calls.count(frontpay.ReservationCapture, r.UUID); n != 2 {
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
		r := resourceOf(c.Op, c.Raw)
		calls := h.calls.touching(r[len("reservation."):])
		h.send(t, c, "")
		h.await(t, byKey(c.Key), "the result of "+c.String())
		got := h.copies(t, c.Key, copies)
		if !bytes.Equal(got[0].Data, raw) {
			t.Errorf("published\n%s\nrecorded\n%s", got[0].Data, raw)
		}
		if stored := h.results.find(byKey(c.Key)); len(stored) != 1 || !bytes.Equal(stored[0].Data, raw) {
			t.Errorf("the stream holds %d results of the key", len(stored))
		}
		if n := h.calls.touching(r[len("reservation."):]); n != calls {
			t.Errorf("%d API calls", n-calls)
		}
		waitFor(t, func() bool { return h.record(t, c.Key).State == statePublished }, "the record to be marked published")
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
		raw := h.seedFinished(t, c, statePublished, true)
		var ev schemas.Event
		_ = json.Unmarshal(raw, &ev)
		if err := publisher.New(h.js, nil, time.Second).Publish(t.Context(), schemas.ResultSubject("", c.Op, true), ev.ID, raw); err != nil {
			t.Fatal(err)
		}
		answered(t, c, raw, 2) // the dead worker's copy and the one the stream drops

		// 6: the command's queue entry went with it, and the reservation takes the next command.
		next := h.publish(t, frontpay.ReservationCapture, captureData(r, 300, "after the crash"))
		success(t, h.resultOf(t, next))
	})
	t.Run("6/removing from the queue is idempotent", func(t *testing.T) {
		t.Parallel()
		r := h.paid(t)
		c := h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": r.UUID})
		success(t, h.resultOf(t, c))
		// A crash after the removal and before the ack: the redelivery finds its entry gone.
		w, resource := h.worker.w, "reservation."+r.UUID
		waitFor(t, func() bool { head, err := w.seq.queues.head(t.Context(), resource); return err == nil && head == 0 }, "the queue to empty")
		if err := w.seq.queues.remove(t.Context(), resource, c.Seq); err != nil {
			t.Fatalf("removing twice: %v", err)
		}
		if ok, err := w.seq.turn(t.Context(), w.stream, resource, c.Seq, false); !ok || err != nil {
			t.Errorf("a redelivery after the removal must run: %v, %v", ok, err)
		}
		h.send(t, c, schemas.NewID())
		h.copies(t, c.Key, 2)
		next := h.publish(t, frontpay.ReservationCapture, captureData(r, 300, "after"))
		success(t, h.resultOf(t, next))
	})
	t.Run("6/entry of a message gone from the stream", func(t *testing.T) {
		t.Parallel()
		r, gone := h.paid(t), h.paid(t)
		c := h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": gone.UUID})
		success(t, h.resultOf(t, c))
		stream, err := h.js.Stream(t.Context(), h.topo.CommandStream())
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return stream.DeleteMsg(t.Context(), c.Seq) == nil }, "deleting the command")
		if err := h.worker.w.seq.queues.add(t.Context(), "reservation."+r.UUID, c.Seq); err != nil {
			t.Fatal(err)
		}
		next := h.publish(t, frontpay.ReservationCapture, captureData(r, 300, "after"))
		success(t, h.resultOf(t, next))
	})
	t.Run("6/sequencer delivery redelivered after the command ran", func(t *testing.T) {
		t.Parallel()
		sequencerRedelivered(t)
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

// sequencerRedelivered drives the sequencer and a command consumer by hand, in an order that a
// loaded worker produces: the sequencer's delivery of a command waits for a free slot beyond
// AckWait (no InProgress is sent while it waits), so JetStream delivers it again; the first copy
// queues the command, which then runs and leaves its queue; then the second copy is handled.
func sequencerRedelivered(t *testing.T) {
	h := setup(t, withoutWorker())
	w := h.newWorker("by-hand")
	var err error
	if w.stream, err = h.js.Stream(t.Context(), h.topo.CommandStream()); err != nil {
		t.Fatal(err)
	}
	if w.seq.consumer, err = w.stream.Consumer(t.Context(), SequencerName); err != nil {
		t.Fatal(err)
	}
	fetch := func(name string) jetstream.Msg {
		t.Helper()
		c, err := w.stream.Consumer(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		batch, err := c.Fetch(1, jetstream.FetchMaxWait(3*ackWait))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			return m
		}
		t.Fatalf("nothing delivered by %s", name)
		return nil
	}

	r := h.paid(t)
	c := h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": r.UUID})
	first := fetch(SequencerName)
	second := fetch(SequencerName) // after AckWait: the same command again
	if md, err := second.Metadata(); err != nil || md.Sequence.Stream != c.Seq || md.NumDelivered != 2 {
		t.Fatalf("second sequencer delivery: %+v, %v", md, err)
	}
	w.handleSequencer(t.Context(), first, nil)
	w.handleCommand(t.Context(), fetch(ConsumerName(c.Op)), &slot{sem: make(chan struct{}, 1)})
	success(t, h.resultOf(t, c))
	w.handleSequencer(t.Context(), second, nil)

	if head, err := w.seq.queues.head(t.Context(), "reservation."+r.UUID); err != nil || head != 0 {
		t.Fatalf("the finished command %d is queued again (head %d, %v): its reservation is blocked for as long as the stream keeps it", c.Seq, head, err)
	}
	h.start("worker")
	next := h.publish(t, frontpay.ReservationCapture, captureData(r, 300, "after"))
	success(t, h.resultOf(t, next))
}
