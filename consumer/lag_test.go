package consumer

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
)

// lagWorld is an embedded server with the topology set up and no worker.
type lagWorld struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	topo   Topology
	stream jetstream.Stream
	cons   jetstream.Consumer // one, so that its pulls keep the pin it got
}

func lagSetup(t *testing.T) *lagWorld {
	t.Helper()
	// AckWait far beyond the test: nothing is redelivered unless the test says so.
	w := &lagWorld{topo: Topology{AckWait: 10 * time.Minute}}
	n := testworld.JetStream(t, testworld.WithTopology(w.topo))
	w.nc, w.js = n.Conn, n.JS
	var err error
	if w.stream, err = w.js.Stream(t.Context(), w.topo.CommandStream()); err != nil {
		t.Fatal(err)
	}
	return w
}

// lagPublished is a command on the stream and when it was published: the server's timestamp
// lies between before and after.
type lagPublished struct {
	op            frontpay.Operation
	seq           uint64
	before, after time.Time
}

func (w *lagWorld) publish(t *testing.T, op frontpay.Operation, n int) lagPublished {
	t.Helper()
	id := fmt.Sprintf("lag-%s-%d", op, n)
	c := testworld.NewCommand(t, op, map[string]any{"reservationUuid": "RES1000000001"}, func(e *schemas.Event) { e.ID, e.Source = id, "lag-test" })
	p := lagPublished{op: op, before: time.Now().Round(0)}
	seq := testworld.Publish(t, w.js, c.Msg(w.topo.Prefix))
	p.seq, p.after = seq, time.Now().Round(0)
	return p
}

// fetch takes the next message of the consumer, pulling in its priority group as a worker does.
func (w *lagWorld) fetch(t *testing.T) jetstream.Msg {
	t.Helper()
	if w.cons == nil {
		c, err := w.stream.Consumer(t.Context(), ConsumerName)
		if err != nil {
			t.Fatal(err)
		}
		w.cons = c
	}
	batch, err := w.cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second), jetstream.FetchPriorityGroup(PriorityGroup))
	if err != nil {
		t.Fatal(err)
	}
	var got jetstream.Msg
	for m := range batch.Messages() {
		got = m
	}
	if got == nil {
		t.Fatalf("nothing fetched: %v", batch.Error())
	}
	return got
}

// ack acknowledges m and waits until the server confirms.
func (w *lagWorld) ack(t *testing.T, m jetstream.Msg) {
	t.Helper()
	if err := m.DoubleAck(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// nak hands m back and waits until the server confirms: Msg.Nak does not wait, and a fetch right
// after it could overtake it.
func (w *lagWorld) nak(t *testing.T, m jetstream.Msg) {
	t.Helper()
	if _, err := w.nc.Request(m.Reply(), []byte("-NAK"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func lagSeq(t *testing.T, m jetstream.Msg) (stream, delivered uint64) {
	t.Helper()
	md, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	return md.Sequence.Stream, md.NumDelivered
}

// lagRead reads the lag of topo, checks its rows' order (the consumer, then each operation) and
// returns the consumer's row and the operations' rows by operation, with the instants before and
// after.
func lagRead(t *testing.T, topo Topology, js jetstream.JetStream) (ConsumerLag, map[frontpay.Operation]ConsumerLag, time.Time, time.Time) {
	t.Helper()
	before := time.Now().Round(0)
	lags, err := topo.Lag(t.Context(), js, "")
	after := time.Now().Round(0)
	if err != nil {
		t.Fatal(err)
	}
	ops := frontpay.Operations()
	if len(lags) != 1+len(ops) {
		t.Fatalf("Lag returned %d rows, want %d", len(lags), 1+len(ops))
	}
	byOp := map[frontpay.Operation]ConsumerLag{}
	for i, l := range lags {
		want := ""
		if i > 0 {
			want = string(ops[i-1])
		}
		if l.Consumer != ConsumerName || l.Operation != want {
			t.Errorf("row %d is %s/%s, want %s/%s", i, l.Consumer, l.Operation, ConsumerName, want)
		}
		if i > 0 {
			byOp[ops[i-1]] = l
		}
	}
	return lags[0], byOp, before, after
}

// lagCheckAge checks that an oldest age is the age of p as seen between before and after.
func lagCheckAge(t *testing.T, name string, got time.Duration, p lagPublished, before, after time.Time) {
	t.Helper()
	lo, hi := before.Sub(p.after), after.Sub(p.before)
	if got <= 0 || got < lo || got > hi {
		t.Errorf("%s: oldest age %v, want the age of seq %d: between %v and %v", name, got, p.seq, lo, hi)
	}
}

func TestLagOfABacklog(t *testing.T) {
	w := lagSetup(t)

	// Nothing published yet: idle, and no owner.
	c, ops, _, _ := lagRead(t, w.topo, w.js)
	if c != (ConsumerLag{Consumer: ConsumerName}) {
		t.Errorf("before any command: %+v", c)
	}
	for op, l := range ops {
		if l != (ConsumerLag{Consumer: ConsumerName, Operation: string(op)}) {
			t.Errorf("%s before any command: %+v", op, l)
		}
	}

	var pub []lagPublished
	for i, op := range []frontpay.Operation{
		frontpay.ReservationCapture, frontpay.ReservationDetails, frontpay.ReservationCapture,
		frontpay.ReservationCapture, frontpay.ReservationDetails, frontpay.ReservationCapture,
	} {
		pub = append(pub, w.publish(t, op, i))
	}
	// The first acked, the second fetched and left, the third handed back and fetched again.
	first := w.fetch(t)
	if s, _ := lagSeq(t, first); s != pub[0].seq {
		t.Fatalf("first fetched is seq %d, want %d", s, pub[0].seq)
	}
	w.ack(t, first)
	if s, _ := lagSeq(t, w.fetch(t)); s != pub[1].seq {
		t.Fatalf("second fetched is seq %d, want %d", s, pub[1].seq)
	}
	w.nak(t, w.fetch(t))
	if s, n := lagSeq(t, w.fetch(t)); s != pub[2].seq || n != 2 {
		t.Fatalf("after the nak, fetched seq %d (delivery %d), want seq %d again (delivery 2)", s, n, pub[2].seq)
	}

	c, ops, before, after := lagRead(t, w.topo, w.js)
	age := c.OldestAge
	c.OldestAge, c.Waiting = 0, 0
	if want := (ConsumerLag{Consumer: ConsumerName, Pending: 3, AckPending: 2, Redelivered: 1}); c != want {
		t.Errorf("consumer:\n got %+v\nwant %+v", c, want)
	}
	lagCheckAge(t, ConsumerName, age, pub[1], before, after)
	for op, l := range ops {
		if l != (ConsumerLag{Consumer: ConsumerName, Operation: string(op)}) {
			t.Errorf("%s without an owner's report: %+v", op, l)
		}
	}
}

// TestLagOfAnOwner holds commands in a worker with one place at the API (and two workers): the
// operations' rows show what the owner holds, and empty once it is done.
func TestLagOfAnOwner(t *testing.T) {
	t.Parallel()
	h := setup(t, withoutWorker())
	rs := h.paidN(t, 3)
	owner := h.start("one-at-a-time", func(c *Config) { c.Concurrency = 1 })
	h.sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{Latency: time.Second})
	var cmds []command
	for _, r := range rs {
		cmds = append(cmds, h.publish(t, frontpay.ReservationCapture, captureData(r, 300, "held")))
	}
	cmds = append(cmds, h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": rs[0].UUID}))
	var c ConsumerLag
	var ops map[frontpay.Operation]ConsumerLag
	testworld.WaitFor(t, func() bool {
		c, ops, _, _ = lagRead(t, h.topo, h.js)
		captures, details := ops[frontpay.ReservationCapture], ops[frontpay.ReservationDetails]
		// One capture at the API, one started and waiting for the place, one waiting for a worker.
		return c.Owner == owner.w.cfg.Instance && captures.AckPending == 3 && captures.Pending == 1 &&
			captures.OldestAge > 0 && details.AckPending == 1 && details.Pending == 1
	}, "the owner's report of three captures (two started) and a details waiting for its turn")
	if c.AckPending != 4 {
		t.Errorf("consumer: %+v", c)
	}
	h.sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{})
	for _, cmd := range cmds {
		success(t, h.resultOf(t, cmd))
	}
	testworld.WaitFor(t, func() bool {
		_, ops, _, _ = lagRead(t, h.topo, h.js)
		for _, l := range ops {
			if l.AckPending != 0 || l.OldestAge != 0 {
				return false
			}
		}
		return true
	}, "the owner to report nothing held")
}

func TestLagJSON(t *testing.T) {
	b, err := json.Marshal(ConsumerLag{Consumer: ConsumerName, Operation: "reservation.capture",
		Pending: 4, AckPending: 2, Redelivered: 1, Waiting: 3, OldestAge: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"consumer":"frontpay-commands","operation":"reservation.capture","pending":4,` +
		`"ackPending":2,"redelivered":1,"waiting":3,"oldestAgeNs":90000000000,"oldestAge":"1m30s"}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back ConsumerLag
	if err := json.Unmarshal(b, &back); err != nil || back.OldestAge != 90*time.Second || back.Waiting != 3 {
		t.Errorf("read back %+v, %v", back, err)
	}
}

func TestLagNamesWhatIsMissing(t *testing.T) {
	w := lagSetup(t)
	if err := w.stream.DeleteConsumer(t.Context(), ConsumerName); err != nil {
		t.Fatal(err)
	}
	if _, err := w.topo.Lag(t.Context(), w.js, ""); err == nil || !strings.Contains(err.Error(), ConsumerName) {
		t.Errorf("Lag without %s: %v", ConsumerName, err)
	}
	other := Topology{Prefix: "shop9.", AckWait: time.Second}
	if _, err := other.Lag(t.Context(), w.js, ""); err == nil || !strings.Contains(err.Error(), other.CommandStream()) {
		t.Errorf("Lag of a topology never set up: %v", err)
	}
}
