package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/client"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/schemas"
)

// checkFailure checks what every failure carries: the command unchanged, retryable only for
// upstream_unavailable, the attempts made and the answer's status.
func checkFailure(t *testing.T, c command, r received, reason schemas.Reason, status, attempts int) schemas.Failure {
	t.Helper()
	f := failure(t, r, reason)
	var sent schemas.Event
	_ = json.Unmarshal(c.Raw, &sent)
	if r.Event.Type != string(c.Op)+".failed" || r.Event.CausationID != c.ID || r.Event.IdempotencyKey != c.Key ||
		r.Event.CorrelationID != sent.CorrelationID {
		t.Errorf("%s: type %s, causationid %s, key %s, correlationid %s", c, r.Event.Type, r.Event.CausationID,
			r.Event.IdempotencyKey, r.Event.CorrelationID)
	}
	if !bytes.Equal(f.Command, c.Raw) {
		t.Errorf("%s: the failure's command is not the command as published:\n%s\n%s", c, f.Command, c.Raw)
	}
	if f.Retryable != (reason == schemas.UpstreamUnavailable) || f.HTTPStatus != status || f.Attempts != attempts {
		t.Errorf("%s: retryable %v, httpStatus %d, attempts %d; want httpStatus %d, attempts %d",
			c, f.Retryable, f.HTTPStatus, f.Attempts, status, attempts)
	}
	return f
}

// TestFailureReasons produces each reason of CONTRACT.md section 3.
func TestFailureReasons(t *testing.T) {
	t.Parallel()

	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		h := setup(t)
		r := h.paid(t)
		ledger, calls := len(h.sb.Ledger()), h.calls.Count("", r.UUID)

		t.Run("invalid_command/data", func(t *testing.T) {
			data := captureData(r, 300, "invalid")
			data["grandTotal"] = 299 // not the sum of the products
			c := h.publish(t, frontpay.ReservationCapture, data)
			f := checkFailure(t, c, h.resultOf(t, c), schemas.InvalidCommand, 0, 0)
			if !strings.Contains(string(f.Errors), "data.grandTotal") || h.resultOf(t, c).Event.Subject != r.UUID {
				t.Errorf("errors %s, subject %s", f.Errors, h.resultOf(t, c).Event.Subject)
			}
		})
		t.Run("invalid_command/type", func(t *testing.T) {
			// A capture's subject, a refund's type: answered under the subject's operation.
			c := newCommand(t, frontpay.ReservationCapture, captureData(r, 300, "wrong type"), func(e *schemas.Event) {
				e.Type = "reservation.refund.requested"
			})
			c = h.send(t, c, "")
			f := checkFailure(t, c, h.resultOf(t, c), schemas.InvalidCommand, 0, 0)
			if !strings.Contains(string(f.Errors), `"type"`) {
				t.Errorf("errors %s do not name the type", f.Errors)
			}
		})
		t.Run("invalid_command/as written", func(t *testing.T) {
			// The failure carries the command as JSON equal to what was published; encoding/json
			// compacts it and escapes <, > and & on the way, so the bytes may differ.
			data := captureData(r, 300, "Tom & Jerry <3")
			data["grandTotal"] = 299
			c := newCommand(t, frontpay.ReservationCapture, data)
			var v any
			_ = json.Unmarshal(c.Raw, &v)
			c.Raw, _ = json.MarshalIndent(v, "", "  ")
			c = h.send(t, c, "")
			f := failure(t, h.resultOf(t, c), schemas.InvalidCommand)
			var got any
			if err := json.Unmarshal(f.Command, &got); err != nil || !reflect.DeepEqual(got, v) {
				t.Errorf("the failure's command\n%s\nis not the command\n%s", f.Command, c.Raw)
			}
		})
		t.Run("invalid_command/attribute", func(t *testing.T) {
			c := newCommand(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": r.UUID}, func(e *schemas.Event) { e.Source = "" })
			c = h.send(t, c, "")
			checkFailure(t, c, h.resultOf(t, c), schemas.InvalidCommand, 0, 0)
		})
		if n := h.calls.Count("", r.UUID) - calls; n != 0 || len(h.sb.Ledger()) != ledger {
			t.Errorf("invalid commands made %d API calls, ledger %d → %d", n, ledger, len(h.sb.Ledger()))
		}

		t.Run("business_rule", func(t *testing.T) {
			c := h.publish(t, frontpay.ReservationCapture, captureData(r, 5000, "too much"))
			f := checkFailure(t, c, h.resultOf(t, c), schemas.BusinessRule, 400, 1)
			if f.Message != "requestedCaptureAmountExceedAvailableCaptureRunway" || len(h.effects(frontpay.ReservationCapture, r.UUID)) != 0 {
				t.Errorf("message %q, ledger %+v", f.Message, h.sb.Ledger())
			}
		})
		t.Run("not_found", func(t *testing.T) {
			c := h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": "RES0000000001"})
			f := checkFailure(t, c, h.resultOf(t, c), schemas.NotFound, 404, 1)
			if f.Message != "reservationNotFound" || h.resultOf(t, c).Event.Subject != "RES0000000001" {
				t.Errorf("message %q", f.Message)
			}
			// A refund of an unknown reservation fails on its baseline read, unsent.
			c = h.publish(t, frontpay.ReservationRefund, refundData(reservation{UUID: "RES0000000002", Lines: r.Lines}, "CAP1000000001", 100))
			failure(t, h.resultOf(t, c), schemas.NotFound)
			if n := h.calls.Count(frontpay.ReservationRefund, "RES0000000002"); n != 0 {
				t.Errorf("refund of an unknown reservation sent %d times", n)
			}
			// A capture needs no read before it: the API refuses it.
			c = h.publish(t, frontpay.ReservationCapture, captureData(reservation{UUID: "RES0000000003", Lines: r.Lines}, 300, "nowhere"))
			checkFailure(t, c, h.resultOf(t, c), schemas.NotFound, 404, 1)
		})
		t.Run("idempotency_conflict", func(t *testing.T) {
			other := h.submitted(t)
			first := h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": r.UUID}, client.Key("conflict-1"))
			was := h.resultOf(t, first)
			success(t, was)
			c := h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": other.UUID}, client.Key("conflict-1"))
			got := h.await(t, byCause(c.ID), "the conflict's result")
			checkFailure(t, c, got, schemas.IdempotencyConflict, 0, 0)
			if got.Event.ID == was.Event.ID || h.calls.Count("", other.UUID) != 1 { // submitted's own details read
				t.Errorf("conflict event %s (first %s); %d calls on %s", got.Event.ID, was.Event.ID, h.calls.Count("", other.UUID), other.UUID)
			}
			// The key's own record is untouched: a duplicate of the first still gets its success.
			again := h.send(t, first, schemas.NewID())
			testworld.WaitFor(t, func() bool { return len(h.sent.find(byCause(again.ID))) >= 2 }, "the first result again")
			if rec := h.record(t, "conflict-1"); rec.EventID != was.Event.ID {
				t.Errorf("record after the conflict: %+v", rec)
			}
		})
	})

	t.Run("validation", func(t *testing.T) {
		t.Parallel()
		// The sandbox lives a year ahead: a due date the worker accepts is past for the API.
		h := setup(t, sandboxClock(365*24*time.Hour))
		c := h.publish(t, frontpay.ReservationSubmit, submitData("late"))
		f := checkFailure(t, c, h.resultOf(t, c), schemas.Validation, http.StatusExpectationFailed, 1)
		if f.Message != "payloadValidationErrors" || !strings.Contains(string(f.Errors), "dueDateForPaymentLink") {
			t.Errorf("message %q, errors %s", f.Message, f.Errors)
		}
		if len(h.sb.Ledger()) != 0 {
			t.Errorf("ledger %+v", h.sb.Ledger())
		}
	})

	t.Run("unauthorized", func(t *testing.T) {
		t.Parallel()
		h := setup(t, workerToken("wrong-token"))
		r := h.paid(t)
		c := h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": r.UUID})
		checkFailure(t, c, h.resultOf(t, c), schemas.Unauthorized, 401, 1)
		c = h.publish(t, frontpay.ReservationCapture, captureData(r, 300, "unauthorized"))
		checkFailure(t, c, h.resultOf(t, c), schemas.Unauthorized, 401, 1)
		if e := h.effects(frontpay.ReservationCapture, ""); len(e) != 0 {
			t.Errorf("captured without a valid token: %+v", e)
		}
	})

	t.Run("upstream", func(t *testing.T) {
		t.Parallel()
		h := setup(t)
		r := h.paid(t)
		h.sb.SetFault(frontpay.ReservationDetails, sandbox.Fault{ErrorShare: 1})
		h.sb.SetFault(frontpay.ReservationHistory, sandbox.Fault{TooManyShare: 1})
		h.sb.SetFault(frontpay.ReservationSubmit, sandbox.Fault{DropShare: 1})

		details := h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": r.UUID})
		history := h.publish(t, frontpay.ReservationHistory, map[string]any{})
		submit := h.publish(t, frontpay.ReservationSubmit, submitData("dropped-submit"))

		t.Run("upstream_unavailable/5xx", func(t *testing.T) {
			checkFailure(t, details, h.resultOf(t, details), schemas.UpstreamUnavailable, 503, maxAttempts)
			if n := h.calls.Count(frontpay.ReservationDetails, r.UUID); n != maxAttempts+1 { // and the test's own read
				t.Errorf("%d details calls, want %d", n, maxAttempts+1)
			}
		})
		t.Run("upstream_unavailable/429", func(t *testing.T) {
			checkFailure(t, history, h.resultOf(t, history), schemas.UpstreamUnavailable, 429, maxAttempts)
			if n := h.calls.Count(frontpay.ReservationHistory, ""); n != maxAttempts {
				t.Errorf("%d history calls, want %d", n, maxAttempts)
			}
		})
		t.Run("upstream_unavailable/5xx on a money call", func(t *testing.T) {
			// Every 5xx is read back (not applied) before the retry; the failure names the last answer.
			h := setup(t)
			r := h.paid(t)
			h.sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{ErrorShare: 1})
			c := h.publish(t, frontpay.ReservationCapture, captureData(r, 300, "5xx"))
			f := checkFailure(t, c, h.resultOf(t, c), schemas.UpstreamUnavailable, 503, maxAttempts)
			if f.Message != "internalErrorOccurredPleaseTryAgainLater" || h.calls.Count(frontpay.ReservationCapture, r.UUID) != maxAttempts {
				t.Errorf("message %q after %d captures", f.Message, h.calls.Count(frontpay.ReservationCapture, r.UUID))
			}
			if e := h.effects(frontpay.ReservationCapture, r.UUID); len(e) != 0 {
				t.Errorf("ledger %+v", e)
			}
		})
		t.Run("upstream_unavailable/baseline read", func(t *testing.T) {
			// A refund whose reservation cannot be read: the retry budget ends it too, unsent.
			h := setup(t)
			r := h.paid(t)
			ref := h.capture(t, r, 300, "to refund")
			reads := h.calls.Count(frontpay.ReservationDetails, r.UUID)
			h.sb.SetFault(frontpay.ReservationDetails, sandbox.Fault{ErrorShare: 1})
			c := h.publish(t, frontpay.ReservationRefund, refundData(r, ref, 100))
			checkFailure(t, c, h.resultOf(t, c), schemas.UpstreamUnavailable, 503, 0)
			if n := h.calls.Count(frontpay.ReservationDetails, r.UUID) - reads; n != maxAttempts || h.calls.Count(frontpay.ReservationRefund, "") != 0 {
				t.Errorf("%d details reads, %d refunds", n, h.calls.Count(frontpay.ReservationRefund, ""))
			}
		})
		t.Run("outcome_unknown", func(t *testing.T) {
			f := checkFailure(t, submit, h.resultOf(t, submit), schemas.OutcomeUnknown, 0, 1)
			if e := h.marked("dropped-submit"); len(e) != 1 || !e[0].Dropped {
				t.Errorf("ledger %+v, want the one dropped submit", e)
			}
			if n := h.calls.Count(frontpay.ReservationSubmit, ""); n != 2 { // the test's own submit and the worker's one
				t.Errorf("submit sent %d times; failure %+v", n-1, f)
			}
		})
	})
}

// panicky is the worker's real API client, but a capture of one reservation panics, as a bug
// would.
type panicky struct {
	API
	uuid string
}

func (p panicky) Do(ctx context.Context, op frontpay.Operation, params []string, body frontpay.Validator) (*frontpay.Response, error) {
	if op == frontpay.ReservationCapture && params[0] == p.uuid {
		panic("a bug about " + p.uuid)
	}
	return p.API.Do(ctx, op, params, body)
}

// TestPanicIsContained: a command whose work panics goes to the dead letters with the panic's
// reason, its record keeps its state, and the worker goes on: the next command of the same
// reservation, and others, are answered.
func TestPanicIsContained(t *testing.T) {
	t.Parallel()
	h := setup(t, withoutWorker())
	bad, good := h.paid(t), h.paid(t)
	w := h.newWorker("panicking")
	w.api = panicky{API: h.workerAPI, uuid: bad.UUID}
	h.run(w)

	c := h.publish(t, frontpay.ReservationCapture, captureData(bad, 300, "panics"))
	after := h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": bad.UUID})
	other := h.publish(t, frontpay.ReservationCapture, captureData(good, 300, "fine"))
	success(t, h.resultOf(t, other))
	success(t, h.resultOf(t, after)) // the next command of the same reservation

	m := h.deadLetters(t, 1, "the dead letter")[0]
	if reason := m.Header.Get(publisher.HeaderDeadLetterReason); !strings.HasPrefix(reason, "panic: a bug about "+bad.UUID) ||
		m.Header.Get(publisher.HeaderDeadLetterSeq) != strconv.FormatUint(c.Seq, 10) {
		t.Errorf("dead letter: %v", m.Header)
	}
	if rec := h.record(t, c.Key); rec.State != stateSending || rec.Attempts != 1 {
		t.Errorf("the record after the panic: %+v", rec)
	}
	if n := len(h.sent.find(byKey(c.Key))); n != 0 {
		t.Errorf("%d results of the command that panicked", n)
	}
	testworld.WaitFor(t, func() bool { return h.consumerIdle(t) }, "every command acked")
}

// TestRefusedResult: JetStream refuses a result (here, over the result stream's message size):
// the command goes to the dead letters instead of being retried for ever, and the worker goes on.
func TestRefusedResult(t *testing.T) {
	t.Parallel()
	h := setup(t)
	stream, err := h.js.Stream(t.Context(), h.topo.ResultStream())
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.MaxMsgSize = 4096
	if _, err := h.js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	r := h.paid(t)
	big := captureData(r, 300, "refused")
	big["grandTotal"] = 299 // invalid: its failure carries the command, which is big
	big["additionalText"] = strings.Repeat("x", 5000)
	c := h.publish(t, frontpay.ReservationCapture, big)
	next := h.publish(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": r.UUID})
	success(t, h.resultOf(t, next))
	m := h.deadLetters(t, 1, "the dead letter")[0]
	if reason := m.Header.Get(publisher.HeaderDeadLetterReason); !strings.Contains(reason, "refused") ||
		m.Header.Get(publisher.HeaderDeadLetterSeq) != strconv.FormatUint(c.Seq, 10) {
		t.Errorf("dead letter: %v", m.Header)
	}
	testworld.WaitFor(t, func() bool { return h.consumerIdle(t) }, "every command acked")
}
