package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/client"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/schemas"
)

// hostile is a message a hostile or broken publisher puts on a command subject.
type hostile struct {
	name string
	op   frontpay.Operation // the subject's operation
	raw  []byte
	// dead: the message is no JSON object and must be copied to the dead letters; otherwise it
	// must end as an invalid_command failure of op.
	dead bool
	// problem, where set, is a word the failure's message must hold.
	problem string
}

// hostileEnvelope is a command event of type typ (the subject's when empty) around data, a JSON
// text; extra members (a JSON text of members, no braces) are added to the envelope.
func hostileEnvelope(op frontpay.Operation, typ, id, data, extra string) []byte {
	if typ == "" {
		typ = schemas.CommandSubject("", op)
	}
	if extra != "" {
		extra = "," + extra
	}
	return fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"hostile/test","type":%q%s,"data":%s}`, id, typ, extra, data)
}

// nested is n arrays, one inside the other.
func nested(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

// sized pads a details command of id with an extension attribute until it is n bytes long.
func sized(t *testing.T, id string, n int) []byte {
	t.Helper()
	base := hostileEnvelope(frontpay.ReservationDetails, "", id, `{"reservationUuid":"NOPE1"}`, `"padding":""`)
	if len(base) > n {
		t.Fatalf("a command of %d bytes cannot be %d", len(base), n)
	}
	pad := strings.Repeat("x", n-len(base))
	raw := hostileEnvelope(frontpay.ReservationDetails, "", id, `{"reservationUuid":"NOPE1"}`, `"padding":"`+pad+`"`)
	if len(raw) != n {
		t.Fatalf("padded to %d bytes, want %d", len(raw), n)
	}
	return raw
}

func hostileCases(t *testing.T) []hostile {
	details, capture := frontpay.ReservationDetails, frontpay.ReservationCapture
	env := func(op frontpay.Operation, name, data string) []byte {
		return hostileEnvelope(op, "", "hostile-"+name, data, "")
	}
	captureOf := func(amount string) string {
		return `{"reservationUuid":"RES1","products":[{"id":298,"amount":` + amount + `}],"grandTotal":` + amount + `}`
	}
	valid := func(op frontpay.Operation, typ, name string) []byte {
		data := `{"reservationUuid":"RES1"}`
		if op == capture || typ == schemas.CommandSubject("", capture) {
			data = captureOf("5")
		}
		return hostileEnvelope(op, typ, "hostile-"+name, data, "")
	}
	return []hostile{
		// Size (TestHostileOversizedCommand) and depth.
		{name: "100 levels deep", op: details, raw: env(details, "deep100", `{"reservationUuid":"RES1","x":`+nested(100)+`}`), problem: "deep"},
		{name: "20000 levels deep", op: details, raw: env(details, "deep20000", `{"reservationUuid":"RES1","x":`+nested(20000)+`}`), dead: true},
		// Wrong types in the envelope.
		{name: "data a string", op: details, raw: env(details, "data-string", `"RES1"`)},
		{name: "data an array", op: details, raw: env(details, "data-array", `[{"reservationUuid":"RES1"}]`)},
		{name: "data null", op: details, raw: env(details, "data-null", `null`)},
		{name: "id a number", op: details, raw: []byte(`{"specversion":"1.0","id":42,"source":"hostile/test","type":"reservation.details.requested","data":{"reservationUuid":"RES1"}}`)},
		{name: "specversion a number", op: details, raw: []byte(`{"specversion":1.0,"id":"hostile-specversion","source":"s","type":"reservation.details.requested","data":{"reservationUuid":"RES1"}}`)},
		{name: "time a number", op: details, raw: hostileEnvelope(details, "", "hostile-time", `{"reservationUuid":"RES1"}`, `"time":1795255140`)},
		{name: "extension an object", op: details, raw: hostileEnvelope(details, "", "hostile-ext", `{"reservationUuid":"RES1"}`, `"correlationid":{"a":1}`)},
		{name: "every attribute missing", op: details, raw: []byte(`{}`)},
		{name: "members twice", op: details, raw: []byte(`{"specversion":"1.0","id":"hostile-dup","id":"hostile-dup2","source":"s","type":"reservation.details.requested","data":{"reservationUuid":"RES1"}}`)},
		// Numbers as strings and strings as numbers, where the contract refuses them.
		{name: "uuid a number", op: details, raw: env(details, "uuid-number", `{"reservationUuid":12345}`)},
		{name: "amount a word", op: capture, raw: env(capture, "amount-word", captureOf(`"five"`))},
		{name: "amount a boolean", op: capture, raw: env(capture, "amount-bool", captureOf(`true`))},
		{name: "amount an object", op: capture, raw: env(capture, "amount-object", captureOf(`{"value":5}`))},
		{name: "note a number", op: frontpay.ReservationCancel, raw: env(frontpay.ReservationCancel, "note-number", `{"reservationUuid":"RES1","note":5}`)},
		{name: "history start a word", op: frontpay.ReservationHistory, raw: env(frontpay.ReservationHistory, "start-word", `{"start":"yesterday"}`)},
		// Money out of bounds.
		{name: "negative amount", op: capture, raw: env(capture, "negative", captureOf(`-5`))},
		{name: "zero amount", op: capture, raw: env(capture, "zero", captureOf(`0`))},
		{name: "over-precise amount", op: capture, raw: env(capture, "precise", captureOf(`0.001`))},
		{name: "over-precise amount string", op: capture, raw: env(capture, "precise-string", captureOf(`"0.001"`))},
		{name: "huge exponent", op: capture, raw: env(capture, "exponent", captureOf(`1e999999`))},
		{name: "sum that does not add up", op: capture, raw: env(capture, "sum", `{"reservationUuid":"RES1","products":[{"id":298,"amount":5}],"grandTotal":6}`)},
		// Unicode in names and identifiers.
		{name: "accented uuid", op: details, raw: env(details, "uuid-accent", `{"reservationUuid":"RÉS1"}`)},
		{name: "arabic digits uuid", op: details, raw: env(details, "uuid-arabic", `{"reservationUuid":"RES١٢٣"}`)},
		{name: "fullwidth uuid", op: details, raw: env(details, "uuid-fullwidth", `{"reservationUuid":"ＲＥＳ1"}`)},
		{name: "path traversal uuid", op: details, raw: env(details, "uuid-path", `{"reservationUuid":"../../sandbox/ledger"}`)},
		{name: "quote in uuid", op: details, raw: env(details, "uuid-quote", `{"reservationUuid":"RES1' OR '1'='1"}`)},
		{name: "homoglyph member name", op: details, raw: env(details, "homoglyph", `{"rеservationUuid":"RES1"}`)}, // Cyrillic е
		{name: "bidi override in member name", op: details, raw: env(details, "bidi", `{"reservationUuid\u202e":"RES1"}`)},
		{name: "unicode attribute name", op: details, raw: hostileEnvelope(details, "", "hostile-attr", `{"reservationUuid":"RES1"}`, `"ïdempotencykey":"k"`)},
		{name: "white space and markup", op: frontpay.ReservationCancel, raw: []byte("{\n  \"specversion\": \"1.0\",\n  \"id\": \"hostile-markup\",\n  \"source\": \"s\",\n  \"type\": \"reservation.cancel.requested\",\n  \"data\": {\"reservationUuid\": \"RES1\", \"note\": \"<script>&</script>\", \"unknown\": 1}\n}\n")},
		{name: "prototype member", op: details, raw: env(details, "proto", `{"__proto__":{"reservationUuid":"RES1"}}`)},
		// Subject and type disagree; an operation that does not exist.
		{name: "details type on the capture subject", op: capture, raw: valid(capture, schemas.CommandSubject("", details), "type-details"), problem: "the subject without its prefix"},
		{name: "capture type on the cancel subject", op: frontpay.ReservationCancel, raw: valid(frontpay.ReservationCancel, schemas.CommandSubject("", capture), "type-capture"), problem: "the subject without its prefix"},
		{name: "unknown operation as type", op: details, raw: valid(details, "reservation.explode.requested", "type-unknown"), problem: "the subject without its prefix"},
		{name: "type with a prefix", op: details, raw: valid(details, "shop1.reservation.details.requested", "type-prefixed"), problem: "the subject without its prefix"},
		// No JSON object at all.
		{name: "not JSON", op: details, raw: []byte(`hello, worker`), dead: true},
		{name: "empty", op: details, raw: []byte{}, dead: true},
		{name: "JSON array", op: capture, raw: []byte(`[{"specversion":"1.0","id":"x","source":"s","type":"reservation.capture.requested","data":{}}]`), dead: true},
		{name: "JSON null", op: capture, raw: []byte(`null`), dead: true},
		{name: "JSON string", op: capture, raw: []byte(`"reservation.capture.requested"`), dead: true},
		{name: "JSON number", op: capture, raw: []byte(`42`), dead: true},
		{name: "truncated object", op: capture, raw: []byte(`{"specversion":"1.0","id":"hostile-trunc"`), dead: true},
		{name: "not UTF-8", op: details, raw: append([]byte(`{"specversion":"1.0","id":"`), 0xff, 0xfe, '"', '}'), dead: true},
		{name: "byte order mark", op: details, raw: append([]byte("\ufeff"), valid(details, "", "bom")...), dead: true},
	}
}

// deadLetters collects the dead-letter stream.
type deadLetters struct {
	mu   sync.Mutex
	msgs []jetstream.Msg
}

func (d *deadLetters) bySeq(seq uint64) jetstream.Msg {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range d.msgs {
		if m.Headers().Get(publisher.HeaderDeadLetterSeq) == strconv.FormatUint(seq, 10) {
			return m
		}
	}
	return nil
}

func (h *harness) collectDeadLetters(t *testing.T) *deadLetters {
	t.Helper()
	d := &deadLetters{}
	c, err := h.js.OrderedConsumer(context.Background(), h.topo.DeadLetterStream(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		d.mu.Lock()
		d.msgs = append(d.msgs, m)
		d.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return d
}

// sameJSON reports whether a and b are the same JSON value (members compared as a map, numbers
// as written).
func sameJSON(a, b []byte) bool {
	decode := func(b []byte) (any, bool) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		return v, d.Decode(&v) == nil
	}
	x, okX := decode(a)
	y, okY := decode(b)
	return okX && okY && reflect.DeepEqual(x, y)
}

// TestHostileCommands publishes messages no shop should send, through a real worker: each ends
// as an invalid_command failure of the subject's operation or as a dead letter, none reaches
// the API, and the worker goes on to run valid commands afterwards.
func TestHostileCommands(t *testing.T) {
	t.Parallel()
	h := setup(t)
	runHostile(t, h, hostileCases(t))

	// An operation that does not exist has no subject in the stream: JetStream refuses it, so it
	// never reaches a worker.
	ctx, cancel := context.WithTimeout(t.Context(), testworld.Patience)
	defer cancel()
	if _, err := h.js.Publish(ctx, "reservation.explode.requested", hostileValid(t)); err == nil {
		t.Errorf("a command of an unknown operation was stored")
	}

	// The worker still runs: a command exactly at the size limit, and one whose idempotency key
	// is hostile but legal, each make their one call.
	m := nats.NewMsg(schemas.CommandSubject("", frontpay.ReservationDetails))
	m.Data = sized(t, "hostile-at-limit", schemas.MaxCommandBytes)
	testworld.Publish(t, h.js, m)
	odd := h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": "NOPE2"}, client.Key("ключ/🔑 *> ..\x00\u202e"))
	failure(t, h.await(t, byCause("hostile-at-limit"), "the command at the size limit"), schemas.NotFound)
	failure(t, h.resultOf(t, odd), schemas.NotFound)
	if n := h.calls.Count("", ""); n != 2 {
		t.Errorf("%d API requests for the two valid commands, want 2", n)
	}
	select {
	case <-h.worker.Done():
		t.Fatalf("the worker stopped: %v", h.worker.Err())
	default:
	}
}

// TestHostileOversizedCommand publishes commands just over schemas.MaxCommandBytes and far
// over it: each is an invalid_command failure without the command (null, as result.schema.json
// allows for these), and no call is made.
func TestHostileOversizedCommand(t *testing.T) {
	t.Parallel()
	h := setup(t)
	runHostile(t, h, []hostile{
		{name: "one byte over", op: frontpay.ReservationDetails, raw: sized(t, "hostile-huge", schemas.MaxCommandBytes+1), problem: "bytes"},
		{name: "900 KiB", op: frontpay.ReservationDetails, raw: sized(t, "hostile-900k", 900<<10), problem: "bytes"},
	})
}

// runHostile publishes the cases, waits for an outcome of each and checks it: the dead letter
// holds the message byte for byte; the failure is invalid_command, not retryable, without HTTP
// status or attempts, and carries the command (null when oversized); no request reached the API
// and every message is acknowledged.
func runHostile(t *testing.T, h *harness, cases []hostile) {
	t.Helper()
	dead := h.collectDeadLetters(t)
	seqs := make([]uint64, len(cases))
	for i, c := range cases {
		m := nats.NewMsg(schemas.CommandSubject("", c.op))
		m.Data = c.raw
		m.Header.Set(jetstream.MsgIDHeader, "hostile-"+strconv.Itoa(i))
		seqs[i] = testworld.Publish(t, h.js, m)
	}

	// An invalid command's failure is matched by its causation id: its id, or the hash key the
	// worker falls back on when it has none.
	causeOf := func(c hostile) string { return schemas.OriginOf(c.op, c.raw).CommandID }
	testworld.WaitFor(t, func() bool {
		for i, c := range cases {
			if c.dead && dead.bySeq(seqs[i]) == nil || !c.dead && len(h.results.find(byCause(causeOf(c)))) == 0 {
				return false
			}
		}
		return true
	}, "an outcome of every hostile message")

	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.dead {
				m := dead.bySeq(seqs[i])
				if m.Subject() != schemas.DeadLetterSubject("", schemas.CommandSubject("", c.op)) || !bytes.Equal(m.Data(), c.raw) {
					t.Errorf("dead letter on %s holds %.80q, want %.80q", m.Subject(), m.Data(), c.raw)
				}
				if m.Headers().Get(publisher.HeaderDeadLetterReason) == "" {
					t.Errorf("dead letter without a reason: %v", m.Headers())
				}
				if r := h.sent.find(byCause(causeOf(c))); len(r) != 0 {
					t.Errorf("a dead letter also has a result: %s", r[0].Data)
				}
				return
			}
			rs := h.results.find(byCause(causeOf(c)))
			if len(rs) != 1 {
				t.Fatalf("%d results, want 1", len(rs))
			}
			r := rs[0]
			if r.Event.Type != schemas.ResultSubject("", c.op, false) {
				t.Fatalf("result %s, want %s", r.Event.Type, schemas.ResultSubject("", c.op, false))
			}
			f := failure(t, r, schemas.InvalidCommand)
			if f.Retryable || f.HTTPStatus != 0 || f.Attempts != 0 {
				t.Errorf("failure %+v: want not retryable, no HTTP status, no attempts", f)
			}
			if c.problem != "" && !strings.Contains(f.Message, c.problem) {
				t.Errorf("message %q does not name the problem (%q)", f.Message, c.problem)
			}
			dup := bytes.Contains(c.raw, []byte(`"id":"hostile-dup"`))
			switch {
			case len(c.raw) > schemas.MaxCommandBytes:
				if string(f.Command) != "null" {
					t.Errorf("an oversized command is carried in its failure (%d bytes)", len(f.Command))
				}
			case dup:
				// Members twice decode as one: the bytes must still hold both.
				if !bytes.Contains(f.Command, []byte(`"hostile-dup2"`)) || !bytes.Contains(f.Command, []byte(`"hostile-dup"`)) {
					t.Errorf("the failure's command lost a duplicated member: %s", f.Command)
				}
			case !sameJSON(f.Command, c.raw):
				t.Errorf("the failure's command %.200s is not the command %.200s", f.Command, c.raw)
			case !bytes.Equal(f.Command, c.raw):
				t.Logf("the failure's command is the command re-encoded, not byte for byte:\n got %.200s\nwant %.200s", f.Command, c.raw)
			}
		})
	}
	if n := h.calls.Count("", ""); n != 0 || len(h.sb.Ledger()) != 0 {
		t.Fatalf("hostile commands reached the API: %d requests, ledger %+v", n, h.sb.Ledger())
	}
	testworld.WaitFor(t, func() bool { return h.consumerIdle(t) }, "every hostile message acknowledged")
}

// hostileValid is a valid details command of a reservation that does not exist.
func hostileValid(t *testing.T) []byte {
	t.Helper()
	return hostileEnvelope(frontpay.ReservationDetails, "", schemas.NewID(), `{"reservationUuid":"NOPE3"}`, "")
}
