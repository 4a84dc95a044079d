package consumer

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/testworld"
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
	if n := h.calls.Peak(frontpay.ReservationCapture); n < 2 {
		t.Errorf("at most %d capture at a time: commands of different reservations did not run concurrently", n)
	}
}

// TestConcurrencyBoundsAPICalls gives a worker two places at the API (Concurrency 2) and three
// slow calls: two are at the API and the third waits for a place, while a command that needs no
// call (invalid data) is answered meanwhile: a command's result is written and published outside
// the places at the API.
func TestConcurrencyBoundsAPICalls(t *testing.T) {
	t.Parallel()
	h := setup(t, withoutWorker())
	r := h.paid(t)
	// Calls that outlast the test: the worker's stop at the end must cut them off after its short
	// drain. Waiting for them instead would outlast testworld.Patience, and fail the stop.
	slow := 2 * testworld.Patience
	w := h.newWorker("two-places", func(c *Config) {
		c.Concurrency, c.APITimeout, c.DrainTimeout = 2, slow, 100*time.Millisecond
	})
	w.api = h.sb.Client(t, testToken, frontpay.WithTimeout(slow))
	h.run(w)

	h.sb.SetFault(frontpay.ReservationHistory, sandbox.Fault{Latency: slow})
	for range 3 {
		h.publish(t, frontpay.ReservationHistory, map[string]any{})
	}
	testworld.WaitFor(t, func() bool { return h.calls.Active(frontpay.ReservationHistory) == 2 }, "two history calls at the API")
	data := captureData(r, 300, "invalid")
	data["grandTotal"] = 299 // not the sum of the products
	failure(t, h.resultOf(t, h.publish(t, frontpay.ReservationCapture, data)), schemas.InvalidCommand)
	if n := h.calls.Active(frontpay.ReservationHistory); n != 2 {
		t.Errorf("the invalid command was answered with %d history calls at the API: it waited for a place", n)
	}
	if n := h.calls.Peak(frontpay.ReservationHistory); n != 2 {
		t.Errorf("at most %d history calls at once, want 2 (Concurrency)", n)
	}
}

// TestHeldPastAckWait keeps a worker's two workers busy past AckWait while commands of ten
// reservations arrive: the server sends the held commands again, and the owner drops the copies
// by stream sequence. Every command runs once, and every reservation then takes its next command.
// The slow calls stay within the worker's API timeout, so that they end with their answer rather
// than with timeouts and retries (MaxAttempts of apiTimeout each).
func TestHeldPastAckWait(t *testing.T) {
	t.Parallel()
	const ackWait = 500 * time.Millisecond
	h := setup(t, withoutWorker(), withAckWait(ackWait))
	rs := h.paidN(t, 10)
	w := h.newWorker("two-workers", func(c *Config) { c.Concurrency, c.APITimeout = 2, time.Minute })
	w.api = h.sb.Client(t, testToken, frontpay.WithTimeout(time.Minute))
	h.run(w)
	h.sb.SetFault(frontpay.ReservationHistory, sandbox.Fault{Latency: 2*ackWait + 500*time.Millisecond})
	h.publish(t, frontpay.ReservationHistory, map[string]any{})
	h.publish(t, frontpay.ReservationHistory, map[string]any{})
	testworld.WaitFor(t, func() bool { return h.calls.Active(frontpay.ReservationHistory) == 2 }, "both workers busy")

	var cmds []command
	for _, r := range rs {
		cmds = append(cmds, h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": r.UUID}))
	}
	testworld.WaitFor(t, func() bool {
		c, err := h.js.Consumer(t.Context(), h.topo.CommandStream(), ConsumerName)
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumRedelivered > 0
	}, "the server to send held commands again")
	for _, c := range cmds {
		success(t, h.resultOf(t, c))
	}
	testworld.WaitFor(t, func() bool { return h.consumerIdle(t) }, "every command acked")
	// A copy that arrives after its command was acked is answered from the record: never a
	// second call.
	for _, c := range cmds {
		if n := h.calls.Count(frontpay.ReservationDetails, mustParse(t, c).Resource); n != 2 { // the test's own read and the worker's
			t.Errorf("%s: %d details calls: a copy ran again", c, n)
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
// workers. Commands waiting for their turn hold no worker and become ready when the command
// before them finishes: the backlog drains, each command once, and in publish order.
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
	for _, r := range rs {
		var got []string
		for _, e := range h.effects(frontpay.ReservationResend, r.UUID) {
			var body struct{ Email string }
			_ = json.Unmarshal(e.Body, &body)
			got = append(got, body.Email)
		}
		if len(got) != 30 {
			t.Errorf("%s: %d resends, want 30", r.UUID, len(got))
		}
		for i, email := range got {
			if want := fmt.Sprintf("hot-%d@example.no", i); email != want {
				t.Fatalf("%s: resend %d went to %s, want %s (publish order)", r.UUID, i, email, want)
			}
		}
	}
}
