package consumer

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/schemas"
)

// TestDeadLetter publishes messages that are not JSON objects on a command subject: each is
// copied to the dead-letter subject, bytes and headers unchanged, and acknowledged.
func TestDeadLetter(t *testing.T) {
	t.Parallel()
	h := setup(t)
	subject := schemas.CommandSubject("", frontpay.ReservationCapture)
	bodies := [][]byte{[]byte("not json {"), []byte(`["a JSON array"]`), {0xff, 0xfe, '{'}}
	sent := map[string]*nats.Msg{} // by stream sequence
	for i, body := range bodies {
		m := nats.NewMsg(subject)
		m.Data = body
		m.Header.Set("X-Shop", "checkout")
		m.Header.Add("X-Trace", "a")
		m.Header.Add("X-Trace", strconv.Itoa(i))
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("bad-%d", i))
		sent[strconv.FormatUint(testworld.Publish(t, h.js, m), 10)] = m
	}

	for i, got := range h.deadLetters(t, len(bodies), "the dead letters") {
		orig := sent[got.Header.Get(publisher.HeaderDeadLetterSeq)]
		if orig == nil {
			t.Fatalf("dead letter %d names no message published: %v", i, got.Header)
		}
		delete(sent, got.Header.Get(publisher.HeaderDeadLetterSeq))
		if got.Subject != schemas.DeadLetterSubject("", subject) || !bytes.Equal(got.Data, orig.Data) {
			t.Errorf("dead letter %d on %s: %q, want %q", i, got.Subject, got.Data, orig.Data)
		}
		for k, v := range orig.Header {
			// Nats-Msg-Id is the one header the copy does not keep: each dead letter has an id of
			// its own, so that the dead-letter stream never drops one as a duplicate.
			if k != jetstream.MsgIDHeader && !slices.Equal(got.Header.Values(k), v) {
				t.Errorf("dead letter %d: header %s = %q, want %q", i, k, got.Header.Values(k), v)
			}
		}
		if got.Header.Get(publisher.HeaderDeadLetterReason) != "not a JSON object" ||
			got.Header.Get(publisher.HeaderDeadLetterSubject) != subject ||
			got.Header.Get(publisher.HeaderDeadLetterStream) != h.topo.CommandStream() {
			t.Errorf("dead letter %d: headers %v", i, got.Header)
		}
	}
	testworld.WaitFor(t, func() bool { return h.consumerIdle(t) }, "the dead letters to be acknowledged")
	if r := h.sent.all(); len(r) != 0 {
		t.Errorf("results of dead letters: %+v", r)
	}
}

// load is a mix of commands over reservations, each command marked so that the ledger tells
// which one took effect.
type load struct {
	cmds    []command
	markers map[string]string // command id → the marker of its effect ("" for reads)
}

func (l *load) add(t *testing.T, op frontpay.Operation, data any, marker string) {
	l.cmds = append(l.cmds, newCommand(t, op, data))
	l.markers[l.cmds[len(l.cmds)-1].ID] = marker
}

// mixedLoad is, per reservation, a details, a capture, a charge and a complete in that order,
// interleaved with submits, sessions, invoice orders and history reads.
func mixedLoad(t *testing.T, rs []reservation, extra int) *load {
	l := &load{markers: map[string]string{}}
	for i, r := range rs {
		l.add(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": r.UUID}, "")
		l.add(t, frontpay.ReservationCapture, captureData(r, 300, fmt.Sprintf("load-capture-%d", i)), fmt.Sprintf("load-capture-%d", i))
		l.add(t, frontpay.ReservationCharge, chargeData(r, 50, fmt.Sprintf("load-charge-%d", i)), fmt.Sprintf("load-charge-%d", i))
		l.add(t, frontpay.ReservationComplete, noteData(r.UUID, fmt.Sprintf("load-complete-%d", i)), fmt.Sprintf("load-complete-%d", i))
	}
	for i := range extra {
		marker := fmt.Sprintf("load-extra-%d", i)
		switch i % 10 {
		case 0, 1, 2, 3, 4:
			l.add(t, frontpay.ReservationSubmit, submitData(marker), marker)
		case 5, 6:
			l.add(t, frontpay.ReservationSession, sessionData(marker), marker)
		case 7, 8:
			l.add(t, frontpay.OrderCreate, orderData(marker), marker)
		default:
			l.add(t, frontpay.ReservationHistory, map[string]any{}, "")
		}
	}
	// Spread the extras among the reservations' commands, keeping each reservation's in order.
	reservations, extras := l.cmds[:4*len(rs)], l.cmds[4*len(rs):]
	var mixed []command
	for len(reservations)+len(extras) > 0 {
		if len(reservations) > 0 {
			mixed, reservations = append(mixed, reservations[0]), reservations[1:]
		}
		if len(extras) > 0 {
			mixed, extras = append(mixed, extras[0]), extras[1:]
		}
	}
	l.cmds = mixed
	return l
}

// slow adds latency to every call that takes effect.
func (h *harness) slow(d time.Duration) {
	for _, op := range frontpay.Operations() {
		if op != frontpay.ReservationDetails && op != frontpay.ReservationHistory {
			h.sb.SetFault(op, sandbox.Fault{Latency: d})
		}
	}
}

// check holds every command of the load to exactly one result, and every marker to at most one
// effect, exactly one for a success. Only a request cut off in flight may end outcome_unknown.
func (l *load) check(t *testing.T, h *harness, rs []reservation) {
	t.Helper()
	unknown := 0
	for _, c := range l.cmds {
		r := h.resultOf(t, c)
		ok := r.Event.Type == string(c.Op)+".succeeded"
		if !ok {
			failure(t, r, schemas.OutcomeUnknown)
			unknown++
		}
		if m := l.markers[c.ID]; m != "" {
			n := len(h.marked(m))
			if n > 1 || (ok && n != 1) {
				t.Errorf("%s (succeeded %v) took effect %d times", c, ok, n)
			}
		}
	}
	for _, r := range rs {
		h.capturedFirst(t, r.UUID)
	}
	t.Logf("%d commands, %d outcome_unknown", len(l.cmds), unknown)
}

// TestShutdownUnderLoad stops a worker in the middle of 200 commands and lets a fresh one finish.
func TestShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	h := setup(t, withoutWorker())
	rs := h.paidN(t, 25)
	l := mixedLoad(t, rs, 100)
	h.slow(100 * time.Millisecond)

	first := h.start("before-shutdown", func(c *Config) { c.Concurrency = 16 })
	for i := range l.cmds {
		l.cmds[i] = h.send(t, l.cmds[i], "")
	}
	testworld.WaitFor(t, func() bool { return len(h.results.all()) >= 40 }, "the first 40 results")
	took := first.stop(t) // TestConcurrencyBoundsAPICalls holds a stop to its drain timeout
	answered := len(h.results.all())
	t.Logf("stopped after %d of %d results, in %s", answered, len(l.cmds), took)
	if answered == len(l.cmds) {
		t.Log("every command was answered before the shutdown: the test proves little")
	}

	h.start("after-shutdown")
	l.check(t, h, rs)
}

// TestNATSRestart restarts the NATS server (same port, same store) while commands are in flight
// and after more are published: nothing is lost, every command is answered once.
func TestNATSRestart(t *testing.T) {
	t.Parallel()
	h := setup(t)
	rs := h.paidN(t, 10)
	l := mixedLoad(t, rs, 20)
	// Calls slow enough that a reservation's money calls (three in a row) are still at the API
	// once the first half is published, however slowly that goes.
	h.slow(500 * time.Millisecond)
	half := len(l.cmds) / 2
	for i := range l.cmds[:half] {
		l.cmds[i] = h.send(t, l.cmds[i], "")
	}
	// Restart while money calls are at the API: their answers come back while NATS is down.
	moving := func() int {
		return h.calls.Active(frontpay.ReservationCapture) + h.calls.Active(frontpay.ReservationCharge)
	}
	testworld.WaitFor(t, func() bool { return moving() > 0 }, "a capture or charge in flight")
	h.nats.Restart(t, func() {
		testworld.WaitFor(t, func() bool { return moving() == 0 && !h.nc.IsConnected() }, "the calls to end while NATS is down")
	})
	for i := range l.cmds[half:] {
		l.cmds[half+i] = h.send(t, l.cmds[half+i], "")
	}
	l.check(t, h, rs)
}
