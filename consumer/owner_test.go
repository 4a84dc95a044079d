package consumer

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
)

// ownerObserver counts a worker's take-overs and the commands it answered.
type ownerObserver struct {
	nopObserver
	takeovers, outcomes atomic.Int64
}

func (o *ownerObserver) TakeOver()                                        { o.takeovers.Add(1) }
func (o *ownerObserver) Outcome(frontpay.Operation, bool, schemas.Reason) { o.outcomes.Add(1) }

// unpin takes the pin from whichever worker holds it, as an operator would.
func (h *harness) unpin(t testing.TB) {
	t.Helper()
	stream, err := h.js.Stream(t.Context(), h.topo.CommandStream())
	if err == nil {
		err = stream.UnpinConsumer(t.Context(), ConsumerName, PriorityGroup)
	}
	if err != nil {
		t.Errorf("unpin: %v", err)
	}
}

// TestOwnershipChurn has two workers lose and regain the pin over and over: before each of 12
// reservations' slow capture, complete and three copies of a submit are published, the pin is
// taken away, and the test waits for a take-over while the commands before are still in flight.
// There is never a second effect, every command is answered, captures come before completes, and
// both workers owned the commands.
func TestOwnershipChurn(t *testing.T) {
	t.Parallel()
	h := setup(t, withoutWorker())
	var obs [2]ownerObserver
	for i := range obs {
		h.start(fmt.Sprintf("worker-%c", 'a'+i), func(c *Config) { c.Observer = &obs[i] })
	}
	takeovers := func() int64 { return obs[0].takeovers.Load() + obs[1].takeovers.Load() }
	rs := h.paidN(t, 12)
	h.sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{Latency: 150 * time.Millisecond})

	var cmds []command
	for i, r := range rs {
		// The pin is taken away; the round's commands go to whoever pulls first without the old
		// pin, which must reset first.
		before := takeovers()
		if i > 0 {
			h.unpin(t)
		}
		cmds = append(cmds,
			h.publish(t, frontpay.ReservationCapture, captureData(r, 300, fmt.Sprintf("churn-capture-%d", i))),
			h.publish(t, frontpay.ReservationComplete, noteData(r.UUID, fmt.Sprintf("churn-complete-%d", i))))
		c := newCommand(t, frontpay.ReservationSubmit, submitData(fmt.Sprintf("churn-submit-%d", i)))
		for copy := range 3 {
			cmds = append(cmds, h.send(t, c, fmt.Sprintf("%s-%d", c.ID, copy)))
		}
		testworld.WaitFor(t, func() bool { return takeovers() > before }, "a take-over after an unpin")
	}
	for _, c := range cmds {
		success(t, h.resultOf(t, c))
	}
	t.Logf("worker-a took over %d times and answered %d, worker-b %d and %d",
		obs[0].takeovers.Load(), obs[0].outcomes.Load(), obs[1].takeovers.Load(), obs[1].outcomes.Load())
	for i, r := range rs {
		if captured, completed := h.capturedFirst(t, r.UUID); len(captured) != 1 || len(completed) != 1 {
			t.Errorf("%s: %d captures, %d completes", r.UUID, len(captured), len(completed))
		}
		if e := h.marked(fmt.Sprintf("churn-submit-%d", i)); len(e) != 1 {
			t.Errorf("submit %d took effect %d times", i, len(e))
		}
	}
	if obs[0].takeovers.Load() == 0 || obs[1].takeovers.Load() == 0 {
		t.Errorf("the pin did not move between the workers: take-overs %d and %d", obs[0].takeovers.Load(), obs[1].takeovers.Load())
	}
}

// TestStoppingOwnerHandsOver stops the owner while captures are at the API: it unpins at once, so
// the standby takes over long before PinnedTTL, and every command is answered once.
func TestStoppingOwnerHandsOver(t *testing.T) {
	t.Parallel()
	h := setup(t, withoutWorker())
	var first, second ownerObserver
	owner := h.start("owner", func(c *Config) { c.Observer = &first })
	rs := h.paidN(t, 6)
	h.sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{Latency: 300 * time.Millisecond})
	var cmds []command
	for i, r := range rs {
		cmds = append(cmds,
			h.publish(t, frontpay.ReservationCapture, captureData(r, 300, fmt.Sprintf("handover-%d", i))),
			h.publish(t, frontpay.ReservationComplete, noteData(r.UUID, fmt.Sprintf("handover-%d", i))))
	}
	testworld.WaitFor(t, func() bool { return h.calls.Active(frontpay.ReservationCapture) > 0 }, "captures at the API")
	h.start("standby", func(c *Config) { c.Observer = &second })
	owner.stop(t)
	for _, c := range cmds {
		success(t, h.resultOf(t, c))
	}
	for _, r := range rs {
		if captured, completed := h.capturedFirst(t, r.UUID); len(captured) != 1 || len(completed) != 1 {
			t.Errorf("%s: %d captures, %d completes", r.UUID, len(captured), len(completed))
		}
	}
	if second.takeovers.Load() == 0 || second.outcomes.Load() == 0 {
		t.Errorf("the standby took over %d times and answered %d commands", second.takeovers.Load(), second.outcomes.Load())
	}
}

// TestNATSRestartMovesThePin restarts the server: the pin is not persisted, so the worker loses
// it, takes the commands over again (a second reset), and answers what was published meanwhile.
func TestNATSRestartMovesThePin(t *testing.T) {
	t.Parallel()
	h := setup(t, withoutWorker())
	var obs ownerObserver
	h.start("worker", func(c *Config) { c.Observer = &obs })
	r := h.paid(t)
	success(t, h.resultOf(t, h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": r.UUID})))
	if n := obs.takeovers.Load(); n != 1 {
		t.Fatalf("%d take-overs at start, want 1", n)
	}
	h.nats.Restart(t, func() { testworld.WaitFor(t, func() bool { return !h.nc.IsConnected() }, "the connection to drop") })
	c := h.publish(t, frontpay.ReservationCapture, captureData(r, 300, "after the restart"))
	success(t, h.resultOf(t, c))
	if n := obs.takeovers.Load(); n < 2 {
		t.Errorf("%d take-overs after the restart, want a second one", n)
	}
}

// TestUnreadableCommandHoldsNothing publishes, for one reservation, a details command whose source
// is not UTF-8 (no command: a dead letter), then a capture: the capture is answered, and the
// message that could not be read is in the dead letters (CONTRACT.md section 6).
func TestUnreadableCommandHoldsNothing(t *testing.T) {
	t.Parallel()
	h := setup(t)
	r := h.paid(t)
	bad := nats.NewMsg(schemas.CommandSubject("", frontpay.ReservationDetails))
	bad.Data = []byte(`{"specversion":"1.0","id":"bad-1","source":"shop/` + "\xff\xfe" + `","type":"reservation.details.requested","data":{"reservationUuid":"` + r.UUID + `"}}`)
	testworld.Publish(t, h.js, bad)
	c := h.publish(t, frontpay.ReservationCapture, captureData(r, 300, "after the unreadable one"))
	success(t, h.resultOf(t, c))
	h.deadLetters(t, 1, "the unreadable command in the dead letters")
}

// TestExpectedHeadersDoNotStall publishes many non-commands carrying JetStream's own expectation
// headers, which a dead-letter copy must not act on, then a valid command: every one is
// dead-lettered and the command answered (issue 11 item 4).
func TestExpectedHeadersDoNotStall(t *testing.T) {
	t.Parallel()
	h := setup(t, withoutWorker())
	h.start("worker", func(c *Config) { c.Concurrency = 2 })
	var last uint64
	for i := range 70 {
		// Each expectation holds on the command stream, and would fail on the dead letters'.
		m := nats.NewMsg(schemas.CommandSubject("", frontpay.ReservationHistory))
		m.Data = []byte("not a command")
		m.Header.Set(jetstream.ExpectedStreamHeader, h.topo.CommandStream())
		if i%2 == 1 {
			m.Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(last, 10))
		}
		last = testworld.Publish(t, h.js, m)
	}
	c := h.publish(t, frontpay.ReservationHistory, map[string]any{})
	success(t, h.resultOf(t, c))
	h.deadLetters(t, 70, "the 70 dead letters")
	testworld.WaitFor(t, func() bool { return h.consumerIdle(t) }, "every message acked")
}
