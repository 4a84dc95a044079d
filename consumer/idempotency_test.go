package consumer

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/nordpay/frontpay-worker/client"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
)

// copies waits until n publications of key's result were seen and checks that they are one
// event: the same bytes, so the same id and causationid.
func (h *harness) copies(t *testing.T, key string, n int) []received {
	t.Helper()
	testworld.WaitFor(t, func() bool { return len(h.sent.find(byKey(key))) >= n }, fmt.Sprintf("%d publications of the result of %s", n, key))
	all := h.sent.find(byKey(key))
	for _, r := range all[1:] {
		if !bytes.Equal(r.Data, all[0].Data) || r.MsgID != all[0].MsgID {
			t.Errorf("key %s: results differ:\n%s\n%s", key, all[0].Data, r.Data)
		}
	}
	return all
}

// TestDuplicateCommand publishes one capture twice (distinct Nats-Msg-Id) and once more later.
func TestDuplicateCommand(t *testing.T) {
	t.Parallel()
	h := setup(t)
	r := h.paid(t)
	c := newCommand(t, frontpay.ReservationCapture, captureData(r, 300, "duplicate"))
	first := h.send(t, c, "copy-1")
	h.send(t, c, "copy-2")

	got := h.resultOf(t, first)
	ref := responseUUID(t, success(t, got))
	h.copies(t, c.Key, 2)
	if e := h.effects(frontpay.ReservationCapture, r.UUID); len(e) != 1 || e[0].Reference != ref {
		t.Fatalf("ledger %+v, answered %s", e, ref)
	}
	if n := h.calls.Count(frontpay.ReservationCapture, r.UUID); n != 1 {
		t.Errorf("capture sent %d times", n)
	}

	// Later, once everything is settled: the recorded event again, and no call at all.
	testworld.WaitFor(t, func() bool { return h.consumerIdle(t) }, "the capture consumer to settle")
	calls := h.calls.Count("", r.UUID)
	h.send(t, c, "copy-3")
	h.copies(t, c.Key, 3)
	testworld.WaitFor(t, func() bool { return h.consumerIdle(t) }, "the late duplicate to be acked")
	if n := h.calls.Count("", r.UUID); n != calls {
		t.Errorf("the late duplicate made %d API calls", n-calls)
	}
	if stored := h.results.find(byKey(c.Key)); len(stored) != 1 || stored[0].Event.CausationID != c.ID {
		t.Errorf("stream holds %d results of the key", len(stored))
	}
}

// TestReplay fails a refund with upstream_unavailable and replays it from its failure events,
// as `frontpay-worker replay` does: same key, extension replayof.
func TestReplay(t *testing.T) {
	t.Parallel()
	h := setup(t)
	r := h.paid(t)
	data := refundData(r, h.capture(t, r, 300, "to refund"), 100)
	replayOf := func(id string) func(*schemas.Event) { return func(e *schemas.Event) { e.ReplayOf = id } }
	refunds := func() int { return h.calls.Count(frontpay.ReservationRefund, r.UUID) }
	// answeredWith publishes c and waits until it is answered with the event was, sent again.
	answeredWith := func(c command, was received) {
		t.Helper()
		copies := len(h.sent.find(byKey(c.Key)))
		h.send(t, c, schemas.NewID())
		testworld.WaitFor(t, func() bool { return len(h.sent.find(byKey(c.Key))) > copies }, "an answer to "+c.String())
		if got := h.sent.find(byKey(c.Key))[copies]; !bytes.Equal(got.Data, was.Data) {
			t.Errorf("%s answered with\n%s\nwant\n%s", c, got.Data, was.Data)
		}
	}

	h.sb.SetFault(frontpay.ReservationRefund, sandbox.Fault{ErrorShare: 1})
	c := h.publish(t, frontpay.ReservationRefund, data, client.Key("refund-1"))
	first := h.resultOf(t, c)
	failure(t, first, schemas.UpstreamUnavailable)

	// A replay that fails again is a new failure event, and the one a later replay names.
	replay := h.publish(t, frontpay.ReservationRefund, data, client.Key("refund-1"), replayOf(first.Event.ID))
	second := h.await(t, byCause(replay.ID), "the first replay's result")
	if failure(t, second, schemas.UpstreamUnavailable); second.Event.ID == first.Event.ID || refunds() != 2*maxAttempts {
		t.Fatalf("second failure %s (first %s) after %d refunds", second.Event.ID, first.Event.ID, refunds())
	}
	// A replay of the older failure is answered like a duplicate.
	answeredWith(newCommand(t, frontpay.ReservationRefund, data, client.Key("refund-1"), replayOf(first.Event.ID)), second)

	h.sb.SetFault(frontpay.ReservationRefund, sandbox.Fault{})
	calls := refunds()
	replay = h.publish(t, frontpay.ReservationRefund, data, client.Key("refund-1"), replayOf(second.Event.ID))
	ok := h.await(t, byCause(replay.ID), "the second replay's result")
	success(t, ok)
	if e := h.effects(frontpay.ReservationRefund, r.UUID); len(e) != 1 || refunds() != calls+1 {
		t.Fatalf("after the replay: %d refunds sent, ledger %+v", refunds()-calls, e)
	}

	// The same replay again, another replay of the same failure, one of an older failure: the
	// success each time, and no call.
	answeredWith(replay, ok)
	answeredWith(newCommand(t, frontpay.ReservationRefund, data, client.Key("refund-1"), replayOf(second.Event.ID)), ok)
	answeredWith(newCommand(t, frontpay.ReservationRefund, data, client.Key("refund-1"), replayOf(first.Event.ID)), ok)
	testworld.WaitFor(t, func() bool { return h.consumerIdle(t) }, "the refund consumer to settle")
	if n := refunds(); n != calls+1 {
		t.Errorf("refund sent %d times after the replay, want 1", n-calls)
	}
	if n := len(h.results.find(byKey("refund-1"))); n != 3 {
		t.Errorf("%d results stored for the key, want two failures and the success", n)
	}
}

// TestKeyOfAnotherOperation reuses a complete's key and data for a cancel: the fingerprint
// covers the operation, so the cancel is an idempotency_conflict on reservation.cancel.failed,
// not a duplicate answered with the complete's result (issue 11 item 2).
func TestKeyOfAnotherOperation(t *testing.T) {
	t.Parallel()
	h := setup(t)
	r := h.paid(t)
	h.capture(t, r, 300, "before completing")
	complete := h.publish(t, frontpay.ReservationComplete, noteData(r.UUID, "same data"), client.Key("shared-key"))
	success(t, h.resultOf(t, complete))
	cancel := h.publish(t, frontpay.ReservationCancel, noteData(r.UUID, "same data"), client.Key("shared-key"))
	got := h.await(t, byCause(cancel.ID), "the cancel's result")
	if got.Subject != "reservation.cancel.failed" {
		t.Fatalf("the cancel was answered on %s: %s", got.Subject, got.Data)
	}
	checkFailure(t, cancel, got, schemas.IdempotencyConflict, 0, 0)
	if e := h.effects(frontpay.ReservationCancel, r.UUID); len(e) != 0 {
		t.Errorf("cancelled: %+v", e)
	}
}

// TestReplayOfAnUnknownOutcome: a capture whose answer is lost while every read-back fails ends
// outcome_unknown; replayed once the API heals, it reads back first and finds the capture, with
// no second one. A submit's unknown outcome replayed is outcome_unknown again, with no call
// (CONTRACT.md section 4, issue 11 item 1). A capture whose lost request never took effect is
// sent on replay, once.
func TestReplayOfAnUnknownOutcome(t *testing.T) {
	t.Parallel()
	replayOf := func(id string) func(*schemas.Event) { return func(e *schemas.Event) { e.ReplayOf = id } }

	t.Run("capture applied", func(t *testing.T) {
		t.Parallel()
		h := setup(t)
		r := h.paid(t)
		h.sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{DropShare: 1, Times: 1})
		h.sb.SetFault(frontpay.ReservationDetails, sandbox.Fault{ErrorShare: 1})
		data := captureData(r, 300, "unknown")
		c := h.publish(t, frontpay.ReservationCapture, data, client.Key("unknown-capture"))
		f := failure(t, h.resultOf(t, c), schemas.OutcomeUnknown)
		if f.Message != "readBackFailed" || len(h.effects(frontpay.ReservationCapture, r.UUID)) != 1 {
			t.Fatalf("failure %q, ledger %+v", f.Message, h.effects(frontpay.ReservationCapture, r.UUID))
		}
		h.sb.SetFault(frontpay.ReservationDetails, sandbox.Fault{})
		sent := h.calls.Count(frontpay.ReservationCapture, r.UUID)
		replay := h.publish(t, frontpay.ReservationCapture, data, client.Key("unknown-capture"), replayOf(h.resultOf(t, c).Event.ID))
		s := success(t, h.await(t, byCause(replay.ID), "the replay's result"))
		e := h.effects(frontpay.ReservationCapture, r.UUID)
		if len(e) != 1 || responseUUID(t, s) != e[0].Reference || h.calls.Count(frontpay.ReservationCapture, r.UUID) != sent {
			t.Errorf("after the replay: ledger %+v, success names %s, %d captures sent", e, responseUUID(t, s), h.calls.Count(frontpay.ReservationCapture, r.UUID)-sent)
		}
	})
	t.Run("capture not applied", func(t *testing.T) {
		t.Parallel()
		h := setup(t)
		r := h.paid(t)
		h.sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{DropBeforeShare: 1, Times: 1})
		h.sb.SetFault(frontpay.ReservationDetails, sandbox.Fault{ErrorShare: 1})
		data := captureData(r, 300, "unknown")
		c := h.publish(t, frontpay.ReservationCapture, data, client.Key("absent-capture"))
		failure(t, h.resultOf(t, c), schemas.OutcomeUnknown)
		h.sb.SetFault(frontpay.ReservationDetails, sandbox.Fault{})
		replay := h.publish(t, frontpay.ReservationCapture, data, client.Key("absent-capture"), replayOf(h.resultOf(t, c).Event.ID))
		success(t, h.await(t, byCause(replay.ID), "the replay's result"))
		if e := h.effects(frontpay.ReservationCapture, r.UUID); len(e) != 1 {
			t.Errorf("after the replay: ledger %+v", e)
		}
	})
	t.Run("submit", func(t *testing.T) {
		t.Parallel()
		h := setup(t)
		h.sb.SetFault(frontpay.ReservationSubmit, sandbox.Fault{DropShare: 1, Times: 1})
		data := submitData("unknown-submit")
		c := h.publish(t, frontpay.ReservationSubmit, data, client.Key("unknown-submit"))
		first := h.resultOf(t, c)
		failure(t, first, schemas.OutcomeUnknown)
		replay := h.publish(t, frontpay.ReservationSubmit, data, client.Key("unknown-submit"), replayOf(first.Event.ID))
		again := h.await(t, byCause(replay.ID), "the replay's result")
		if f := failure(t, again, schemas.OutcomeUnknown); again.Event.ID == first.Event.ID || f.Attempts != 0 {
			t.Errorf("replay answered %s (first %s), %d attempts", again.Event.ID, first.Event.ID, f.Attempts)
		}
		if e := h.marked("unknown-submit"); len(e) != 1 || h.calls.Count(frontpay.ReservationSubmit, "") != 1 {
			t.Errorf("submits: ledger %+v, %d sent", e, h.calls.Count(frontpay.ReservationSubmit, ""))
		}
	})
}
