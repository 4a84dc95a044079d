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
	"github.com/nordpay/frontpay-worker/internal/embedded"
	"github.com/nordpay/frontpay-worker/schemas"
)

// lagWorld is an embedded server with the topology set up and no worker.
type lagWorld struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	topo   Topology
	stream jetstream.Stream
}

func lagSetup(t *testing.T) *lagWorld {
	t.Helper()
	srv, err := embedded.Start(embedded.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// AckWait far beyond the test: nothing is redelivered unless the test says so.
	w := &lagWorld{nc: nc, js: js, topo: Topology{AckWait: 10 * time.Minute}}
	if _, err := w.topo.Ensure(t.Context(), js); err != nil {
		t.Fatal(err)
	}
	if w.stream, err = js.Stream(t.Context(), w.topo.CommandStream()); err != nil {
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
	m := nats.NewMsg(schemas.CommandSubject(w.topo.Prefix, op))
	m.Data = []byte(`{"specversion":"1.0","id":"` + id + `","source":"lag-test","type":"` + string(op) +
		`.requested","data":{"reservationUuid":"RES1000000001"}}`)
	m.Header.Set(jetstream.MsgIDHeader, id)
	p := lagPublished{op: op, before: time.Now().Round(0)}
	ack, err := w.js.PublishMsg(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	p.seq, p.after = ack.Sequence, time.Now().Round(0)
	return p
}

// fetch takes the next message of a consumer.
func (w *lagWorld) fetch(t *testing.T, name string) jetstream.Msg {
	t.Helper()
	c, err := w.stream.Consumer(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got jetstream.Msg
	for m := range batch.Messages() {
		got = m
	}
	if got == nil {
		t.Fatalf("%s: nothing fetched: %v", name, batch.Error())
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

// lagRead reads the lag and returns it by consumer, with the instants before and after.
func (w *lagWorld) lagRead(t *testing.T) (map[string]ConsumerLag, time.Time, time.Time) {
	t.Helper()
	before := time.Now().Round(0)
	lags, err := w.topo.Lag(t.Context(), w.js)
	after := time.Now().Round(0)
	if err != nil {
		t.Fatal(err)
	}
	want := w.topo.Consumers()
	if len(lags) != len(want) {
		t.Fatalf("Lag returned %d consumers, want %d", len(lags), len(want))
	}
	byName := map[string]ConsumerLag{}
	for i, l := range lags {
		if l.Consumer != want[i].Durable {
			t.Errorf("consumer %d is %s, want %s (the topology's order)", i, l.Consumer, want[i].Durable)
		}
		byName[l.Consumer] = l
	}
	return byName, before, after
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
	capture, details := ConsumerName(frontpay.ReservationCapture), ConsumerName(frontpay.ReservationDetails)

	// Nothing published yet: every consumer is idle.
	lags, _, _ := w.lagRead(t)
	for name, l := range lags {
		if l != (ConsumerLag{Consumer: name, Operation: l.Operation}) {
			t.Errorf("%s before any command: %+v", name, l)
		}
	}
	if lags[capture].Operation != "reservation.capture" || lags[SequencerName].Operation != "" {
		t.Errorf("operations: capture %q, sequencer %q", lags[capture].Operation, lags[SequencerName].Operation)
	}

	// 7 captures and 3 details, interleaved so that the first message after the capture
	// consumer's ack floor is a details command, which its filter must skip.
	var caps, dets []lagPublished
	for i, op := range []frontpay.Operation{
		frontpay.ReservationCapture, frontpay.ReservationDetails, frontpay.ReservationCapture,
		frontpay.ReservationCapture, frontpay.ReservationDetails, frontpay.ReservationCapture,
		frontpay.ReservationCapture, frontpay.ReservationCapture, frontpay.ReservationDetails,
		frontpay.ReservationCapture,
	} {
		p := w.publish(t, op, i)
		if op == frontpay.ReservationCapture {
			caps = append(caps, p)
		} else {
			dets = append(dets, p)
		}
	}

	// Capture: the first acked, the second fetched and left, the third handed back and fetched
	// again.
	c1 := w.fetch(t, capture)
	if s, _ := lagSeq(t, c1); s != caps[0].seq {
		t.Fatalf("first capture fetched is seq %d, want %d", s, caps[0].seq)
	}
	w.ack(t, c1)
	if s, _ := lagSeq(t, w.fetch(t, capture)); s != caps[1].seq {
		t.Fatalf("second capture fetched is seq %d, want %d", s, caps[1].seq)
	}
	c3 := w.fetch(t, capture)
	w.nak(t, c3)
	if s, n := lagSeq(t, w.fetch(t, capture)); s != caps[2].seq || n != 2 {
		t.Fatalf("after the nak, fetched seq %d (delivery %d), want seq %d again (delivery 2)", s, n, caps[2].seq)
	}
	// Sequencer: the first command acked, the second fetched and left.
	w.ack(t, w.fetch(t, SequencerName))
	if s, _ := lagSeq(t, w.fetch(t, SequencerName)); s != dets[0].seq {
		t.Fatalf("sequencer's second message is seq %d, want %d", s, dets[0].seq)
	}

	lags, before, after := w.lagRead(t)
	want := map[string]ConsumerLag{
		capture:       {Consumer: capture, Operation: "reservation.capture", Pending: 4, AckPending: 2, Redelivered: 1},
		details:       {Consumer: details, Operation: "reservation.details", Pending: 3},
		SequencerName: {Consumer: SequencerName, Pending: 8, AckPending: 1},
	}
	for name, l := range lags {
		w, ok := want[name]
		if !ok {
			w = ConsumerLag{Consumer: name, Operation: l.Operation}
		}
		got := l
		got.OldestAge = 0
		if got != w {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, w)
		}
		if !ok && l.OldestAge != 0 {
			t.Errorf("%s has nothing pending, but an oldest age of %v", name, l.OldestAge)
		}
	}
	lagCheckAge(t, capture, lags[capture].OldestAge, caps[1], before, after)
	lagCheckAge(t, details, lags[details].OldestAge, dets[0], before, after)
	lagCheckAge(t, SequencerName, lags[SequencerName].OldestAge, dets[0], before, after)

	// The oldest message itself, which the ages alone cannot tell from its neighbours.
	infos, err := listConsumers(t.Context(), w.stream)
	if err != nil {
		t.Fatal(err)
	}
	subjects := w.stream.CachedInfo().Config.Subjects
	for name, want := range map[string]uint64{capture: caps[1].seq, details: dets[0].seq, SequencerName: dets[0].seq} {
		m, err := oldestUnacked(t.Context(), w.stream, subjects, infos[name])
		if err != nil || m == nil {
			t.Errorf("%s: no oldest unacked (%v), want seq %d", name, err, want)
		} else if m.Sequence != want {
			t.Errorf("%s: oldest unacked is seq %d (%s), want seq %d", name, m.Sequence, m.Subject, want)
		}
	}
	if got := lookupSubjects(w.topo.Consumers()[len(w.topo.Consumers())-1], subjects); len(got) != 1 || got[0] != ">" {
		t.Errorf("the sequencer looks up by %v, want one lookup by >", got)
	}

	// Every details command acked: nothing left, no age.
	for range dets {
		w.ack(t, w.fetch(t, details))
	}
	lags, _, _ = w.lagRead(t)
	if l := lags[details]; l != (ConsumerLag{Consumer: details, Operation: "reservation.details"}) {
		t.Errorf("details once all acked: %+v", l)
	}
}

func TestLagJSON(t *testing.T) {
	b, err := json.Marshal(ConsumerLag{Consumer: "frontpay-reservation-capture", Operation: "reservation.capture",
		Pending: 4, AckPending: 2, Redelivered: 1, Waiting: 3, OldestAge: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"consumer":"frontpay-reservation-capture","operation":"reservation.capture","pending":4,` +
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
	name := ConsumerName(frontpay.ReservationRefund)
	if err := w.stream.DeleteConsumer(t.Context(), name); err != nil {
		t.Fatal(err)
	}
	if _, err := w.topo.Lag(t.Context(), w.js); err == nil || !strings.Contains(err.Error(), name) {
		t.Errorf("Lag without %s: %v", name, err)
	}
	other := Topology{Prefix: "shop9.", AckWait: time.Second}
	if _, err := other.Lag(t.Context(), w.js); err == nil || !strings.Contains(err.Error(), other.CommandStream()) {
		t.Errorf("Lag of a topology never set up: %v", err)
	}
}
