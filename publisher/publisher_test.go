package publisher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/internal/testworld"
)

// The test world: an embedded JetStream server over TCP with a command stream (cmd.>), a
// dead-letter stream (dead.>, which refuses messages over 4 KiB) and an event stream (events.>,
// which refuses messages over 1 KiB), all with a duplicate window.
const (
	cmdStream   = "CMD"
	deadStream  = "DEAD"
	eventStream = "EVENTS"
)

type world struct {
	t  *testing.T
	js jetstream.JetStream
}

func setup(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, js: testworld.JetStream(t).JS}
	for _, c := range []jetstream.StreamConfig{
		{Name: cmdStream, Subjects: []string{"cmd.>"}},
		{Name: deadStream, Subjects: []string{"dead.>"}, MaxMsgSize: 4 << 10},
		{Name: eventStream, Subjects: []string{"events.>"}, MaxMsgSize: 1 << 10},
	} {
		c.Duplicates = time.Minute
		if _, err := w.js.CreateStream(testworld.Context(w.t), c); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// stream returns a stream and its state now.
func (w *world) stream(name string) (jetstream.Stream, *jetstream.StreamInfo) {
	w.t.Helper()
	s, err := w.js.Stream(testworld.Context(w.t), name)
	if err != nil {
		w.t.Fatal(err)
	}
	info, err := s.Info(testworld.Context(w.t))
	if err != nil {
		w.t.Fatal(err)
	}
	return s, info
}

// stored returns every message of a stream, in order.
func (w *world) stored(name string) []*jetstream.RawStreamMsg {
	w.t.Helper()
	s, info := w.stream(name)
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(testworld.Context(w.t), seq)
		if err != nil {
			w.t.Fatalf("%s message %d: %v", name, seq, err)
		}
		out = append(out, m)
	}
	return out
}

// original publishes a message to the command stream as a publisher would, with its headers,
// and returns it as the worker receives it.
func (w *world) original(subject string, data []byte, hdr nats.Header) jetstream.Msg {
	w.t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	for k, vs := range hdr {
		m.Header[k] = vs
	}
	ack, err := w.js.PublishMsg(testworld.Context(w.t), m)
	if err != nil {
		w.t.Fatalf("publish the original: %v", err)
	}
	c, err := w.js.OrderedConsumer(testworld.Context(w.t), cmdStream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: ack.Sequence,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	got, err := c.Next(jetstream.FetchMaxWait(testworld.Patience))
	if err != nil {
		w.t.Fatalf("receive the original: %v", err)
	}
	return got
}

// lastSeq is the last sequence of a stream.
func (w *world) lastSeq(name string) uint64 {
	w.t.Helper()
	_, info := w.stream(name)
	return info.State.LastSeq
}

// signal is a log writer that tells, without blocking, that something was logged.
type signal chan struct{}

func (s signal) Write(p []byte) (int, error) {
	select {
	case s <- struct{}{}:
	default:
	}
	return len(p), nil
}

// TestPublishSetsMsgID: the stored event carries Nats-Msg-Id and the CloudEvents content type;
// publishing the same id again counts as stored and stores nothing.
func TestPublishSetsMsgID(t *testing.T) {
	w := setup(t)
	p := New(w.js, nil, time.Second)
	if err := p.Publish(testworld.Context(w.t), "events.a", "id-1", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	// A duplicate (a result published again after a crash) is stored already: nil, nothing new.
	if err := p.Publish(testworld.Context(w.t), "events.a", "id-1", []byte(`{"n":2}`)); err != nil {
		t.Fatalf("duplicate: %v", err)
	}
	got := w.stored(eventStream)
	if len(got) != 1 {
		t.Fatalf("%d events stored, want 1", len(got))
	}
	m := got[0]
	if m.Header.Get(jetstream.MsgIDHeader) != "id-1" || m.Header.Get("Content-Type") != ContentType || string(m.Data) != `{"n":1}` {
		t.Errorf("stored %s %q with headers %v", m.Subject, m.Data, m.Header)
	}
}

// TestPublishRefused: a publish that JetStream (or the server's max payload) refuses is not
// retried: Publish and DeadLetter return at once with ErrRefused, long before their context ends.
func TestPublishRefused(t *testing.T) {
	w := setup(t)
	p := New(w.js, nil, time.Second)
	big := bytes.Repeat([]byte("x"), 2<<10)
	cases := []struct {
		name    string
		publish func(ctx context.Context) error
		code    jetstream.ErrorCode // 0: refused by the client (max payload)
	}{
		{"over the stream's limit", func(ctx context.Context) error {
			return p.Publish(ctx, "events.big", "big-1", big)
		}, jetstream.JSErrCodeStreamMessageExceedsMaximum},
		{"over the server's max payload", func(ctx context.Context) error {
			return p.Publish(ctx, "events.huge", "huge-1", bytes.Repeat([]byte("x"), server.MAX_PAYLOAD_SIZE+1))
		}, 0},
		{"dead letter over the stream's limit", func(ctx context.Context) error {
			orig := w.original("cmd.big", bytes.Repeat([]byte("y"), 8<<10), nil)
			return p.DeadLetter(ctx, "dead.cmd.big", orig, "not a JSON object")
		}, jetstream.JSErrCodeStreamMessageExceedsMaximum},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := testworld.Context(w.t)
			err := c.publish(ctx)
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("error %v, want ErrRefused", err)
			}
			if ctx.Err() != nil {
				t.Fatalf("returned only when the context ended: %v", err)
			}
			var apiErr *jetstream.APIError
			switch {
			case c.code != 0 && (!errors.As(err, &apiErr) || apiErr.ErrorCode != c.code):
				t.Errorf("error %v does not carry JetStream's error %d", err, c.code)
			case c.code == 0 && !errors.Is(err, nats.ErrMaxPayload):
				t.Errorf("error %v does not carry %v", err, nats.ErrMaxPayload)
			}
		})
	}
	if n := len(w.stored(eventStream)) + len(w.stored(deadStream)); n != 0 {
		t.Errorf("%d refused messages stored", n)
	}
}

// TestPublishRetriesTransientFailures: with no stream to answer, Publish retries until its
// context ends (not refused: the stream may be on its way), and succeeds once the stream is there.
func TestPublishRetriesTransientFailures(t *testing.T) {
	w := setup(t)
	retried := make(signal, 1)
	p := New(w.js, slog.New(slog.NewTextHandler(retried, &slog.HandlerOptions{Level: slog.LevelWarn})), time.Second)

	ctx, cancel := context.WithTimeout(testworld.Context(w.t), time.Second)
	defer cancel()
	err := p.Publish(ctx, "later.a", "later-0", []byte("{}"))
	if err == nil || errors.Is(err, ErrRefused) || ctx.Err() == nil {
		t.Fatalf("no stream: %v (context %v), want a failure when the context ends, not ErrRefused", err, ctx.Err())
	}

	done := make(chan error, 1)
	go func() { done <- p.Publish(testworld.Context(w.t), "later.a", "later-1", []byte("{}")) }()
	select {
	case <-retried:
	case err := <-done:
		t.Fatalf("Publish returned %v with no stream", err)
	case <-time.After(testworld.Patience):
		t.Fatal("Publish did not retry")
	}
	if _, err := w.js.CreateStream(testworld.Context(w.t), jetstream.StreamConfig{Name: "LATER", Subjects: []string{"later.>"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("once the stream exists: %v", err)
		}
	case <-time.After(testworld.Patience):
		t.Fatal("Publish did not return once the stream existed")
	}
	if got := w.stored("LATER"); len(got) != 1 || got[0].Header.Get(jetstream.MsgIDHeader) != "later-1" {
		t.Fatalf("stored %v", got)
	}
}

// TestDeadLetterHeaders: the copy keeps the original's bytes and headers, except its Nats-*
// headers, which JetStream would act on (CONTRACT.md section 6): those are kept under
// Frontpay-Original-<name>. An original carrying Nats-Expected-Stream or
// Nats-Expected-Last-Sequence (both valid for the command stream) is stored in the dead-letter
// stream all the same.
func TestDeadLetterHeaders(t *testing.T) {
	w := setup(t)
	p := New(w.js, nil, time.Second)
	cases := []struct {
		name string
		hdr  func() nats.Header // built when its original is published
	}{
		{"expected stream", func() nats.Header {
			return nats.Header{"Nats-Expected-Stream": {cmdStream}, "Nats-Msg-Id": {"publisher-id-1"}, "X-Shop": {"shop1"},
				"X-Twice": {"a", "b"}, HeaderDeadLetterReason: {"the publisher's own"}}
		}},
		{"expected last sequence", func() nats.Header {
			return nats.Header{"Nats-Expected-Last-Sequence": {strconv.FormatUint(w.lastSeq(cmdStream), 10)}}
		}},
		{"expected last subject sequence", func() nats.Header {
			return nats.Header{"Nats-Expected-Last-Subject-Sequence": {"0"}, "Nats-Msg-Id": {"publisher-id-3"}}
		}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := c.hdr()
			subject := "cmd.op" + strconv.Itoa(i)
			data := []byte("not json " + strconv.Itoa(i))
			orig := w.original(subject, data, hdr)
			md, err := orig.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			ctx := testworld.Context(w.t)
			if err := p.DeadLetter(ctx, "dead."+subject, orig, "not a JSON object"); err != nil {
				t.Fatalf("dead letter: %v", err)
			}
			got := w.stored(deadStream)
			if len(got) != i+1 {
				t.Fatalf("%d dead letters stored, want %d", len(got), i+1)
			}
			m := got[i]
			if m.Subject != "dead."+subject || !bytes.Equal(m.Data, data) {
				t.Errorf("dead letter on %s holds %q", m.Subject, m.Data)
			}
			want := map[string][]string{
				HeaderDeadLetterReason:  {"not a JSON object"},
				HeaderDeadLetterSubject: {subject},
				HeaderDeadLetterStream:  {cmdStream},
				HeaderDeadLetterSeq:     {strconv.FormatUint(md.Sequence.Stream, 10)},
			}
			for k, vs := range hdr {
				switch {
				case k == HeaderDeadLetterReason: // the worker's own header wins
				case strings.HasPrefix(k, "Nats-"):
					want[HeaderOriginalPrefix+k] = vs
				default:
					want[k] = vs
				}
			}
			for k, vs := range want {
				if got := m.Header.Values(k); !slices.Equal(got, vs) {
					t.Errorf("header %s: %q, want %q", k, got, vs)
				}
			}
			for k, vs := range m.Header {
				if _, ok := want[k]; !ok && k != jetstream.MsgIDHeader {
					t.Errorf("header %s: %q, which the original did not have", k, vs)
				}
			}
			id := m.Header.Get(jetstream.MsgIDHeader)
			if id == "" || id == hdr.Get(jetstream.MsgIDHeader) {
				t.Errorf("the copy's Nats-Msg-Id is %q: want one of the worker's own", id)
			}
		})
	}
}

// TestDeadLetterIDCannotBeTaken: a publisher cannot make the worker drop a dead letter as a
// duplicate (issue 11, item 5), whether it sets the id on a message of its own that is dead-lettered
// first, or publishes straight to the dead-letter subject with the id the worker will use. The
// worker's own copy, copied again after a crash, is still stored once.
func TestDeadLetterIDCannotBeTaken(t *testing.T) {
	w := setup(t)
	p := New(w.js, nil, time.Second)
	next := w.lastSeq(cmdStream) + 1
	// The id the worker gives the dead letter of the message at seq: predictable by design (a
	// copy made again after a crash must get the same id), so the check behind it is what counts.
	idOf := func(seq uint64) string { return fmt.Sprintf("deadletter-%s-%d", cmdStream, seq) }

	// 1. A bad message carrying, as its own Nats-Msg-Id, the id of the next message's dead letter.
	thief := w.original("cmd.a", []byte("thief"), nats.Header{"Nats-Msg-Id": {idOf(next + 1)}})
	victim := w.original("cmd.a", []byte("victim"), nil)
	// 2. A message published straight to the dead-letter subject, with the id of the third.
	m := nats.NewMsg("dead.cmd.a")
	m.Data = []byte("forged dead letter")
	m.Header.Set(jetstream.MsgIDHeader, idOf(next+2))
	if _, err := w.js.PublishMsg(testworld.Context(w.t), m); err != nil {
		t.Fatal(err)
	}
	victim2 := w.original("cmd.a", []byte("victim 2"), nil)

	for _, orig := range []jetstream.Msg{thief, victim, victim2, victim} { // victim twice: a crash
		if err := p.DeadLetter(testworld.Context(w.t), "dead.cmd.a", orig, "not a JSON object"); err != nil {
			t.Fatalf("dead letter of %q: %v", orig.Data(), err)
		}
	}
	copies := map[string]int{}
	for _, m := range w.stored(deadStream) {
		if m.Header.Get(HeaderDeadLetterStream) == cmdStream {
			copies[m.Header.Get(HeaderDeadLetterSeq)+" "+string(m.Data)]++
		}
	}
	want := map[string]int{
		strconv.FormatUint(next, 10) + " thief":      1,
		strconv.FormatUint(next+1, 10) + " victim":   1,
		strconv.FormatUint(next+2, 10) + " victim 2": 1,
	}
	if fmt.Sprint(copies) != fmt.Sprint(want) {
		t.Fatalf("dead letters stored %v, want %v", copies, want)
	}
}
