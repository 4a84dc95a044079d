package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/schemas"
)

// Command is what the verification knows of one published command: one idempotency key.
type Command struct {
	Key         string             `json:"key"`
	Op          frontpay.Operation `json:"op"`
	Merchant    string             `json:"merchant,omitempty"`    // "" in a one-merchant deployment
	Reservation string             `json:"reservation,omitempty"` // "" for a submit
	Order       int                `json:"order"`                 // position in publish order, over the whole run
	Marker      string             `json:"marker"`                // what its effect in the ledger is recognised by (markerOf)
	Copies      int                `json:"copies"`                // times published: 1, or 2 for a deliberate duplicate
}

// Result is one event read from the result stream.
type Result struct {
	Seq     uint64        `json:"seq"`
	Subject string        `json:"subject"`
	Event   schemas.Event `json:"event"`
}

// Check is one property the run must have, with what breaks it.
type Check struct {
	Name     string
	Problems []string
}

// OK reports whether nothing breaks the check.
func (c *Check) OK() bool { return len(c.Problems) == 0 }

func (c *Check) addf(format string, args ...any) {
	c.Problems = append(c.Problems, fmt.Sprintf(format, args...))
}

// OpFigures is what happened to one operation's commands.
type OpFigures struct {
	Commands  int
	Copies    int // publications, duplicates included
	Succeeded int
	Failed    map[schemas.Reason]int
	Effects   int // ledger effects of the operation's commands
	// UnknownWithEffect and UnknownWithout split the outcome_unknown failures by whether the
	// ledger shows their effect.
	UnknownWithEffect, UnknownWithout int
	Repeated                          int // keys with more than one effect (allowed only for resend)
}

// Verification is the outcome of Verify: figures per operation and the checks.
type Verification struct {
	Ops    map[frontpay.Operation]*OpFigures
	Checks []*Check
}

// Failed reports whether any check failed.
func (v *Verification) Failed() bool {
	_, failed := v.counts()
	return failed > 0
}

// counts returns the numbers of checks passed and failed.
func (v *Verification) counts() (passed, failed int) {
	for _, c := range v.Checks {
		if c.OK() {
			passed++
		} else {
			failed++
		}
	}
	return passed, failed
}

// effectOps are the operations whose success leaves an effect in the sandbox's ledger.
var effectOps = map[frontpay.Operation]bool{
	frontpay.ReservationSubmit: true, frontpay.ReservationSession: true, frontpay.OrderCreate: true,
	frontpay.ReservationCapture: true, frontpay.ReservationCharge: true, frontpay.ReservationRefund: true,
	frontpay.ReservationCancel: true, frontpay.ReservationComplete: true,
	frontpay.ReservationResend: true, frontpay.OrderResend: true,
}

// repeatable are the operations the contract lets the worker send again after an unknown outcome:
// they move no money, so a second effect is not a fault (README, "Resend moves no money").
var repeatable = map[frontpay.Operation]bool{frontpay.ReservationResend: true, frontpay.OrderResend: true}

// readBackOps are the operations whose unknown outcomes the worker resolves by reading the
// reservation back: an outcome_unknown of theirs is a finding, not an accepted result.
var readBackOps = []frontpay.Operation{frontpay.ReservationCapture, frontpay.ReservationCharge,
	frontpay.ReservationRefund, frontpay.ReservationCancel, frontpay.ReservationComplete}

// faultReasons are the failures that the injected faults may cause; every other reason is a
// finding, since the workload only publishes commands the sandbox accepts.
var faultReasons = map[schemas.Reason]bool{schemas.UpstreamUnavailable: true, schemas.OutcomeUnknown: true}

// Marker builders: a command and its effect meet on the same marker. The workload writes the
// idempotency key into a free-text member of each body (referenceNo, additionalText, note, the
// resend e-mail address); a refund has none, so it is recognised by the payment it refunds and its
// amount, which the workload keeps unique.

func keyMarker(op frontpay.Operation, key string) string { return string(op) + "|" + key }

func refundMarker(reference string, cents int64) string {
	return fmt.Sprintf("%s|%s|%d", frontpay.ReservationRefund, reference, cents)
}

// markerOf returns the marker of a ledger effect; ok is false for effects no command causes
// (the customer paying) and for bodies that carry no marker.
func markerOf(e sandbox.Effect) (marker string, ours bool, err error) {
	var field string
	switch frontpay.Operation(e.Op) {
	case frontpay.ReservationSubmit, frontpay.ReservationSession:
		field = "referenceNo"
	case frontpay.ReservationCapture, frontpay.ReservationCharge:
		field = "additionalText"
	case frontpay.ReservationCancel, frontpay.ReservationComplete:
		field = "note"
	case frontpay.ReservationResend, frontpay.OrderResend:
		field = "email"
	case frontpay.ReservationRefund:
		return refundMarker(e.Reference, e.Cents), true, nil
	default:
		return "", false, nil // customer.pay, order.pay
	}
	var body map[string]any
	if err := json.Unmarshal(e.Body, &body); err != nil {
		return "", true, fmt.Errorf("effect #%d (%s %s): body is not JSON: %v", e.Seq, e.Op, e.UUID, err)
	}
	v, _ := body[field].(string)
	if v == "" {
		return "", true, fmt.Errorf("effect #%d (%s %s): body has no %s: %s", e.Seq, e.Op, e.UUID, field, e.Body)
	}
	switch field {
	case "email":
		v, _, _ = strings.Cut(v, "@")
	case "additionalText":
		// The worker appends its read-back marker " [fp:…]" (CONTRACT.md section 4).
		v, _, _ = strings.Cut(v, " [fp:")
	}
	return keyMarker(frontpay.Operation(e.Op), v), true, nil
}

// Verify checks the run: every command has exactly one distinct terminal result, no effect is
// doubled or lost, failures left no effect (except unknown outcomes, counted), and each
// reservation's effects came in publish order. With merchants, each merchant's results are on
// its own subjects and its effects made with its own token (merchantToken).
func Verify(cmds []Command, results []Result, ledger []sandbox.Effect) *Verification {
	v := &Verification{Ops: map[frontpay.Operation]*OpFigures{}}
	check := func(name string) *Check {
		c := &Check{Name: name}
		v.Checks = append(v.Checks, c)
		return c
	}
	lost := check("no command lost: exactly one distinct terminal result per key")
	stray := check("no result without a command")
	doubled := check("no money effect doubled: at most one effect per key")
	missing := check("every success has its effect (capture/charge: the reference it names)")
	failedWithEffect := check("no effect for a failed command (outcome_unknown excepted)")
	orphan := check("no effect without a command")
	unknown := check("no outcome_unknown for " + strings.Join(opNames(readBackOps), ", "))
	unexpected := check("no failure but those faults cause (upstream_unavailable, outcome_unknown)")
	order := check("each reservation's effects applied in publish order")
	var isolated *Check
	if slices.ContainsFunc(cmds, func(c Command) bool { return c.Merchant != "" }) {
		isolated = check("each merchant's commands answered on its own subjects and applied with its own token")
	}

	byKey := map[string]*Command{}
	byMarker := map[string]*Command{}
	for i := range cmds {
		c := &cmds[i]
		byKey[c.Key] = c
		byMarker[c.Marker] = c
		f := v.op(c.Op)
		f.Commands++
		f.Copies += max(c.Copies, 1)
	}

	// Terminal results per key: distinct event ids.
	final := map[string]schemas.Event{}
	distinct := map[string]map[string]bool{}
	for _, r := range results {
		ev := r.Event
		if ev.CausationID == "" {
			continue // a status event
		}
		c := byKey[ev.IdempotencyKey]
		if c == nil {
			stray.addf("result %s (%s, seq %d) names key %q, which no command had", ev.ID, ev.Type, r.Seq, ev.IdempotencyKey)
			continue
		}
		if ev.Type != string(c.Op)+".succeeded" && ev.Type != string(c.Op)+".failed" {
			lost.addf("key %s (%s): result of type %s", c.Key, c.Op, ev.Type)
			continue
		}
		if isolated != nil && (ev.Merchant != c.Merchant || !strings.HasSuffix(r.Subject, "."+c.Merchant+"."+ev.Type)) {
			isolated.addf("key %s (%s of merchant %s): result %s on %s names merchant %q", c.Key, c.Op, c.Merchant, ev.ID, r.Subject, ev.Merchant)
		}
		if distinct[c.Key] == nil {
			distinct[c.Key] = map[string]bool{}
			final[c.Key] = ev
		}
		distinct[c.Key][ev.ID] = true
	}
	for _, c := range cmds {
		switch ids := distinct[c.Key]; {
		case len(ids) == 0:
			lost.addf("key %s (%s %s): no result", c.Key, c.Op, c.Reservation)
		case len(ids) > 1:
			lost.addf("key %s (%s %s): %d distinct results %v", c.Key, c.Op, c.Reservation, len(ids), slices.Sorted(maps.Keys(ids)))
		}
	}

	// Effects per key.
	effects := map[string][]sandbox.Effect{}
	for _, e := range ledger {
		m, ours, err := markerOf(e)
		if !ours {
			continue
		}
		if err != nil {
			orphan.addf("%v", err)
			continue
		}
		c := byMarker[m]
		if c == nil {
			orphan.addf("effect #%d %s on %s (reference %q, %d cents, dropped=%t): no command has marker %q",
				e.Seq, e.Op, e.UUID, e.Reference, e.Cents, e.Dropped, m)
			continue
		}
		if c.Reservation != "" && e.UUID != c.Reservation {
			orphan.addf("effect #%d %s of key %s on %s, but the command names %s", e.Seq, e.Op, c.Key, e.UUID, c.Reservation)
		}
		if isolated != nil && e.Token != merchantToken(c.Merchant) {
			isolated.addf("effect #%d %s of key %s (merchant %s) made with token %q", e.Seq, e.Op, c.Key, c.Merchant, e.Token)
		}
		effects[c.Key] = append(effects[c.Key], e)
		v.op(c.Op).Effects++
	}

	for _, c := range cmds {
		f := v.op(c.Op)
		es := effects[c.Key]
		if len(es) > 1 {
			f.Repeated++
			if !repeatable[c.Op] {
				doubled.addf("key %s (%s %s): %d effects %s", c.Key, c.Op, c.Reservation, len(es), describe(es))
			}
		}
		ev, ok := final[c.Key]
		if !ok {
			continue
		}
		if strings.HasSuffix(ev.Type, ".succeeded") {
			f.Succeeded++
			if !effectOps[c.Op] {
				continue
			}
			if len(es) == 0 {
				missing.addf("key %s (%s %s) succeeded (result %s) but the ledger has no effect", c.Key, c.Op, c.Reservation, ev.ID)
				continue
			}
			if c.Op == frontpay.ReservationCapture || c.Op == frontpay.ReservationCharge {
				var s schemas.Success
				var p frontpay.PaymentResult
				if json.Unmarshal(ev.Data, &s) != nil || json.Unmarshal(s.Response, &p) != nil || p.UUID != es[0].Reference {
					missing.addf("key %s (%s %s): the result names payment %q, the ledger %q", c.Key, c.Op, c.Reservation, p.UUID, es[0].Reference)
				}
			}
			continue
		}
		var fd schemas.Failure
		if err := json.Unmarshal(ev.Data, &fd); err != nil {
			lost.addf("key %s: failure %s does not decode: %v", c.Key, ev.ID, err)
			continue
		}
		if f.Failed == nil {
			f.Failed = map[schemas.Reason]int{}
		}
		f.Failed[fd.Reason]++
		if !faultReasons[fd.Reason] {
			unexpected.addf("key %s (%s %s): %s %d %s", c.Key, c.Op, c.Reservation, fd.Reason, fd.HTTPStatus, fd.Message)
		}
		if fd.Reason == schemas.OutcomeUnknown {
			if len(es) > 0 {
				f.UnknownWithEffect++
			} else {
				f.UnknownWithout++
			}
			if slices.Contains(readBackOps, c.Op) {
				unknown.addf("key %s (%s %s): outcome_unknown (%s) after %d attempts; effects in the ledger: %d",
					c.Key, c.Op, c.Reservation, fd.Message, fd.Attempts, len(es))
			}
			continue
		}
		if len(es) > 0 {
			failedWithEffect.addf("key %s (%s %s) failed with %s but the ledger has %s", c.Key, c.Op, c.Reservation, fd.Reason, describe(es))
		}
	}

	// Publish order per reservation: the ledger is in the order effects were applied. A key's
	// later effects are doubles, reported above.
	last := map[string]*Command{}
	first := map[string]bool{}
	for _, e := range ledger {
		m, ours, err := markerOf(e)
		if !ours || err != nil {
			continue
		}
		c := byMarker[m]
		if c == nil || c.Reservation == "" || first[c.Key] {
			continue
		}
		first[c.Key] = true
		if p := last[c.Reservation]; p != nil && p.Order > c.Order {
			order.addf("%s: effect #%d of %s (%s, published #%d) applied after the effect of %s (%s, published #%d)",
				c.Reservation, e.Seq, c.Key, c.Op, c.Order, p.Key, p.Op, p.Order)
		}
		last[c.Reservation] = c
	}
	return v
}

func (v *Verification) op(op frontpay.Operation) *OpFigures {
	f := v.Ops[op]
	if f == nil {
		f = &OpFigures{}
		v.Ops[op] = f
	}
	return f
}

// describe lists effects for a problem report.
func describe(es []sandbox.Effect) string {
	var parts []string
	for _, e := range es {
		parts = append(parts, fmt.Sprintf("#%d(ref %q, %d cents, dropped=%t)", e.Seq, e.Reference, e.Cents, e.Dropped))
	}
	return strings.Join(parts, " ")
}

func opNames(ops []frontpay.Operation) []string {
	var out []string
	for _, op := range ops {
		out = append(out, strings.TrimPrefix(string(op), "reservation."))
	}
	return out
}
