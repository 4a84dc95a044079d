package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/schemas"
)

// fixture is a small run that passes every check: a submit, a capture, a refund of it, a
// resend and a cancel on another reservation, each with its result and its effect.
type fixture struct {
	cmds      []Command
	results   []Result
	ledger    []sandbox.Effect
	merchants map[string]string // reservation ("" for the submit) → merchant; nil: one merchant
}

func newFixture(t *testing.T) *fixture { return buildFixture(t, nil) }

// newMerchantsFixture is the fixture in a deployment of two merchants: RES1 and the submit's
// RES3 are shop1's, RES2 is shop2's.
func newMerchantsFixture(t *testing.T) *fixture {
	return buildFixture(t, map[string]string{"": "shop1", "RES1": "shop1", "RES3": "shop1", "RES2": "shop2"})
}

func buildFixture(t *testing.T, merchants map[string]string) *fixture {
	f := &fixture{merchants: merchants}
	f.cmd("k-submit", frontpay.ReservationSubmit, "", "")
	f.cmd("k-capture", frontpay.ReservationCapture, "RES1", "")
	f.cmd("k-refund", frontpay.ReservationRefund, "RES1", refundMarker("CAP1", 4000))
	f.cmd("k-resend", frontpay.ReservationResend, "RES1", "")
	f.cmd("k-cancel", frontpay.ReservationCancel, "RES2", "")
	f.cmds[1].Copies = 2 // published twice

	f.succeed(t, "k-submit", map[string]string{"reservationUuid": "RES3"})
	f.succeed(t, "k-capture", map[string]string{"uuid": "CAP1"})
	f.succeed(t, "k-capture", map[string]string{"uuid": "CAP1"}) // the duplicate's copy: the same event
	f.succeed(t, "k-refund", nil)
	f.succeed(t, "k-resend", nil)
	f.succeed(t, "k-cancel", nil)

	f.effect("customer.pay", "RES1", "", 0, "")
	f.effect(string(frontpay.ReservationSubmit), "RES3", "", 50000, `{"referenceNo":"k-submit"}`)
	f.effect(string(frontpay.ReservationCapture), "RES1", "CAP1", 10000, `{"grandTotal":100,"additionalText":"k-capture"}`)
	f.effect(string(frontpay.ReservationRefund), "RES1", "CAP1", 4000, `{"type":"reservation","grandTotal":40}`)
	f.effect(string(frontpay.ReservationResend), "RES1", "", 0, `{"email":"k-resend@example.no"}`)
	f.effect(string(frontpay.ReservationCancel), "RES2", "", 0, `{"note":"k-cancel"}`)
	return f
}

func (f *fixture) cmd(key string, op frontpay.Operation, res, marker string) {
	if marker == "" {
		marker = keyMarker(op, key)
	}
	f.cmds = append(f.cmds, Command{Key: key, Op: op, Merchant: f.merchants[res], Reservation: res, Order: len(f.cmds) + 1, Marker: marker, Copies: 1})
}

func (f *fixture) find(key string) Command {
	for _, c := range f.cmds {
		if c.Key == key {
			return c
		}
	}
	panic("no command " + key)
}

func (f *fixture) origin(key string) schemas.Origin {
	c := f.find(key)
	return schemas.Origin{Op: c.Op, CommandID: "id-" + key, Key: key, Resource: c.Reservation, Merchant: c.Merchant}
}

func (f *fixture) add(ev schemas.Event) {
	subject := ev.Type
	if ev.Merchant != "" {
		subject = merchantsPrefix + ev.Merchant + "." + ev.Type
	}
	f.results = append(f.results, Result{Seq: uint64(len(f.results) + 1), Subject: subject, Event: ev})
}

func (f *fixture) succeed(t *testing.T, key string, response any) {
	raw, _ := json.Marshal(response)
	ev, err := schemas.NewSuccess("test", f.origin(key), schemas.Success{HTTPStatus: 202, Message: "ok", Response: raw}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	f.add(ev)
}

func (f *fixture) fail(t *testing.T, key string, reason schemas.Reason) {
	ev, err := schemas.NewFailure("test", f.origin(key), schemas.Failure{Reason: reason, Message: "m", Errors: json.RawMessage("null"), Command: json.RawMessage("{}")}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	f.add(ev)
}

func (f *fixture) effect(op, uuid, ref string, cents int64, body string) {
	e := sandbox.Effect{Seq: len(f.ledger) + 1, Op: op, UUID: uuid, Reference: ref, Cents: cents}
	if f.merchants != nil {
		e.Token = merchantToken(f.merchants[uuid])
	}
	if body != "" {
		e.Body = json.RawMessage(body)
	}
	f.ledger = append(f.ledger, e)
}

// drop removes the results of key, or its effects.
func (f *fixture) dropResults(key string) {
	f.results = slices.DeleteFunc(f.results, func(r Result) bool { return r.Event.IdempotencyKey == key })
}

func (f *fixture) dropEffects(op frontpay.Operation) {
	f.ledger = slices.DeleteFunc(f.ledger, func(e sandbox.Effect) bool { return e.Op == string(op) })
}

func failedChecks(v *Verification) []string {
	var out []string
	for _, c := range v.Checks {
		if !c.OK() {
			out = append(out, c.Name)
		}
	}
	return out
}

// TestVerifyFindsEachFault breaks a clean run in one way at a time and expects exactly the
// checks named to fail: a check that cannot fail would show here.
func TestVerifyFindsEachFault(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(t *testing.T, f *fixture)
		want   []string // prefixes of the names of the checks that must fail
	}{
		{"clean", func(*testing.T, *fixture) {}, nil},
		{"doubled capture", func(_ *testing.T, f *fixture) {
			f.effect(string(frontpay.ReservationCapture), "RES1", "CAP2", 10000, `{"additionalText":"k-capture"}`)
		}, []string{"no money effect doubled"}},
		{"lost command", func(_ *testing.T, f *fixture) { f.dropResults("k-cancel") }, []string{"no command lost"}},
		{"second distinct result", func(t *testing.T, f *fixture) { f.fail(t, "k-capture", schemas.UpstreamUnavailable) },
			[]string{"no command lost"}},
		{"result without command", func(t *testing.T, f *fixture) {
			f.cmds = slices.DeleteFunc(f.cmds, func(c Command) bool { return c.Key == "k-resend" })
			f.dropEffects(frontpay.ReservationResend)
		}, []string{"no result without a command"}},
		{"effect without command", func(_ *testing.T, f *fixture) {
			f.effect(string(frontpay.ReservationCharge), "RES1", "CHG9", 500, `{"additionalText":"nobody"}`)
		}, []string{"no effect without a command"}},
		{"refund of an unknown amount", func(_ *testing.T, f *fixture) {
			f.ledger[3].Cents = 4001
		}, []string{"every success has its effect", "no effect without a command"}},
		{"success without effect", func(_ *testing.T, f *fixture) { f.dropEffects(frontpay.ReservationCancel) },
			[]string{"every success has its effect"}},
		{"capture names another payment", func(_ *testing.T, f *fixture) { f.ledger[2].Reference = "CAP7" },
			[]string{"every success has its effect"}},
		{"failure with effect", func(t *testing.T, f *fixture) {
			f.dropResults("k-cancel")
			f.fail(t, "k-cancel", schemas.BusinessRule)
		}, []string{"no effect for a failed command", "no failure but those faults cause"}},
		{"outcome_unknown capture", func(t *testing.T, f *fixture) {
			f.dropResults("k-capture")
			f.fail(t, "k-capture", schemas.OutcomeUnknown)
		}, []string{"no outcome_unknown for"}},
		{"outcome_unknown submit is accepted", func(t *testing.T, f *fixture) {
			f.dropResults("k-submit")
			f.fail(t, "k-submit", schemas.OutcomeUnknown)
		}, nil},
		{"upstream_unavailable without effect is accepted", func(t *testing.T, f *fixture) {
			f.dropResults("k-cancel")
			f.fail(t, "k-cancel", schemas.UpstreamUnavailable)
			f.dropEffects(frontpay.ReservationCancel)
		}, nil},
		{"resend twice is allowed", func(_ *testing.T, f *fixture) {
			f.effect(string(frontpay.ReservationResend), "RES1", "", 0, `{"email":"k-resend@example.no"}`)
		}, nil},
		{"effects out of publish order", func(_ *testing.T, f *fixture) {
			f.ledger[2], f.ledger[3] = f.ledger[3], f.ledger[2] // the refund before its capture
		}, []string{"each reservation's effects applied in publish order"}},
		{"effect on another reservation", func(_ *testing.T, f *fixture) { f.ledger[5].UUID = "RES9" },
			[]string{"no effect without a command"}},
		{"body without marker", func(_ *testing.T, f *fixture) { f.ledger[5].Body = json.RawMessage(`{"note":""}`) },
			[]string{"every success has its effect", "no effect without a command"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.mutate(t, f)
			v := Verify(f.cmds, f.results, f.ledger)
			got := failedChecks(v)
			if len(got) != len(tc.want) {
				t.Fatalf("failed checks %q, want %q\n%s", got, tc.want, problems(v))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Fatalf("failed checks %q, want %q\n%s", got, tc.want, problems(v))
				}
			}
		})
	}
}

// TestVerifyMerchants breaks a clean run of two merchants in one way at a time: a result or an
// effect of another merchant's must fail the merchants' check, and only it.
func TestVerifyMerchants(t *testing.T) {
	const check = "each merchant's commands answered on its own subjects"
	for _, tc := range []struct {
		name   string
		mutate func(f *fixture)
		fails  bool
	}{
		{"clean", func(*fixture) {}, false},
		{"result names another merchant", func(f *fixture) { f.results[1].Event.Merchant = "shop2" }, true},
		{"result without merchant", func(f *fixture) { f.results[5].Event.Merchant = "" }, true},
		{"result on another merchant's subject", func(f *fixture) {
			f.results[4].Subject = merchantsPrefix + "shop2." + f.results[4].Event.Type
		}, true},
		{"effect with another merchant's token", func(f *fixture) { f.ledger[2].Token = merchantToken("shop2") }, true},
		{"effect with a reader's token", func(f *fixture) { f.ledger[5].Token = readerToken("shop2") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newMerchantsFixture(t)
			tc.mutate(f)
			v := Verify(f.cmds, f.results, f.ledger)
			got := failedChecks(v)
			want := []string(nil)
			if tc.fails {
				want = []string{check}
			}
			if len(got) != len(want) || (len(want) == 1 && !strings.HasPrefix(got[0], check)) {
				t.Fatalf("failed checks %q, want %q\n%s", got, want, problems(v))
			}
		})
	}
	// Without merchants the check is not made at all.
	for _, c := range Verify(newFixture(t).cmds, nil, nil).Checks {
		if strings.HasPrefix(c.Name, check) {
			t.Errorf("a one-merchant run has the check %q", c.Name)
		}
	}
}

func TestSpreadBounds(t *testing.T) {
	for _, tc := range []struct{ merchants, replicas, lo, hi int }{
		{30, 3, 8, 12}, {30, 2, 12, 18}, {50, 3, 13, 20}, {3, 3, 0, 2},
	} {
		if lo, hi := spreadBounds(tc.merchants, tc.replicas); lo != tc.lo || hi != tc.hi {
			t.Errorf("spreadBounds(%d, %d) = %d, %d; want %d, %d", tc.merchants, tc.replicas, lo, hi, tc.lo, tc.hi)
		}
	}
}

func TestOwnedBy(t *testing.T) {
	even := map[string]int{}
	for i, m := range merchantIDs(30) {
		even[m] = i % 3
	}
	lopsided := maps.Clone(even)
	for _, m := range merchantIDs(5) {
		lopsided[m] = 2 // r0 8, r1 8, r2 14
	}
	stranger := maps.Clone(even)
	stranger["shop07"] = -1
	for _, tc := range []struct {
		name     string
		own      map[string]int
		replicas []int
		lo, hi   int
		want     bool
	}{
		{"even", even, []int{0, 1, 2}, 8, 12, true},
		{"one replica over", lopsided, []int{0, 1, 2}, 8, 12, false},
		{"a replica owns nothing", even, []int{0, 1, 2, 3}, 8, 12, false},
		{"a merchant of a dead replica", even, []int{1, 2}, 0, 30, false},
		{"a process of no replica", stranger, []int{0, 1, 2}, 0, 30, false},
		{"survivors own all", map[string]int{"a": 1, "b": 2, "c": 1}, []int{1, 2}, 0, 3, true},
	} {
		if got := ownedBy(tc.own, tc.replicas, tc.lo, tc.hi); got != tc.want {
			t.Errorf("%s: ownedBy = %t, want %t (%s)", tc.name, got, tc.want, loads(loadsOf(tc.own)))
		}
	}
}

// TestKillPoint: each merchant has a command published after the cut, which its next owner must
// take.
func TestKillPoint(t *testing.T) {
	var cmds []*planned
	for i := range 40 {
		cmds = append(cmds, &planned{Command: Command{Merchant: fmt.Sprintf("shop%02d", i%7)}})
	}
	cmds = append(cmds, &planned{Command: Command{Merchant: "shop99"}})        // its only command, last
	cmds = append([]*planned{{Command: Command{Merchant: "shop98"}}}, cmds...) // its only command, first
	cut := killPoint(cmds)
	if cut != 0 {
		t.Errorf("cut at %d, want 0: shop98's only command is the first", cut)
	}
	cut = killPoint(cmds[1:])
	if cut == 0 || cut > len(cmds[1:])/2 {
		t.Errorf("cut at %d of %d", cut, len(cmds)-1)
	}
	for m := range 7 {
		if !slices.ContainsFunc(cmds[1+cut:], func(p *planned) bool { return p.Merchant == fmt.Sprintf("shop%02d", m) }) {
			t.Errorf("shop%02d has no command after the cut at %d", m, cut)
		}
	}
}

// TestMovesForEveryMerchant: phase 2 gives every merchant captures or charges, however its
// reservations came back, so that each has commands after the merchants scenario's kill.
func TestMovesForEveryMerchant(t *testing.T) {
	cfg := shortConfig().forMerchants()
	cfg.Seed = 7
	d := newDriver(cfg, nil, nil, nil, t.Logf)
	// The reservations in the order their submits were answered: here shop00's two are the 4th
	// and the 11th, which a rule counted over all reservations would both keep for a cancel.
	var order []string
	for i := range cfg.Reservations {
		order = append(order, d.merchants[i%len(d.merchants)])
	}
	order = slices.DeleteFunc(order, func(m string) bool { return m == "shop00" })
	order = slices.Insert(order, 3, "shop00")
	order = slices.Insert(order, 10, "shop00")
	var rs []*resv
	for i, m := range order {
		rs = append(rs, &resv{merchant: m, uuid: fmt.Sprintf("RES%d", 1000+i), amounts: []int64{100, 50}, captured: map[int64]int64{}, grand: 150,
			lines: []line{{id: int64(300 + 2*i), amount: 100}, {id: int64(301 + 2*i), amount: 50}}})
	}
	_, moves, _ := d.planMoves(rs, (cfg.Commands-cfg.Reservations)*45/100)
	for _, m := range d.merchants {
		if !slices.ContainsFunc(moves, func(p *planned) bool { return p.Merchant == m }) {
			t.Errorf("merchant %s has no capture or charge", m)
		}
	}
	if cancels := slices.DeleteFunc(slices.Clone(rs), func(r *resv) bool { return !r.cancel }); len(cancels) == 0 || len(cancels) > len(rs)/5 {
		t.Errorf("%d of %d reservations kept for a cancel", len(cancels), len(rs))
	}
	if cut := killPoint(moves); cut == 0 {
		t.Errorf("the kill comes before phase 2")
	}
}

func TestParseScenarios(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{scenarioEngine, scenarioMerchants}},
		{[]string{"-scenario", "merchants"}, []string{scenarioMerchants}},
		{[]string{"-scenario", "engine", "-short"}, []string{scenarioEngine}},
	} {
		cfgs, err := parseFlags(tc.args)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		var got []string
		for _, c := range cfgs {
			got = append(got, c.Scenario)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%v: scenarios %v, want %v", tc.args, got, tc.want)
		}
	}
	cfgs, err := parseFlags([]string{"-short", "-scenario", "merchants", "-dir", "/tmp/x"})
	if err != nil {
		t.Fatal(err)
	}
	m := cfgs[0]
	if m.Replicas != merchantReplicas || m.Reservations != 60 || m.Commands != 60*commandsPerReservation || m.Faults || m.NATSRestarts != 0 || m.Dir != "/tmp/x" {
		t.Errorf("short merchants scenario %+v", m)
	}
	if cfgs, _ := parseFlags([]string{"-dir", "/tmp/x"}); cfgs[1].Dir != "/tmp/x/merchants" {
		t.Errorf("both scenarios: the merchants' dir is %s", cfgs[1].Dir)
	}
	if _, err := parseFlags([]string{"-scenario", "nope"}); err == nil {
		t.Error("-scenario nope was taken")
	}
}

func problems(v *Verification) string {
	var b strings.Builder
	for _, c := range v.Checks {
		for _, p := range c.Problems {
			fmt.Fprintf(&b, "%s: %s\n", c.Name, p)
		}
	}
	return b.String()
}

func TestVerifyFigures(t *testing.T) {
	f := newFixture(t)
	f.effect(string(frontpay.ReservationResend), "RES1", "", 0, `{"email":"k-resend@example.no"}`)
	f.dropResults("k-submit")
	f.fail(t, "k-submit", schemas.OutcomeUnknown)
	v := Verify(f.cmds, f.results, f.ledger)
	if v.Failed() {
		t.Fatalf("failed:\n%s", problems(v))
	}
	c := v.Ops[frontpay.ReservationCapture]
	if c.Commands != 1 || c.Copies != 2 || c.Succeeded != 1 || c.Effects != 1 {
		t.Errorf("capture figures %+v", *c)
	}
	if r := v.Ops[frontpay.ReservationResend]; r.Repeated != 1 || r.Effects != 2 {
		t.Errorf("resend figures %+v", *r)
	}
	if s := v.Ops[frontpay.ReservationSubmit]; s.UnknownWithEffect != 1 || s.Failed[schemas.OutcomeUnknown] != 1 {
		t.Errorf("submit figures %+v", *s)
	}
}

// TestPlansAreValidCommands plans a whole workload on made-up reservations and parses every
// command as the worker does: the workload publishes only commands the worker accepts, and
// each command's marker is its own.
func TestPlansAreValidCommands(t *testing.T) {
	cfg := shortConfig()
	cfg.Seed = 42
	d := newDriver(cfg, nil, nil, nil, t.Logf)
	now := time.Now()
	var rs []*resv
	for i := range 20 {
		key := d.key()
		amounts := []int64{100 + int64(i), 50}
		d.plan(frontpay.ReservationSubmit, "", nil, submitData(key, amounts, now), key, "")
		r := &resv{uuid: fmt.Sprintf("RES%d", 1000+i), submitKey: key, amounts: amounts, captured: map[int64]int64{}, grand: amounts[0] + amounts[1]}
		r.lines = []line{{id: int64(300 + 2*i), amount: amounts[0]}, {id: int64(301 + 2*i), amount: amounts[1]}}
		rs = append(rs, r)
	}
	movable, moves, owner := d.planMoves(rs, 60)
	if len(moves) != 60 || len(movable) == 0 {
		t.Fatalf("planned %d moves on %d reservations", len(moves), len(movable))
	}
	for i, p := range moves { // every move succeeds
		p.pay.ref = fmt.Sprintf("PAY%d", i)
		if p.pay.source == "charged" {
			p.pay.lines = map[int64]int64{int64(9000 + i): p.pay.total}
		}
		owner[p.Key].payments = append(owner[p.Key].payments, p.pay)
	}
	_, settles := d.planSettle(rs, 80)
	if len(settles) != 80 {
		t.Fatalf("planned %d phase-3 commands, want 80", len(settles))
	}
	markers := map[string]string{}
	ops := map[frontpay.Operation]int{}
	for _, p := range d.cmds {
		if _, err := schemas.ParseCommand(p.Op, p.raw, now); err != nil {
			t.Errorf("%s %s: %v\n%s", p.Op, p.Key, err, p.raw)
		}
		if other, dup := markers[p.Marker]; dup {
			t.Errorf("%s and %s share the marker %s", p.Key, other, p.Marker)
		}
		markers[p.Marker] = p.Key
		ops[p.Op]++
	}
	for _, op := range []frontpay.Operation{frontpay.ReservationSubmit, frontpay.ReservationCapture, frontpay.ReservationCharge,
		frontpay.ReservationRefund, frontpay.ReservationCancel, frontpay.ReservationComplete, frontpay.ReservationResend} {
		if ops[op] == 0 {
			t.Errorf("the workload has no %s", op)
		}
	}
	t.Logf("commands per operation: %v", ops)
}

func TestMetricSum(t *testing.T) {
	text := `# HELP frontpay_retries_total x
frontpay_retries_total{operation="reservation.capture"} 3
frontpay_retries_total{operation="reservation.refund"} 2
frontpay_retries_total_other 100
frontpay_api_request_duration_seconds_count{operation="reservation.capture",status="503"} 4
frontpay_api_request_duration_seconds_count{operation="reservation.capture",status="502"} 1
frontpay_api_request_duration_seconds_count{operation="reservation.capture",status="0"} 2
frontpay_api_request_duration_seconds_count{operation="reservation.capture",status="202"} 9
`
	for _, tc := range []struct {
		family string
		match  map[string]string
		want   float64
	}{
		{"frontpay_retries_total", nil, 5},
		{"frontpay_api_request_duration_seconds_count", map[string]string{"status": "5*"}, 5},
		{"frontpay_api_request_duration_seconds_count", map[string]string{"status": "0"}, 2},
		{"frontpay_api_request_duration_seconds_count", nil, 16},
	} {
		if got := metricSum(text, tc.family, tc.match); got != tc.want {
			t.Errorf("%s %v: %v, want %v", tc.family, tc.match, got, tc.want)
		}
	}
}

// TestShortRun runs the short form of both scenarios end to end, as CI's `go run ./cmd/chaos
// -short` does. It builds and starts processes for a minute or more, so it runs only with CHAOS=1.
func TestShortRun(t *testing.T) {
	if os.Getenv("CHAOS") != "1" {
		t.Skip("set CHAOS=1 to run the chaos scenarios (go run ./cmd/chaos -short does the same)")
	}
	cfgs, err := shortConfig().scenarios("all")
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range cfgs {
		t.Run(cfg.Scenario, func(t *testing.T) {
			var out bytes.Buffer
			s, err := run(t.Context(), cfg, &out)
			t.Log("\n" + out.String())
			if err != nil {
				t.Fatal(err)
			}
			if s.failed() {
				t.Fatal("the chaos run failed its checks")
			}
		})
	}
}
