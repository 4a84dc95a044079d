package consumer

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/schemas"
)

// copies waits until n publications of key's result were seen and checks that they are one
// event: the same bytes, so the same id and causationid.
func (h *harness) copies(t *testing.T, key string, n int) []received {
	t.Helper()
	waitFor(t, func() bool { return len(h.sent.find(byKey(key))) >= n }, fmt.Sprintf("%d publications of the result of %s", n, key))
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
	if n := h.calls.count(frontpay.ReservationCapture, r.UUID); n != 1 {
		t.Errorf("capture sent %d times", n)
	}

	// Later, once everything is settled: the recorded event again, and no call at all.
	waitFor(t, func() bool { return h.consumerIdle(t) }, "the capture consumer to settle")
	calls := h.calls.touching(r.UUID)
	h.send(t, c, "copy-3")
	h.copies(t, c.Key, 3)
	waitFor(t, func() bool { return h.consumerIdle(t) }, "the late duplicate to be acked")
	if n := h.calls.touching(r.UUID); n != calls {
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
	refunds := func() int { return h.calls.count(frontpay.ReservationRefund, r.UUID) }
	// answeredWith publishes c and waits until it is answered with the event was, sent again.
	answeredWith := func(c command, was received) {
		t.Helper()
		copies := len(h.sent.find(byKey(c.Key)))
		h.send(t, c, schemas.NewID())
		waitFor(t, func() bool { return len(h.sent.find(byKey(c.Key))) > copies }, "an answer to "+c.String())
		if got := h.sent.find(byKey(c.Key))[copies]; !bytes.Equal(got.Data, was.Data) {
			t.Errorf("%s answered with\n%s\nwant\n%s", c, got.Data, was.Data)
		}
	}

	h.sb.SetFault(frontpay.ReservationRefund, sandbox.Fault{ErrorShare: 1})
	c := h.publish(t, frontpay.ReservationRefund, data, withKey("refund-1"))
	first := h.resultOf(t, c)
	failure(t, first, schemas.UpstreamUnavailable)

	// A replay that fails again is a new failure event, and the one a later replay names.
	replay := h.publish(t, frontpay.ReservationRefund, data, withKey("refund-1"), replayOf(first.Event.ID))
	second := h.await(t, byCause(replay.ID), "the first replay's result")
	if failure(t, second, schemas.UpstreamUnavailable); second.Event.ID == first.Event.ID || refunds() != 2*maxAttempts {
		t.Fatalf("second failure %s (first %s) after %d refunds", second.Event.ID, first.Event.ID, refunds())
	}
	// A replay of the older failure is answered like a duplicate.
	answeredWith(newCommand(t, frontpay.ReservationRefund, data, withKey("refund-1"), replayOf(first.Event.ID)), second)

	h.sb.SetFault(frontpay.ReservationRefund, sandbox.Fault{})
	calls := refunds()
	replay = h.publish(t, frontpay.ReservationRefund, data, withKey("refund-1"), replayOf(second.Event.ID))
	ok := h.await(t, byCause(replay.ID), "the second replay's result")
	success(t, ok)
	if e := h.effects(frontpay.ReservationRefund, r.UUID); len(e) != 1 || refunds() != calls+1 {
		t.Fatalf("after the replay: %d refunds sent, ledger %+v", refunds()-calls, e)
	}

	// The same replay again, another replay of the same failure, one of an older failure: the
	// success each time, and no call.
	answeredWith(replay, ok)
	answeredWith(newCommand(t, frontpay.ReservationRefund, data, withKey("refund-1"), replayOf(second.Event.ID)), ok)
	answeredWith(newCommand(t, frontpay.ReservationRefund, data, withKey("refund-1"), replayOf(first.Event.ID)), ok)
	waitFor(t, func() bool { return h.consumerIdle(t) }, "the refund consumer to settle")
	if n := refunds(); n != calls+1 {
		t.Errorf("refund sent %d times after the replay, want 1", n-calls)
	}
	if n := len(h.results.find(byKey("refund-1"))); n != 3 {
		t.Errorf("%d results stored for the key, want two failures and the success", n)
	}
}

// countingObserver counts the commands a worker answered.
type countingObserver struct {
	nopObserver
	outcomes, duplicates atomic.Int64
}

func (o *countingObserver) Outcome(frontpay.Operation, bool, schemas.Reason) { o.outcomes.Add(1) }
func (o *countingObserver) Duplicate(frontpay.Operation)                     { o.duplicates.Add(1) }

// TestTwoWorkersFence runs two workers over one NATS server and sends every command three times:
// the idempotency records, compare-and-swap and leases allow one effect per key.
func TestTwoWorkersFence(t *testing.T) {
	t.Parallel()
	h := setup(t, withoutWorker())
	var obs [2]countingObserver
	for i := range obs {
		h.start(fmt.Sprintf("worker-%c", 'a'+i), func(c *Config) { c.Observer = &obs[i] })
	}
	var cmds []command
	for i := range 12 {
		cmds = append(cmds, newCommand(t, frontpay.ReservationSubmit, submitData(fmt.Sprintf("fence-%d", i))))
	}
	rs := h.paidN(t, 4)
	for i, r := range rs {
		cmds = append(cmds, newCommand(t, frontpay.ReservationCapture, captureData(r, 300, fmt.Sprintf("fence-capture-%d", i))))
	}
	for i := range cmds { // the copies of a command back to back, so both workers get one at once
		for copy := range 3 {
			cmds[i] = h.send(t, cmds[i], fmt.Sprintf("%s-%d", cmds[i].ID, copy))
		}
	}
	for _, c := range cmds {
		success(t, h.resultOf(t, c))
		h.copies(t, c.Key, 3)
	}
	for i := range 12 {
		if e := h.marked(fmt.Sprintf("fence-%d", i)); len(e) != 1 {
			t.Errorf("submit %d took effect %d times", i, len(e))
		}
	}
	for _, r := range rs {
		if e := h.effects(frontpay.ReservationCapture, r.UUID); len(e) != 1 {
			t.Errorf("capture of %s took effect %d times", r.UUID, len(e))
		}
	}
	t.Logf("worker-a answered %d and %d duplicates, worker-b %d and %d",
		obs[0].outcomes.Load(), obs[0].duplicates.Load(), obs[1].outcomes.Load(), obs[1].duplicates.Load())
}
