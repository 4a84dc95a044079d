package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/client"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
)

// person is a customer's personal data, each value recognisable.
type person struct{ name, email, msisdn, street string }

func (p person) values() []string { return []string{p.name, p.email, p.msisdn, p.street} }

// submitOf is submitData for the customer p.
func submitOf(p person) map[string]any {
	d := submitData("customer " + p.name)
	d["customerDetails"] = map[string]any{
		"type": "private", "countryCode": "+47", "msisdn": p.msisdn, "email": p.email, "name": p.name,
		"preferredLanguage": "no", "address": map[string]any{"street": p.street, "zip": "0155", "city": "Oslo", "country": "NO"},
	}
	return d
}

// stored is every message of every stream of the server (the state bucket's stream included),
// by "<stream> <sequence>", as its subject, headers and data.
func (h *harness) stored(t *testing.T) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testworld.Patience)
	defer cancel()
	out := map[string]string{}
	names := h.js.StreamNames(ctx)
	for name := range names.Name() {
		s, err := h.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			} else if err != nil {
				t.Fatalf("%s %d: %v", name, seq, err)
			}
			out[fmt.Sprintf("%s %d", name, seq)] = fmt.Sprintf("%s %v %s", m.Subject, m.Header, m.Data)
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// holding returns the places of stored that hold one of values.
func holding(stored map[string]string, values ...string) []string {
	var out []string
	for place, content := range stored {
		if slices.ContainsFunc(values, func(v string) bool { return strings.Contains(content, v) }) {
			out = append(out, place)
		}
	}
	slices.Sort(out)
	return out
}

// forget plans and applies a forget of target and returns the plan.
func (h *harness) forget(t *testing.T, target ForgetTarget) *ForgetPlan {
	t.Helper()
	p, err := PlanForget(t.Context(), h.js, h.topo, target, nil)
	if err != nil {
		t.Fatalf("plan forget: %v", err)
	}
	err = p.Apply(t.Context(), h.js, func(it ForgetItem, o ForgetOutcome) {
		if o != ForgetErased && o != ForgetScrubbed {
			t.Errorf("%s %d %s: %s", it.Stream, it.Seq, it.Subject, o)
		}
	})
	if err != nil {
		t.Fatalf("apply forget: %v", err)
	}
	return p
}

// loadRecord reads the record of an idempotency key.
func (h *harness) loadRecord(t *testing.T, key string) record {
	t.Helper()
	c, err := (&store{kv: h.kv}).load(t.Context(), key)
	if err != nil || c.rev == 0 {
		t.Fatalf("record of %s: %v (revision %d)", key, err, c.rev)
	}
	return c.rec
}

// TestForgetReservation stores a customer's personal data in every place the worker keeps it
// (a submit and its success, a details answer, a cancel whose note names her, a resend the API
// refuses, an invalid resend, a submit reusing the key with other data, a history answer that
// lists her reservation, a dead letter, and the records), forgets the reservation, and then finds her data nowhere in the streams or the
// bucket, while another customer's reservation is untouched. A duplicate of the forgotten
// submit still gets its result, with the same id and no second call; its command, which
// carries the data again, is found by a second forget through the record. A command not yet
// answered is kept.
func TestForgetReservation(t *testing.T) {
	t.Parallel()
	h := setup(t)
	kari := person{"Kari Nordmann", "kari@example.no", "46567468", "Storgata 1"}
	ola := person{"Ola Nordmann", "ola@example.no", "99887766", "Kongens gate 5"}

	dataA := submitOf(kari)
	submitA := h.publish(t, frontpay.ReservationSubmit, dataA)
	resultA := h.resultOf(t, submitA)
	var created frontpay.SubmitReservationResult
	if err := json.Unmarshal(success(t, resultA).Response, &created); err != nil || created.ReservationUUID == "" {
		t.Fatalf("submit response %s: %v", resultA.Data, err)
	}
	a := created.ReservationUUID
	if err := h.sb.Pay(a); err != nil {
		t.Fatal(err)
	}
	success(t, h.resultOf(t, h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": a})))
	success(t, h.resultOf(t, h.publish(t, frontpay.ReservationCancel, noteData(a, kari.name+" asked us to cancel"))))
	resend := map[string]any{"reservationUuid": a, "countryCode": "+47", "msisdn": kari.msisdn, "email": kari.email}
	failure(t, h.resultOf(t, h.publish(t, frontpay.ReservationResend, resend)), schemas.BusinessRule)
	resend["msisdn"] = "12"
	failure(t, h.resultOf(t, h.publish(t, frontpay.ReservationResend, resend)), schemas.InvalidCommand)
	conflicting := submitOf(kari)
	conflicting["customerNotes"] = "another note"
	conflict := h.publish(t, frontpay.ReservationSubmit, conflicting, client.Key(submitA.Key))
	failure(t, h.await(t, byCause(conflict.ID), "the conflict's failure"), schemas.IdempotencyConflict)
	// The history answer lists every reservation's events, hers among them.
	success(t, h.resultOf(t, h.publish(t, frontpay.ReservationHistory, map[string]any{})))
	junk := nats.NewMsg(schemas.CommandSubject("", frontpay.ReservationResend))
	junk.Data = []byte("resend " + a + " to " + kari.email)
	testworld.Publish(t, h.js, junk)

	submitB := h.publish(t, frontpay.ReservationSubmit, submitOf(ola))
	var createdB frontpay.SubmitReservationResult
	if err := json.Unmarshal(success(t, h.resultOf(t, submitB)).Response, &createdB); err != nil {
		t.Fatal(err)
	}
	b := createdB.ReservationUUID
	success(t, h.resultOf(t, h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": b})))
	testworld.WaitFor(t, func() bool { return h.consumerIdle(t) }, "every command to be answered")
	testworld.WaitFor(t, func() bool {
		for p := range h.stored(t) {
			if strings.HasPrefix(p, "FRONTPAY_DEADLETTER ") {
				return true
			}
		}
		return false
	}, "the dead letter")

	before := h.stored(t)
	// Her data is in the commands, the results, the dead letter and the records: the search
	// below finds what it looks for.
	placesA := holding(before, kari.values()...)
	for _, where := range []string{"FRONTPAY_COMMANDS ", "FRONTPAY_RESULTS ", "FRONTPAY_DEADLETTER ", "KV_frontpay_state "} {
		if !slices.ContainsFunc(placesA, func(p string) bool { return strings.HasPrefix(p, where) }) {
			t.Fatalf("no place in %s holds her data before forget: %v", where, placesA)
		}
	}
	recA := h.loadRecord(t, submitA.Key)

	plan := h.forget(t, ForgetTarget{Reservations: []string{a}})
	if n := plan.Kept(); n != 0 {
		t.Errorf("forget kept %d item(s) with every command answered: %+v", n, plan.Items)
	}
	after := h.stored(t)
	if left := holding(after, kari.values()...); len(left) > 0 {
		for _, p := range left {
			t.Errorf("after forget, %s holds her data: %s", p, after[p])
		}
	}
	// Nothing of the other customer's changed.
	for _, p := range holding(before, append(ola.values(), b)...) {
		if after[p] != before[p] {
			t.Errorf("forget changed %s, which is the other customer's:\nbefore %s\nafter  %s", p, before[p], after[p])
		}
	}
	if len(holding(after, ola.values()...)) < 3 {
		t.Errorf("the other customer's data is in %v only", holding(after, ola.values()...))
	}

	// The record keeps what money safety needs, and names the reservation it created.
	scrubbed := h.loadRecord(t, submitA.Key)
	if scrubbed.State != recA.State || scrubbed.Op != recA.Op || scrubbed.Fingerprint != recA.Fingerprint || scrubbed.Gen != recA.Gen ||
		scrubbed.EventID != recA.EventID || scrubbed.Subject != recA.Subject || scrubbed.CommandID != recA.CommandID ||
		scrubbed.Attempts != recA.Attempts || scrubbed.Resource != "reservation."+a {
		t.Errorf("record before forget %+v\nafter %+v", recA, scrubbed)
	}

	// A duplicate of the forgotten submit: the recorded event, without her data, and no call.
	calls := h.calls.Count(frontpay.ReservationSubmit, "")
	dup := h.send(t, newCommand(t, frontpay.ReservationSubmit, dataA, client.Key(submitA.Key)), "")
	testworld.WaitFor(t, func() bool { return len(h.sent.find(byKey(submitA.Key))) >= 3 }, "the duplicate's result")
	testworld.WaitFor(t, func() bool { return h.consumerIdle(t) }, "the duplicate to be answered")
	if n := h.calls.Count(frontpay.ReservationSubmit, ""); n != calls {
		t.Errorf("the duplicate made %d submit call(s)", n-calls)
	}
	var again *received
	for _, r := range h.sent.find(byKey(submitA.Key)) {
		if r.Event.ID == resultA.Event.ID && !bytes.Equal(r.Data, resultA.Data) {
			again = &r
		}
	}
	if again == nil {
		t.Fatalf("no new result with the submit's id %s after forget (%d publications of its key)", resultA.Event.ID, len(h.sent.find(byKey(submitA.Key))))
	}
	if s := success(t, *again); string(s.Response) != "null" || again.Event.CausationID != submitA.ID || again.Event.Type != resultA.Event.Type {
		t.Errorf("the duplicate got %s", again.Data)
	}
	if left := holding(map[string]string{"the duplicate's result": string(again.Data)}, kari.values()...); len(left) > 0 {
		t.Errorf("the duplicate's result holds her data: %s", again.Data)
	}

	// Its command carries her data again: a second forget finds it through the record.
	if !slices.ContainsFunc(holding(h.stored(t), kari.values()...), func(p string) bool { return p == fmt.Sprintf("FRONTPAY_COMMANDS %d", dup.Seq) }) {
		t.Fatalf("the duplicate's command is not stored")
	}
	h.forget(t, ForgetTarget{Reservations: []string{a}})
	if left := holding(h.stored(t), kari.values()...); len(left) > 0 {
		t.Errorf("after the second forget, %v hold her data", left)
	}

	// A command the worker has not answered yet is kept.
	h.worker.stop(t)
	late := h.publish(t, frontpay.ReservationResend, map[string]any{"reservationUuid": a, "email": kari.email})
	p, err := PlanForget(t.Context(), h.js, h.topo, ForgetTarget{Reservations: []string{a}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(p.Items, func(it ForgetItem) bool { return it.Seq == late.Seq && !it.Record }); i < 0 || p.Items[i].Kept == "" {
		t.Fatalf("the unanswered command %d is not kept: %+v", late.Seq, p.Items)
	}
	if err := p.Apply(t.Context(), h.js, func(ForgetItem, ForgetOutcome) {}); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.stored(t)[fmt.Sprintf("FRONTPAY_COMMANDS %d", late.Seq)]; !ok {
		t.Error("forget erased a command the worker had not answered")
	}
}

// TestForgetByKey forgets an order.create, whose answer names no order, by its idempotency key.
func TestForgetByKey(t *testing.T) {
	t.Parallel()
	h := setup(t)
	c := h.publish(t, frontpay.OrderCreate, orderData("for Ola"))
	success(t, h.resultOf(t, c))
	other := h.publish(t, frontpay.OrderCreate, orderData("for Ola too"))
	success(t, h.resultOf(t, other))
	testworld.WaitFor(t, func() bool { return h.consumerIdle(t) }, "the commands to be answered")
	before := h.stored(t)

	h.forget(t, ForgetTarget{Keys: []string{c.Key}})
	after := h.stored(t)
	if left := holding(after, "for Ola\""); len(left) > 0 {
		t.Errorf("after forget, %v hold the order's data", left)
	}
	if len(holding(after, "ola@example.no")) == 0 {
		t.Error("forget erased the other order too")
	}
	for _, p := range holding(before, "for Ola too") {
		if after[p] != before[p] {
			t.Errorf("forget changed %s, the other order's", p)
		}
	}
}

// TestForgetMerchantsKey: with several merchants, --key names a key of one merchant: the same key
// at another merchant is another order, and forget leaves it alone.
func TestForgetMerchantsKey(t *testing.T) {
	t.Parallel()
	h := setup(t, withMerchants())
	h.startUnknownMerchants(t)
	h.startMerchant(t, "shop1")
	h.startMerchant(t, "shop2")
	for _, m := range []string{"shop1", "shop2"} {
		c := h.send(t, atMerchant(newCommand(t, frontpay.OrderCreate, orderData("for Kari at "+m), client.Key("order-1")), m), "")
		success(t, h.await(t, byCause(c.ID), m+"'s result"))
	}
	testworld.WaitFor(t, func() bool {
		return h.consumerIdleOf(t, ConsumerFor("shop1")) && h.consumerIdleOf(t, ConsumerFor("shop2")) &&
			h.consumerIdleOf(t, UnknownMerchantsConsumer)
	}, "the commands to be answered")
	before := h.stored(t)

	p := h.forget(t, ForgetTarget{Keys: []string{"order-1"}, Merchant: "shop1"})
	if p.Kept() != 0 {
		t.Errorf("kept %d", p.Kept())
	}
	after := h.stored(t)
	if left := holding(after, "for Kari at shop1"); len(left) > 0 {
		t.Errorf("after forget, %v hold shop1's order", left)
	}
	kept := holding(before, "for Kari at shop2")
	if len(kept) == 0 {
		t.Fatal("shop2's order stored nowhere")
	}
	for _, place := range kept {
		if after[place] != before[place] {
			t.Errorf("forget changed %s, shop2's", place)
		}
	}
}

func TestContainsWord(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"RES123", true}, {`{"reservationUuid":"RES123"}`, true}, {"resend RES123 now", true},
		{"RES1234", false}, {"XRES123", false}, {"RES123-2", false}, {"RES1234 RES123", true}, {"", false},
	} {
		if got := containsWord([]byte(tc.text), "RES123"); got != tc.want {
			t.Errorf("containsWord(%q) = %v", tc.text, got)
		}
	}
}
