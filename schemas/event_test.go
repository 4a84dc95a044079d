package schemas

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

var uuidV5 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestResultID(t *testing.T) {
	t.Parallel()
	ids := map[string]string{}
	for _, tt := range []struct {
		name, key string
		ok        bool
		reason    Reason
	}{
		{"succeeded", "key-1", true, ""},
		{"failed validation", "key-1", false, Validation},
		{"failed upstream", "key-1", false, UpstreamUnavailable},
		{"other key", "key-2", true, ""},
		{"key with the outcome in it", "key-1\x00succeeded", true, ""},
	} {
		id := ResultID(tt.key, tt.ok, tt.reason)
		if id != ResultID(tt.key, tt.ok, tt.reason) {
			t.Errorf("%s: not deterministic", tt.name)
		}
		if !uuidV5.MatchString(id) {
			t.Errorf("%s: %q is not a version 5 UUID", tt.name, id)
		}
		if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share the id %s", tt.name, other, id)
		}
		ids[id] = tt.name
	}
	first, again := StatusID("", "RES1", "captured", "2026-11-21T10:00:00Z"), StatusID("", "RES1", "captured", "2026-11-21T10:00:00Z")
	if first != again || first == StatusID("", "RES1", "charged", "2026-11-21T10:00:00Z") {
		t.Error("StatusID is not a function of uuid, status and time")
	}
}

// checkEvent fails t unless e is valid under the schema at path.
func checkEvent(t *testing.T, path string, e Event, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := schemaAccepts(t, path, b); !ok {
		t.Errorf("%s refuses %s: %v", path, b, err)
	}
}

func TestResultEvents(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 21, 11, 0, 0, 0, time.FixedZone("CET", 3600))
	for _, op := range frontpay.Operations() {
		raw := command(op, examples[op])
		cmd, err := ParseCommand(op, raw, testNow)
		if err != nil {
			t.Fatal(err)
		}
		o := cmd.Origin()
		e, err := NewSuccess("frontpay-worker", o, Success{HTTPStatus: 202, Message: "reservationCapturedSuccessfully", Response: json.RawMessage(`{"uuid": "CAP123234"}`)}, at)
		checkEvent(t, ResultSchema, e, err)
		if e.ID != ResultID("key-1", true, "") || e.Type != string(op)+".succeeded" || e.CausationID != cmd.ID ||
			e.IdempotencyKey != "key-1" || e.CorrelationID != "order-88412" || e.Subject != cmd.Resource || e.Time != "2026-11-21T10:00:00Z" {
			t.Errorf("%s: success %+v", op, e)
		}
		for _, reason := range Reasons() {
			e, err := NewFailure("frontpay-worker", o, Failure{Reason: reason, HTTPStatus: 400, Message: "requestedCaptureAmountExceedAvailableCaptureRunway", Attempts: 1, Command: raw}, time.Time{})
			checkEvent(t, ResultSchema, e, err)
			id := ResultID("key-1", false, reason)
			if reason == InvalidCommand {
				id = ResultID(nameUUID("invalid", cmd.ID), false, reason)
			}
			if e.ID != id || e.Type != string(op)+".failed" || e.Time != "" {
				t.Errorf("%s: failure %+v", op, e)
			}
		}
	}
}

func TestReplayedResults(t *testing.T) {
	t.Parallel()
	raw := []byte(edit(t, string(command(rc, examples[rc])), "replayof", `"6e1d0c2e-5b1a-5c57-9a0e-3f1f6f0f2a10"`))
	cmd, err := ParseCommand(rc, raw, testNow)
	if err != nil {
		t.Fatal(err)
	}
	f := Failure{Reason: UpstreamUnavailable, Retryable: true, Attempts: 8, Command: raw}
	replay, err := NewFailure("w", cmd.Origin(), f, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := NewFailure("w", cmd.Origin(), f, time.Time{})
	if replay.ID == ResultID(cmd.Key, false, UpstreamUnavailable) || replay.ID != again.ID {
		t.Errorf("a replay's failure %s: want an id of its own, the same every time", replay.ID)
	}
}

func TestInvalidCommandEvent(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		string(command(rc, edit(t, examples[rc], "grandtotal", `55`))),
		`{"id": 7, "type": "reservation.capture.requested", "data": {"reservationUuid": "RES/1"}}`,
		`{}`,
	} {
		_, err := ParseCommand(rc, []byte(raw), testNow)
		var inv *InvalidError
		if !errors.As(err, &inv) {
			t.Fatalf("%s: %v", raw, err)
		}
		o := OriginOf(rc, []byte(raw))
		e, err := NewFailure("frontpay-worker", o, inv.Failure([]byte(raw)), testNow)
		checkEvent(t, ResultSchema, e, err)
		if e2, _ := NewFailure("frontpay-worker", OriginOf(rc, []byte(raw)), inv.Failure([]byte(raw)), testNow); e2.ID != e.ID {
			t.Errorf("%s: the failure's id changes", raw)
		}
	}
	o := OriginOf(rc, command(rc, edit(t, examples[rc], "grandtotal", `55`)))
	if o.Key != "key-1" || o.CommandID != "7f1d0c2e-5b1a-4c57-9a0e-3f1f6f0f2a10" || o.Resource != "RES1943140879" || o.CorrelationID != "order-88412" {
		t.Errorf("OriginOf %+v", o)
	}
	if o := OriginOf(rc, []byte(`{"id": 7, "data": {"reservationUuid": "RES/1"}}`)); !strings.HasPrefix(o.Key, "sha256:") || o.CommandID != o.Key || o.Resource != "" {
		t.Errorf("OriginOf without a usable id: %+v", o)
	}
}

func TestStatusEvents(t *testing.T) {
	t.Parallel()
	c := StatusChange{UUID: "RES1943140879", Status: "captured", Amount: "55.00", PaymentMethod: "visa", At: "2026-11-21T10:00:00Z", Source: "callback"}
	e, err := NewStatus("frontpay-worker", "", "reservation", c)
	checkEvent(t, StatusSchema, e, err)
	if e.Type != "reservation.status.changed" || e.Subject != c.UUID || e.ID != StatusID("", c.UUID, c.Status, c.At) {
		t.Errorf("status %+v", e)
	}
	fromHistory := c
	fromHistory.Source = "history"
	if h, _ := NewStatus("frontpay-worker", "", "reservation", fromHistory); h.ID != e.ID {
		t.Error("the same change from the history poll is another event")
	}
	e, err = NewStatus("frontpay-worker", "", "order", StatusChange{UUID: "ORD1", Status: "paid", At: "2026-11-21T10:00:00+01:00", Source: "history"})
	checkEvent(t, StatusSchema, e, err)
	for _, bad := range []struct {
		source, resource string
		c                StatusChange
	}{
		{"w", "invoice", c},
		{"", "reservation", c},
		{"w", "reservation", StatusChange{UUID: "RES/1", Status: "x", At: c.At, Source: "callback"}},
		{"w", "reservation", StatusChange{UUID: "RES1", Status: "x", At: "21.01.2024 04:00", Source: "callback"}},
		{"w", "reservation", StatusChange{UUID: "RES1", Status: "x", At: c.At, Source: "poll"}},
	} {
		if _, err := NewStatus(bad.source, "", bad.resource, bad.c); err == nil {
			t.Errorf("NewStatus(%q, %q, %+v) accepted", bad.source, bad.resource, bad.c)
		}
	}
}

func TestEventSchemasRefuse(t *testing.T) {
	t.Parallel()
	cmd, err := ParseCommand(rc, command(rc, examples[rc]), testNow)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := NewSuccess("w", cmd.Origin(), Success{HTTPStatus: 202}, testNow)
	for name, e := range map[string]func(*Event){
		"no causationid":    func(e *Event) { e.CausationID = "" },
		"a command type":    func(e *Event) { e.Type = "reservation.capture.requested" },
		"failure data":      func(e *Event) { e.Data = json.RawMessage(`{"reason": "bogus"}`) },
		"a replayof":        func(e *Event) { e.ReplayOf = "x" },
		"a 4xx success":     func(e *Event) { e.Data = json.RawMessage(`{"httpStatus": 400, "message": "", "response": null}`) },
		"a string response": func(e *Event) { e.Data = json.RawMessage(`{"httpStatus": 200, "message": "", "response": "x"}`) },
	} {
		bad := good
		e(&bad)
		b, _ := json.Marshal(bad)
		if ok, _ := schemaAccepts(t, ResultSchema, b); ok {
			t.Errorf("%s: the result schema accepts %s", name, b)
		}
	}
}

func TestNewID(t *testing.T) {
	t.Parallel()
	v4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, b := NewID(), NewID()
	if !v4.MatchString(a) || !v4.MatchString(b) || a == b {
		t.Errorf("NewID gave %q and %q, want two distinct version 4 UUIDs", a, b)
	}
}

// TestInvalidCommandID: the invalid_command failure is named by the command's own id, not by its
// idempotency key (CONTRACT.md section 3; issue 11, item 6), so that two different invalid
// commands sharing a key each get their failure stored; the same bytes always give the same id.
func TestInvalidCommandID(t *testing.T) {
	t.Parallel()
	bad := edit(t, examples[rc], "grandtotal", `55`)
	withID := func(id string) string { return edit(t, string(command(rc, bad)), "id", id) }
	cases := []struct{ name, raw string }{
		{"command A", withID(`"cmd-A"`)},
		{"command B, same key", withID(`"cmd-B"`)},
		{"command A replayed", edit(t, withID(`"cmd-A"`), "replayof", `"failure-1"`)},
		{"no id, key k, first", `{"idempotencykey": "k", "data": {"reservationUuid": "RES1"}}`},
		{"no id, key k, second", `{"idempotencykey": "k", "data": {"reservationUuid": "RES2"}}`},
		{"no id, no key", `{"data": {"reservationUuid": "RES3"}}`},
	}
	ids := map[string]string{}
	for _, c := range cases {
		_, err := ParseCommand(rc, []byte(c.raw), testNow)
		var inv *InvalidError
		if !errors.As(err, &inv) {
			t.Fatalf("%s: %v, want an InvalidError", c.name, err)
		}
		failure := func() Event {
			e, err := NewFailure("frontpay-worker", OriginOf(rc, []byte(c.raw)), inv.Failure([]byte(c.raw)), testNow)
			checkEvent(t, ResultSchema, e, err)
			return e
		}
		e := failure()
		if again := failure(); again.ID != e.ID {
			t.Errorf("%s: the same bytes give the ids %s and %s", c.name, e.ID, again.ID)
		}
		if other, dup := ids[e.ID]; dup {
			t.Errorf("%s and %s share the failure id %s: the result stream would keep one", c.name, other, e.ID)
		}
		ids[e.ID] = c.name
	}
}
