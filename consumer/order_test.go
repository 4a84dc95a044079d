package consumer

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/schemas"
)

// TestPerReservationOrder publishes a slow capture and then a complete for each of ten
// reservations, with two worker replicas. A complete that overtook its capture would fail
// (prerequisiteFailedToCompleteReservation); every one must succeed, after its capture, while the
// captures of different reservations run at the same time.
func TestPerReservationOrder(t *testing.T) {
	t.Parallel()
	h := setup(t, withoutWorker())
	h.start("replica-1")
	h.start("replica-2")
	rs := h.paidN(t, 10)
	h.sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{Latency: 200 * time.Millisecond})

	var captures, completes []command
	for _, r := range rs {
		captures = append(captures, h.publish(t, frontpay.ReservationCapture, captureData(r, 300, "in order")))
		completes = append(completes, h.publish(t, frontpay.ReservationComplete, noteData(r.UUID, "in order")))
	}
	for i, r := range rs {
		success(t, h.resultOf(t, captures[i]))
		success(t, h.resultOf(t, completes[i]))
		if captured, completed := h.capturedFirst(t, r.UUID); len(captured) != 1 || len(completed) != 1 {
			t.Errorf("%s: captures %+v, completes %+v", r.UUID, captured, completed)
		}
	}
	if n := h.calls.peakOf(frontpay.ReservationCapture); n < 2 {
		t.Errorf("at most %d capture at a time: commands of different reservations did not run concurrently", n)
	}
}

// TestOrderUnderLoad keeps a worker's two slots busy past AckWait while commands of ten
// reservations arrive: their sequencer deliveries wait for a slot, JetStream delivers them
// again, and the late copies must not queue commands that already ran. Every reservation then
// takes its next command.
func TestOrderUnderLoad(t *testing.T) {
	t.Parallel()
	h := setup(t, withoutWorker())
	rs := h.paidN(t, 10)
	w := h.start("two-slots", func(c *Config) { c.Concurrency = 2 })
	h.sb.SetFault(frontpay.ReservationHistory, sandbox.Fault{Latency: ackWait + 800*time.Millisecond})
	h.publish(t, frontpay.ReservationHistory, map[string]any{})
	h.publish(t, frontpay.ReservationHistory, map[string]any{})
	waitFor(t, func() bool { return h.calls.activeOf(frontpay.ReservationHistory) == 2 }, "both slots busy")

	var cmds []command
	for _, r := range rs {
		cmds = append(cmds, h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": r.UUID}))
	}
	for _, c := range cmds {
		success(t, h.resultOf(t, c))
	}
	h.sb.SetFault(frontpay.ReservationHistory, sandbox.Fault{})
	waitFor(t, func() bool { return h.consumerIdle(t, SequencerName) }, "the sequencer to settle")
	for _, r := range rs {
		if head, err := w.w.seq.queues.head(t.Context(), "reservation."+r.UUID); err != nil || head != 0 {
			t.Errorf("%s: a command that ran is queued again (%d, %v)", r.UUID, head, err)
		}
	}
	for i, r := range rs {
		cmds[i] = h.publish(t, frontpay.ReservationCapture, captureData(r, 300, "next"))
	}
	for _, c := range cmds {
		success(t, h.resultOf(t, c))
	}
}

// TestHotReservationBacklog queues many commands on a few reservations for a worker with few
// slots. Commands waiting for their turn give their slot back and are woken when the command
// before them finishes: the backlog drains without a single redelivery, and in publish order.
func TestHotReservationBacklog(t *testing.T) {
	t.Parallel()
	h := setup(t, withoutWorker())
	rs := h.paidN(t, 3)
	h.start("four-slots", func(c *Config) { c.Concurrency = 4 })
	var cmds []command
	for i := range 30 {
		for _, r := range rs {
			cmds = append(cmds, h.publish(t, frontpay.ReservationResend, map[string]any{
				"reservationUuid": r.UUID, "email": fmt.Sprintf("hot-%d@example.no", i)}))
		}
	}
	for _, c := range cmds {
		success(t, h.resultOf(t, c))
	}
	info, err := h.js.Consumer(t.Context(), h.topo.CommandStream(), ConsumerName(frontpay.ReservationResend))
	if err != nil {
		t.Fatal(err)
	}
	ci, err := info.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ci.Delivered.Consumer != uint64(len(cmds)) {
		t.Errorf("%d deliveries of %d commands: waiting commands were handed back and redelivered", ci.Delivered.Consumer, len(cmds))
	}
	for _, r := range rs {
		var got []string
		for _, e := range h.effects(frontpay.ReservationResend, r.UUID) {
			var body struct{ Email string }
			_ = json.Unmarshal(e.Body, &body)
			got = append(got, body.Email)
		}
		for i, email := range got {
			if want := fmt.Sprintf("hot-%d@example.no", i); email != want {
				t.Fatalf("%s: resend %d went to %s, want %s (publish order)", r.UUID, i, email, want)
			}
		}
	}
}

// TestQueueOfAgreesWithResourceOf: the worker's queue of a parsed command is the one the
// sequencer puts it in.
func TestQueueOfAgreesWithResourceOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		op   frontpay.Operation
		data map[string]any
		want string
	}{
		{frontpay.ReservationDetails, map[string]any{"reservationUuid": "RES1"}, "reservation.RES1"},
		{frontpay.ReservationCancel, map[string]any{"reservationUuid": "RES2", "note": "n"}, "reservation.RES2"},
		{frontpay.OrderResend, map[string]any{"orderUuid": "ODR1", "email": "a@example.no"}, "order.ODR1"},
		{frontpay.ReservationHistory, map[string]any{}, ""},
	} {
		c := newCommand(t, tc.op, tc.data)
		cmd, err := schemas.ParseCommand(tc.op, c.Raw, time.Now())
		if err != nil {
			t.Fatalf("%s: %v", tc.op, err)
		}
		if got, seq := queueOf(tc.op, cmd, c.Raw), resourceOf(tc.op, c.Raw); got != tc.want || seq != tc.want {
			t.Errorf("%s: worker queue %q, sequencer queue %q, want %q", tc.op, got, seq, tc.want)
		}
	}
}
