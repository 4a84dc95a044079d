package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// checkVerdict fails t unless ParseCommand accepted (field "") or named field in an *InvalidError
// that carries raw as a failure event can.
func checkVerdict(t *testing.T, raw []byte, cmd *Command, err error, field string) {
	t.Helper()
	var inv *InvalidError
	switch {
	case field == "" && err != nil:
		t.Fatalf("ParseCommand: %v", err)
	case field == "" && cmd == nil:
		t.Fatal("ParseCommand returned neither a command nor an error")
	case field == "":
	case !errors.As(err, &inv):
		t.Fatalf("ParseCommand = %v, want an *InvalidError naming %q", err, field)
	case !slices.ContainsFunc(inv.Fields, func(f frontpay.FieldError) bool { return f.Field == field }):
		t.Fatalf("ParseCommand = %v, want %q named", err, field)
	case !json.Valid(raw):
		t.Fatal("an *InvalidError for bytes that are not JSON")
	}
}

func TestParseCommandCorpus(t *testing.T) {
	t.Parallel()
	for _, c := range corpus {
		t.Run(c.name(), func(t *testing.T) {
			raw := command(c.op, c.data(t))
			cmd, err := ParseCommand(c.op, raw, testNow)
			field := c.field
			if field != "" {
				field = "data." + field
			}
			checkVerdict(t, raw, cmd, err, field)
		})
	}
}

func TestParseCommandExamples(t *testing.T) {
	t.Parallel()
	const res = "RES1943140879"
	tests := []struct {
		op       frontpay.Operation
		body     string // the type of Body
		resource string
		params   []string
	}{
		{oc, "*frontpay.CreateOrderRequest", "", nil},
		{or, "*frontpay.ResendRequest", "ORD3672053467", []string{"ORD3672053467"}},
		{rs, "*frontpay.SubmitReservationRequest", "", nil},
		{ss, "*frontpay.CreateSessionRequest", "", nil},
		{rd, "<nil>", res, []string{res}},
		{rc, "*frontpay.CaptureRequest", res, []string{res}},
		{rh, "*frontpay.ChargeRequest", res, []string{res}},
		{rx, "*frontpay.NoteRequest", res, []string{res}},
		{rp, "*frontpay.NoteRequest", res, []string{res}},
		{rr, "*frontpay.ResendRequest", res, []string{res}},
		{rf, "*frontpay.RefundRequest", res, []string{res}},
		{hi, "<nil>", "", []string{"1706674723", "1706761123"}},
	}
	if len(tests) != len(frontpay.Operations()) {
		t.Fatalf("%d operations tested, want all %d", len(tests), len(frontpay.Operations()))
	}
	for _, tt := range tests {
		t.Run(string(tt.op), func(t *testing.T) {
			raw := command(tt.op, examples[tt.op])
			cmd, err := ParseCommand(tt.op, raw, testNow)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%T", cmd.Body); got != tt.body {
				t.Errorf("Body is %s, want %s", got, tt.body)
			}
			if cmd.Op != tt.op || cmd.Key != "key-1" || cmd.Resource != tt.resource || !slices.Equal(cmd.Params, tt.params) {
				t.Errorf("Op %q Key %q Resource %q Params %q", cmd.Op, cmd.Key, cmd.Resource, cmd.Params)
			}
			if cmd.ID != "7f1d0c2e-5b1a-4c57-9a0e-3f1f6f0f2a10" || cmd.CorrelationID != "order-88412" || cmd.Type != string(tt.op)+".requested" {
				t.Errorf("Event %+v", cmd.Event)
			}
			if len(cmd.Fingerprint) != 64 {
				t.Errorf("Fingerprint %q, want hex SHA-256", cmd.Fingerprint)
			}
			if !bytes.Equal(compact(t, cmd.Data), compact(t, []byte(examples[tt.op]))) {
				t.Errorf("Data %s is not the data received", cmd.Data)
			}
			if cmd.Body == nil {
				return
			}
			// The request body is data without the path fields, as the documents write it.
			want := examples[tt.op]
			for _, name := range tt.op.Endpoint().Params {
				want = edit(t, want, name, deleted)
			}
			sent, err := json.Marshal(cmd.Body)
			if err != nil {
				t.Fatal(err)
			}
			if got := edit(t, string(sent)); got != edit(t, want) {
				t.Errorf("body sent\n%s\nwant\n%s", got, edit(t, want))
			}
		})
	}
}

func compact(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestParseCommandHistoryDefaults(t *testing.T) {
	t.Parallel()
	unix := func(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
	tests := []struct {
		data   string
		params []string
	}{
		{`{}`, []string{unix(testNow.Add(-24 * time.Hour)), unix(testNow)}},
		{`{"start": null, "end": null}`, []string{unix(testNow.Add(-24 * time.Hour)), unix(testNow)}},
		{`{"end": 1706761123}`, []string{"1706674723", "1706761123"}},
		{`{"start": "0"}`, []string{"0", unix(testNow)}},
	}
	for _, tt := range tests {
		cmd, err := ParseCommand(hi, command(hi, tt.data), testNow)
		if err != nil {
			t.Fatalf("%s: %v", tt.data, err)
		}
		if !slices.Equal(cmd.Params, tt.params) {
			t.Errorf("%s: Params %q, want %q", tt.data, cmd.Params, tt.params)
		}
	}
}

// envelopeCase is a command whose envelope is edited: the capture example (or raw) received on
// the subject of op (capture when empty).
type envelopeCase struct {
	op    frontpay.Operation
	edits []string
	raw   string
	field string // "" when valid
	tag   string
}

func (c envelopeCase) bytes(t testing.TB) []byte {
	if c.raw != "" {
		return []byte(c.raw)
	}
	return []byte(edit(t, string(command(rc, examples[rc])), c.edits...))
}

func (c envelopeCase) subjectOp() frontpay.Operation { return cmpOr(c.op, rc) }

func cmpOr[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}

func env(field string, edits ...string) envelopeCase { return envelopeCase{edits: edits, field: field} }

// withRaw is a command written out, duplicate members and all.
func withRaw(field, raw string) envelopeCase { return envelopeCase{raw: raw, field: field} }

func (c envelopeCase) because(tag string) envelopeCase {
	c.tag = tag
	return c
}

var captureHead = `{"specversion": "1.0", "id": "c-1", "source": "shop", "type": "reservation.capture.requested", `

var envelopeCorpus = []envelopeCase{
	env(""),
	env("", "subject", `null`, "time", deleted, "idempotencykey", deleted),
	env("", "traceparent", `"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"`, "retries", `3`, "sampled", `true`, "x", `null`),
	env("", "datacontenttype", `"application/json"`),
	env("", "datacontenttype", `"application/json; charset=utf-8"`),
	env("", "datacontenttype", `"application/vnd.shop+json"`),
	env("", "replayof", `"6e1d0c2e-5b1a-5c57-9a0e-3f1f6f0f2a10"`, "causationid", `"upstream-1"`, "subject", `"RES1943140879"`),
	env("", "time", `"2026-11-21T11:00:00.123456+01:00"`),
	env("specversion", "specversion", deleted),
	env("specversion", "specversion", `"0.3"`),
	env("specversion", "specversion", `1.0`),
	env("id", "id", deleted),
	env("id", "id", `5`),
	env("id", "id", `""`),
	env("source", "source", deleted),
	env("source", "source", `null`),
	env("type", "type", deleted),
	env("type", "type", `"reservation.capture"`),
	env("type", "type", `"reservation.capture.succeeded"`),
	{op: rp, raw: string(command(rx, examples[rx])), field: "type", tag: "type-subject"},
	{op: "reservation.bogus", edits: []string{"type", `"reservation.bogus.requested"`}, field: "type"},
	env("data", "data", deleted),
	env("data", "data", `[]`),
	env("data", "data", `null`),
	env("data", "data", `"RES1943140879"`),
	env("time", "time", `"2026-11-21 10:00:00Z"`),
	env("time", "time", `"2026-11-21t10:00:00z"`),
	env("time", "time", `"2026-11-21T10:00:00,5Z"`),
	env("time", "time", `"2026-11-21T10:00:00+24:00"`),
	env("time", "time", `1795255200`),
	env("time", "time", `"2026-02-30T10:00:00Z"`).because("time-calendar"),
	env("datacontenttype", "datacontenttype", `"text/plain"`),
	env("datacontenttype", "datacontenttype", `"Application/JSON"`),
	env("idempotencyKey", "idempotencyKey", `"capture-1"`),
	env("data", "data_base64", `"e30="`),
	env("data", "data", deleted, "data_base64", `"e30="`),
	env("Data", "Data", `{}`),
	env("traceparent", "traceparent", `{"version": 0}`),
	env("tags", "tags", `["a"]`),
	env("idempotencykey", "idempotencykey", `""`),
	env("correlationid", "correlationid", `5`),
	env("subject", "subject", `""`),
	withRaw("id", captureHead+`"id": "c-2", "data": {"reservationUuid": "RES1", "products": [{"id": 1, "amount": 5}], "grandTotal": 5}}`).because("distinct-keys"),
	withRaw("data.grandTotal", captureHead+`"data": {"reservationUuid": "RES1", "products": [{"id": 1, "amount": 5}], "grandTotal": 5, "grandTotal": 500}}`).because("distinct-keys"),
	env("", "data.additionalText", strconv.Quote(strings.Repeat("x", MaxCommandBytes))).because("max-size"),
}

func TestParseCommandEnvelope(t *testing.T) {
	t.Parallel()
	for _, c := range envelopeCorpus {
		raw := c.bytes(t)
		t.Run(fmt.Sprintf("%s %q", c.subjectOp(), truncateBytes(raw)), func(t *testing.T) {
			cmd, err := ParseCommand(c.subjectOp(), raw, testNow)
			if c.tag == "max-size" {
				checkRule(t, err, "max_size")
				return
			}
			checkVerdict(t, raw, cmd, err, c.field)
		})
	}
}

func truncateBytes(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// checkRule fails t unless err is an *InvalidError about the whole command with rule.
func checkRule(t *testing.T, err error, rule string) {
	t.Helper()
	var inv *InvalidError
	if !errors.As(err, &inv) || len(inv.Fields) != 1 || inv.Fields[0].Field != "" || inv.Fields[0].Rule != rule {
		t.Fatalf("ParseCommand = %v, want one %s problem of the whole command", err, rule)
	}
}

func TestParseCommandNotObject(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"", "  ", "null", "[]", `"{}"`, "42", "{", `{"id": "1"`, `{"id": "1"} {}`, `{'id': '1'}`,
		"{\"id\": \"\xff\"}", // not UTF-8
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		`{"x": ` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
	} {
		if _, err := ParseCommand(rc, []byte(raw), testNow); !errors.Is(err, ErrNotObject) {
			t.Errorf("%q: %v, want ErrNotObject", truncateBytes([]byte(raw)), err)
		}
	}
}

func TestParseCommandLimits(t *testing.T) {
	t.Parallel()
	nested := func(levels int) []byte { // the command object is level 1
		return []byte(captureHead + `"x": ` + strings.Repeat("[", levels-1) + strings.Repeat("]", levels-1) + `, "data": {}}`)
	}
	_, err := ParseCommand(rc, nested(MaxDepth+1), testNow)
	checkRule(t, err, "max_depth")
	_, err = ParseCommand(rc, nested(MaxDepth), testNow)
	var inv *InvalidError
	if !errors.As(err, &inv) || slices.ContainsFunc(inv.Fields, func(f frontpay.FieldError) bool { return f.Rule == "max_depth" }) {
		t.Errorf("%d levels: %v, want an *InvalidError but no max_depth", MaxDepth, err)
	}

	// A command of exactly MaxCommandBytes is read; one byte more is not.
	base := command(rc, edit(t, examples[rc], "additionalText", `""`))
	pad := strings.Repeat("x", MaxCommandBytes-len(base))
	atLimit := command(rc, edit(t, examples[rc], "additionalText", strconv.Quote(pad)))
	if len(atLimit) != MaxCommandBytes {
		t.Fatalf("built %d bytes", len(atLimit))
	}
	if _, err := ParseCommand(rc, atLimit, testNow); err != nil {
		t.Errorf("%d bytes: %v", len(atLimit), err)
	}
	_, err = ParseCommand(rc, append(atLimit, ' '), testNow)
	checkRule(t, err, "max_size")

	// Numbers whose exact value would cost big.Rat seconds are refused as they are read.
	for _, n := range []string{`1e999999`, `"1e999999"`, `1` + strings.Repeat("0", 100000)} {
		raw := command(rc, edit(t, examples[rc], "grandTotal", n))
		_, err := ParseCommand(rc, raw, testNow)
		if !errors.As(err, &inv) || inv.Fields[0].Rule != "numeric" {
			t.Errorf("grandTotal %.20s: %v, want numeric", n, err)
		}
	}
}

func TestParseCommandErrorsNameFields(t *testing.T) {
	t.Parallel()
	raw := command(rc, `{"reservationUuid": 5, "products": {"0": {"id": true, "amount": "five"}}, "grandTotal": [], "grandtotal": 5}`)
	_, err := ParseCommand(rc, raw, testNow)
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatal(err)
	}
	want := []string{"data.reservationUuid string", "data.grandTotal numeric", "data.grandtotal unknown",
		"data.products.0.amount numeric", "data.products.0.id numeric"}
	var got []string
	for _, f := range inv.Fields {
		got = append(got, f.Field+" "+f.Rule)
	}
	if !slices.Equal(got, want) {
		t.Errorf("fields %q, want %q", got, want)
	}
	if msg := err.Error(); !strings.Contains(msg, `data.products.0.amount a string that is not numeric`) || strings.Contains(msg, "five") {
		t.Errorf("Error() = %s", msg)
	}
}

func TestParseCommandFingerprint(t *testing.T) {
	t.Parallel()
	fp := func(data string) string {
		t.Helper()
		cmd, err := ParseCommand(rc, command(rc, data), testNow)
		if err != nil {
			t.Fatal(err)
		}
		return cmd.Fingerprint
	}
	same := fp(examples[rc])
	for _, data := range []string{
		`{"grandTotal":55,"additionalText":"My additional Text for capture","products":{"1":{"amount":50,"id":299},"0":{"amount":5,"id":298}},"reservationUuid":"RES1943140879"}`,
		"{\n\t\"reservationUuid\" : \"RES1943140879\" , \"products\": {\"0\": {\"id\": 298, \"amount\": 5}, \"1\": {\"id\": 299, \"amount\": 50}}, \"grandTotal\": 55, \"additionalText\": \"My additional \\u0054ext for capture\"}\n",
	} {
		if got := fp(data); got != same {
			t.Errorf("%s: fingerprint %s, want %s", data, got, same)
		}
	}
	for _, edits := range [][]string{
		{"grandTotal", `"55"`},
		{"grandTotal", `55.0`},
		{"additionalText", `"my additional Text for capture"`},
		{"reservationUuid", `"RES1943140870"`},
	} {
		if fp(edit(t, examples[rc], edits...)) == same {
			t.Errorf("%q: same fingerprint as the example", edits)
		}
	}
}

func TestParseCommandKey(t *testing.T) {
	t.Parallel()
	cmd, err := ParseCommand(rc, []byte(edit(t, string(command(rc, examples[rc])), "idempotencykey", deleted)), testNow)
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Key != cmd.ID {
		t.Errorf("Key %q, want the id %q", cmd.Key, cmd.ID)
	}
}

func TestInvalidErrorFailure(t *testing.T) {
	t.Parallel()
	raw := command(rc, edit(t, examples[rc], "reservationUuid", `"RES 1"`, "note", `"x"`))
	_, err := ParseCommand(rc, raw, testNow)
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatal(err)
	}
	f := inv.Failure(raw)
	if f.Reason != InvalidCommand || f.Retryable || f.Attempts != 0 || !bytes.Equal(f.Command, raw) || f.Message != inv.Error() {
		t.Errorf("Failure %+v", f)
	}
	var errs map[string][]string
	if err := json.Unmarshal(f.Errors, &errs); err != nil || len(errs["data.reservationUuid"]) != 1 || len(errs["data.note"]) != 1 {
		t.Errorf("errors %s", f.Errors)
	}
}
