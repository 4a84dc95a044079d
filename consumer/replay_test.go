package consumer

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/client"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
)

// selectReplays runs SelectReplays with f on the harness's topology.
func (h *harness) selectReplays(t *testing.T, f ReplayFilter) *ReplaySelection {
	t.Helper()
	sel, err := h.topo.SelectReplays(t.Context(), h.js, f, nil)
	if err != nil {
		t.Fatalf("select replays %+v: %v", f, err)
	}
	return sel
}

// replayKeys are the keys of the selected failures, in their order.
func replayKeys(sel *ReplaySelection) []string {
	var keys []string
	for _, e := range sel.Selected {
		keys = append(keys, e.Event.IdempotencyKey)
	}
	return keys
}

// replayOne selects the failure of key, replays it and returns the replay's result.
func (h *harness) replayOne(t *testing.T, key string) received {
	t.Helper()
	sel := h.selectReplays(t, ReplayFilter{Key: key})
	if len(sel.Selected) != 1 {
		t.Fatalf("replay of %s: selected %v, skipped %+v", key, replayKeys(sel), sel.Skipped)
	}
	id, err := h.topo.Replay(t.Context(), h.js, sel.Selected[0])
	if err != nil {
		t.Fatal(err)
	}
	return h.await(t, byCause(id), "the result of the replay of "+key)
}

// TestReplaySelection fails commands of every kind a replay must tell apart, forges a failure
// event, and checks what SelectReplays selects, with each filter; then replays the selection and
// checks that the worker lets every replay through, and that nothing is selected again.
func TestReplaySelection(t *testing.T) {
	t.Parallel()
	h := setup(t)
	r := h.paid(t)
	details := map[string]any{"reservationUuid": r.UUID}
	failed := func(key string, reason schemas.Reason) received {
		t.Helper()
		res := h.await(t, byKey(key), "the failure of "+key)
		failure(t, res, reason)
		return res
	}

	// While the API fails every details call: upstream_unavailable, recorded.
	h.sb.SetFault(frontpay.ReservationDetails, sandbox.Fault{ErrorShare: 1})
	h.publish(t, frontpay.ReservationDetails, details, client.Key("a"))
	failed("a", schemas.UpstreamUnavailable)
	afterA := time.Now()
	for _, key := range []string{"b", "c", "twice", "ok", "busy"} {
		h.publish(t, frontpay.ReservationDetails, details, client.Key(key))
		failed(key, schemas.UpstreamUnavailable)
	}
	c := failed("c", schemas.UpstreamUnavailable)
	firstOfTwice := failed("twice", schemas.UpstreamUnavailable)
	// A replay that fails again: its failure is the one the key's record holds now.
	secondOfTwice := h.replayOne(t, "twice")
	failure(t, secondOfTwice, schemas.UpstreamUnavailable)
	h.sb.SetFault(frontpay.ReservationDetails, sandbox.Fault{})
	// A replay that succeeds: the key has succeeded since its failure.
	success(t, h.replayOne(t, "ok"))

	// A submit whose answer is lost: outcome_unknown, recorded.
	h.sb.SetFault(frontpay.ReservationSubmit, sandbox.Fault{DropShare: 1})
	h.publish(t, frontpay.ReservationSubmit, submitData("replay-unknown"), client.Key("s"))
	failed("s", schemas.OutcomeUnknown)
	h.sb.SetFault(frontpay.ReservationSubmit, sandbox.Fault{})
	// An invalid command: its failure is never recorded.
	h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": r.UUID, "bogus": 1}, client.Key("invalid"))
	failed("invalid", schemas.InvalidCommand)
	// Another worker has started a new generation of busy (a replay under way): the failure on
	// the stream is no longer the record's.
	busy, err := (&store{kv: h.kv}).load(t.Context(), "busy")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := busy.replay(t.Context(), "worker-elsewhere", "replay-elsewhere", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A failure event that no worker recorded, carrying a capture: replayed, it would be a new
	// key to the worker, and a capture at Front Payment.
	testworld.ForgeFailure(t, h.js, h.topo.Prefix, frontpay.ReservationCapture, "forged", captureData(r, 100, "forged capture"))
	h.await(t, byKey("forged"), "the forged failure on the result stream")

	// Six keys failed, one of them twice, and ok succeeded after its failure; two more failures
	// and the forged one: eleven result events.
	testworld.WaitFor(t, func() bool { return len(h.results.all()) == 11 }, "eleven result events")
	sel := h.selectReplays(t, ReplayFilter{})
	if got, want := replayKeys(sel), []string{"a", "b", "c", "twice"}; !slices.Equal(got, want) {
		t.Errorf("selected %v, want %v", got, want)
	}
	if want := (ReplaySkipped{Succeeded: 1, Unknown: 1, NotRecorded: 3}); sel.Skipped != want {
		t.Errorf("skipped %+v, want %+v", sel.Skipped, want)
	}
	if sel.Scanned != 11 || sel.Failed != 8 || sel.Matched != 8 {
		t.Errorf("scanned %d, failed %d, matched %d; want 11, 8, 8", sel.Scanned, sel.Failed, sel.Matched)
	}
	if i := slices.IndexFunc(sel.Selected, func(e FailureEvent) bool { return e.Event.IdempotencyKey == "twice" }); i < 0 ||
		sel.Selected[i].Event.ID != secondOfTwice.Event.ID {
		t.Errorf("twice: want its second failure %s selected", secondOfTwice.Event.ID)
	}

	t.Run("filters", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			filter ReplayFilter
			want   []string
			skip   ReplaySkipped
		}{
			{"limit", ReplayFilter{Limit: 2}, []string{"a", "b"}, ReplaySkipped{Succeeded: 1, Unknown: 1, NotRecorded: 3, OverLimit: 2}},
			{"key", ReplayFilter{Key: "b"}, []string{"b"}, ReplaySkipped{}},
			{"event id", ReplayFilter{EventID: c.Event.ID}, []string{"c"}, ReplaySkipped{}},
			{"an older failure's id", ReplayFilter{EventID: firstOfTwice.Event.ID}, nil, ReplaySkipped{}},
			{"outcome_unknown named", ReplayFilter{Reason: schemas.OutcomeUnknown}, []string{"s"}, ReplaySkipped{}},
			{"another reason", ReplayFilter{Reason: schemas.BusinessRule}, nil, ReplaySkipped{}},
			{"invalid_command named", ReplayFilter{Reason: schemas.InvalidCommand}, nil, ReplaySkipped{NotRecorded: 1}},
			{"operation", ReplayFilter{Ops: []frontpay.Operation{frontpay.ReservationCapture}}, nil, ReplaySkipped{NotRecorded: 1}},
			{"until", ReplayFilter{To: afterA}, []string{"a"}, ReplaySkipped{}},
			{"since", ReplayFilter{From: afterA, Ops: []frontpay.Operation{frontpay.ReservationDetails}}, []string{"b", "c", "twice"},
				ReplaySkipped{Succeeded: 1, NotRecorded: 2}},
			{"since after the last", ReplayFilter{From: time.Now()}, nil, ReplaySkipped{}},
		} {
			sel := h.selectReplays(t, tc.filter)
			if got := replayKeys(sel); !slices.Equal(got, tc.want) || sel.Skipped != tc.skip {
				t.Errorf("%s: selected %v, skipped %+v; want %v, %+v", tc.name, got, sel.Skipped, tc.want, tc.skip)
			}
		}
	})

	t.Run("recorded", func(t *testing.T) {
		// Only the failure the record ended with, on its subject and byte for byte.
		rec, err := (&store{kv: h.kv}).load(t.Context(), "twice")
		if err != nil {
			t.Fatal(err)
		}
		event := func(r received) FailureEvent {
			e, ok := h.topo.resultEvent(r.Subject, r.Data, time.Now())
			if !ok {
				t.Fatalf("not a result event: %s", r.Data)
			}
			return e
		}
		second := event(secondOfTwice)
		altered := second
		altered.raw = bytes.Replace(second.raw, []byte(`"upstream_unavailable"`), []byte(`"business_rule"`), 1)
		elsewhere := second
		elsewhere.subject = schemas.ResultSubject(h.topo.Prefix, frontpay.ReservationCapture, false)
		for _, tc := range []struct {
			name string
			e    FailureEvent
			want bool
		}{
			{"the last failure", second, true},
			{"the failure before it", event(firstOfTwice), false},
			{"the last failure, altered", altered, false},
			{"the last failure, on another subject", elsewhere, false},
		} {
			if got := rec.rec.endedWith(tc.e); got != tc.want {
				t.Errorf("%s: endedWith %v, want %v", tc.name, got, tc.want)
			}
		}
	})

	// Replayed once the API is back, each is let through and succeeds; the forged capture was not
	// selected, so nothing captured it.
	var ids []string
	for _, e := range sel.Selected {
		id, err := h.topo.Replay(t.Context(), h.js, e)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for i, id := range ids {
		res := h.await(t, byCause(id), "the result of the replay of "+sel.Selected[i].Event.IdempotencyKey)
		success(t, res)
		if res.Event.IdempotencyKey != sel.Selected[i].Event.IdempotencyKey {
			t.Errorf("replay %s answered for key %s", id, res.Event.IdempotencyKey)
		}
	}
	if e := h.marked("forged capture"); len(e) != 0 {
		t.Errorf("the forged failure's capture reached Front Payment: %+v", e)
	}
	if n := h.calls.Count(frontpay.ReservationCapture, r.UUID); n != 0 {
		t.Errorf("%d captures sent", n)
	}
	testworld.WaitFor(t, func() bool { return len(h.results.all()) == 15 }, "the four replays' results")
	again := h.selectReplays(t, ReplayFilter{})
	if want := (ReplaySkipped{Succeeded: 5, Unknown: 1, NotRecorded: 3}); len(again.Selected) != 0 || again.Skipped != want {
		t.Errorf("after the replays: selected %v, skipped %+v; want none, %+v", replayKeys(again), again.Skipped, want)
	}
}

// TestReplayCommand checks the replay of a failure: the command it carries, with the same key,
// replayof naming the failure, a new time, and an id that is the same for every replay of it.
func TestReplayCommand(t *testing.T) {
	c := newCommand(t, frontpay.ReservationRefund, map[string]any{"reservationUuid": "RES1"}, client.Key("refund-9"))
	e := FailureEvent{
		Op:    frontpay.ReservationRefund,
		Event: schemas.Event{ID: "failure-1", IdempotencyKey: "refund-9"},
		Data:  schemas.Failure{Reason: schemas.UpstreamUnavailable, Command: c.Raw},
	}
	later := time.Now().Add(time.Hour)
	id, raw, err := replayCommand(e, later)
	if err != nil {
		t.Fatal(err)
	}
	var orig, got schemas.Event
	if err := json.Unmarshal(c.Raw, &orig); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != id || id == orig.ID || got.IdempotencyKey != "refund-9" || got.ReplayOf != "failure-1" ||
		got.Time != later.UTC().Format(time.RFC3339) {
		t.Errorf("replay %s of %s:\n%s", id, c.Raw, raw)
	}
	if got.Source != orig.Source || got.Type != orig.Type || got.CorrelationID != orig.CorrelationID || !bytes.Equal(got.Data, orig.Data) {
		t.Errorf("the replay changed the command:\n%s\n%s", c.Raw, raw)
	}
	if again, _, _ := replayCommand(e, time.Now()); again != id {
		t.Errorf("two replays of one failure: ids %s and %s", id, again)
	}
	if other, _, _ := replayCommand(FailureEvent{Event: schemas.Event{ID: "failure-2"}, Data: e.Data}, time.Now()); other == id {
		t.Errorf("replays of two failures share the id %s", id)
	}
	for _, cmd := range []string{"null", `"text"`, `[1]`} {
		if _, _, err := replayCommand(FailureEvent{Event: e.Event, Data: schemas.Failure{Command: json.RawMessage(cmd)}}, time.Now()); err == nil {
			t.Errorf("a failure carrying %s replayed", cmd)
		}
	}
}
