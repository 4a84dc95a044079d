package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// The idempotency machine's driver: what a command does at each state of its key's record (see
// the package documentation for the diagram, record.go for the transitions).

// acquire finds out where the command's key is: new (the first request leaves), finished (the
// recorded result again), used by another operation or with other data (a conflict), replayed,
// busy, or left by a worker whose lease ran out (taken over).
func (w *Worker) acquire(ctx context.Context, t *task) (time.Duration, error) {
	cmd := t.cmd
	if !t.probed && !w.api.RateLimited() && !w.baselineMode(t) {
		// Most keys are new: record the request at once, and read the record only when the key
		// exists. With a rate limit, or a baseline to read first, the record is read first, so
		// that a duplicate spends no API budget.
		t.probed = true
		t.claim = &claim{key: cmd.Key, store: w.store, rec: w.newRecord(t)}
		return w.run(ctx, t)
	}
	c, err := w.store.load(ctx, cmd.Key)
	if err != nil {
		return 0, err
	}
	rec, now := &c.rec, w.now()
	switch {
	case c.rev == 0:
		c.rec = w.newRecord(t)
		t.claim = c
		return w.run(ctx, t)

	case rec.Op != cmd.Op || rec.Fingerprint != cmd.Fingerprint:
		w.obs.IdempotencyConflict(cmd.Op)
		return 0, w.conflict(ctx, t)

	case rec.done() && cmd.ReplayOf != "" && !rec.OK && rec.EventID == cmd.ReplayOf:
		// A replay of the failure the key ended with: a new generation. After an unknown
		// outcome it reads back before anything is sent.
		move, what := c.replay, "replaying a failed command"
		if rec.unknownOutcome() {
			move, what = c.reopen, "replaying an unknown outcome: reading back first"
		}
		if err := move(ctx, w.cfg.Instance, cmd.ID, now, now.Add(w.lease())); err != nil {
			return w.lost(t, err)
		}
		t.claim = c
		w.logger(t).Info(what, "generation", c.rec.Gen)
		return w.run(ctx, t)

	case rec.done():
		// A duplicate or a redelivery: the recorded result, unchanged, and no API call.
		w.obs.Duplicate(cmd.Op)
		return 0, w.publishRecorded(ctx, c)

	case now.Before(rec.Lease):
		// Another delivery of this key is being worked on, here or by another worker. Look again
		// soon rather than at the lease's end: the owner usually finishes first.
		return min(max(rec.Lease.Sub(now), 50*time.Millisecond), 2*time.Second), nil

	default:
		// The owner's lease ran out: it crashed or was cut off. Take the key over; a request it
		// may have sent is resolved by run's read-back.
		if err := c.hold(ctx, w.cfg.Instance, now, now.Add(w.lease()), rec.ReadBackFailures, nil); err != nil {
			return w.lost(t, err)
		}
		t.claim = c
		w.logger(t).Info("took over command", "state", rec.State, "attempts", rec.Attempts)
		return w.run(ctx, t)
	}
}

// newRecord is the record of a key that has none yet.
func (w *Worker) newRecord(t *task) record {
	return record{Op: t.cmd.Op, Fingerprint: t.cmd.Fingerprint, CommandID: t.cmd.ID, Resource: t.resource}
}

// run works on a record this worker owns (none, claimed or sending) until the command is
// finished or must wait.
func (w *Worker) run(ctx context.Context, t *task) (time.Duration, error) {
	c, op := t.claim, t.cmd.Op
	if c.rec.State == stateSending {
		wait, err := w.resolve(ctx, t)
		if err != nil || wait > 0 || t.claim == nil || c.rec.done() {
			return wait, err
		}
	}
	if c.rec.Attempts >= w.cfg.MaxAttempts {
		return w.lost(t, w.fail(ctx, t, upstreamFailure(w.lastError(t))))
	}
	body, marker := w.request(t, c.rec.Gen)
	release, err := w.slot(ctx)
	if err != nil {
		return 0, err
	}
	defer release()
	base := c.rec.Baseline
	if marker == "" && base == nil && w.baselineMode(t) {
		d, err := w.api.Details(ctx, t.cmd.Params[0])
		if err != nil {
			if frontpay.Classify(err) == frontpay.Permanent {
				return w.lost(t, w.fail(ctx, t, failureOf(err)))
			}
			// Like every read that gets no answer, it has a budget: the command must end.
			t.reads++
			w.logger(t).Warn("baseline read failed", "failures", t.reads, "err", err)
			if t.reads >= w.cfg.MaxAttempts {
				return w.lost(t, w.fail(ctx, t, upstreamFailure(err)))
			}
			return w.backoff(t.reads, err), nil
		}
		base = baselineOf(&d.Data)
	}
	// Take the rate limit's turn first (it may hold the call back for a 429's Retry-After):
	// "sending" is recorded only when the request can leave at once.
	if err := w.api.Wait(ctx); err != nil {
		return 0, err
	}
	// Record that a request is about to leave before it does: a crash from here on is resolved
	// by read-back, never by sending blindly.
	now := w.now()
	if err := c.send(ctx, w.cfg.Instance, t.cmd.ID, now, now.Add(w.lease()), marker, base); err != nil {
		return w.lost(t, err)
	}
	t.body = body
	return w.call(ctx, t, op, release)
}

// call makes the HTTP attempt recorded as sending, gives its place at the API back, and records
// what its answer means.
func (w *Worker) call(ctx context.Context, t *task, op frontpay.Operation, release func()) (time.Duration, error) {
	c := t.claim
	// The request may not outlive the lease: past it, another worker may take the key over.
	callCtx, cancel := context.WithDeadline(frontpay.AfterWait(ctx), c.rec.SentAt.Add(w.cfg.APITimeout))
	start := time.Now()
	resp, err := w.api.Do(callCtx, op, t.cmd.Params, t.body)
	cancel()
	release()
	class := frontpay.Classify(err)
	w.obs.APICall(op, statusOf(resp, err), time.Since(start))

	switch {
	case class == frontpay.Success:
		return w.lost(t, w.succeed(ctx, t, resp.HTTPStatus, resp.Message, resp.Raw))
	case class == frontpay.Permanent:
		return w.lost(t, w.fail(ctx, t, failureOf(err)))
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	t.lastErr = err
	delay, now := w.backoff(c.rec.Attempts, err), w.now()
	if class == frontpay.Retryable || op.Recovery() == frontpay.Resend {
		// Nothing reached the API (or it refused with 429 before acting), or sending again is
		// harmless: back to claimed, so that a crash during the wait is not taken for a request
		// in flight.
		if c.rec.Attempts >= w.cfg.MaxAttempts {
			return w.lost(t, w.fail(ctx, t, upstreamFailure(err)))
		}
		w.obs.Retry(op)
		if err := c.unsent(ctx, now, now.Add(delay+w.lease()), answerOf(err), c.rec.Baseline); err != nil {
			return w.lost(t, err)
		}
		return delay, nil
	}
	// Sent, outcome unknown: stay in sending. The read-back runs after the backoff, so that a
	// request still being processed has settled; the lease covers the wait.
	w.obs.Ambiguous(op)
	w.obs.Retry(op)
	w.logger(t).Warn("outcome unknown, will read back", "attempt", c.rec.Attempts, "err", err)
	if err := c.hold(ctx, w.cfg.Instance, now, now.Add(delay+w.lease()), c.rec.ReadBackFailures, answerOf(err)); err != nil {
		return w.lost(t, err)
	}
	return delay, nil
}

// resolve decides the outcome of a request sent earlier (state sending), by read-back where the
// operation allows it. It leaves the record done, or claimed when the request provably did not
// take effect (or sending again is harmless), or asks for a wait before reading again.
func (w *Worker) resolve(ctx context.Context, t *task) (time.Duration, error) {
	c, op, now := t.claim, t.cmd.Op, w.now()
	switch op.Recovery() {
	case frontpay.Resend:
		return w.lost(t, c.unsent(ctx, now, now.Add(w.lease()), nil, nil))
	case frontpay.Unknown:
		w.obs.ReadBack(op, undecided.String())
		return w.lost(t, w.fail(ctx, t, schemas.Failure{Reason: schemas.OutcomeUnknown, Message: "outcomeUnknownNoReadBack"}))
	}
	release, err := w.slot(ctx)
	if err != nil {
		return 0, err
	}
	rctx, span := w.child(ctx, "frontpay.readback")
	d, err := w.api.Details(rctx, t.cmd.Params[0])
	span.End()
	release()
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		n := c.rec.ReadBackFailures + 1
		w.logger(t).Warn("read-back failed", "failures", n, "err", err)
		if n >= w.cfg.MaxAttempts {
			w.obs.ReadBack(op, undecided.String())
			return w.lost(t, w.fail(ctx, t, schemas.Failure{Reason: schemas.OutcomeUnknown, Message: "readBackFailed"}))
		}
		delay := w.backoff(n, err)
		if err := c.hold(ctx, w.cfg.Instance, now, now.Add(delay+w.lease()), n, nil); err != nil {
			return w.lost(t, err)
		}
		return delay, nil
	}
	v, response := readBack(op, t.cmd.Body, &c.rec, &d.Data)
	w.obs.ReadBack(op, v.String())
	w.logger(t).Info("read back", "verdict", v.String(), "attempts", c.rec.Attempts)
	switch v {
	case applied:
		return w.lost(t, w.succeed(ctx, t, http.StatusAccepted, successMessage[op], response))
	case notApplied:
		// Where the request was read back against a baseline, the reservation as it is now is
		// the baseline of the next.
		var base *baseline
		if c.rec.Baseline != nil {
			base = baselineOf(&d.Data)
		}
		return w.lost(t, c.unsent(ctx, now, now.Add(w.lease()), c.rec.LastAnswer, base))
	}
	return w.lost(t, w.fail(ctx, t, schemas.Failure{Reason: schemas.OutcomeUnknown, Message: "outcomeUnknownAfterReadBack"}))
}

// lost turns a lost compare-and-swap into a short wait, after which the key is looked at again
// (another worker changed it); other errors pass.
func (w *Worker) lost(t *task, err error) (time.Duration, error) {
	if errors.Is(err, errLost) {
		t.claim, t.probed = nil, true
		return 50 * time.Millisecond, nil
	}
	return 0, err
}

// request returns the request body of the key's generation gen and its read-back marker ("": it
// carries none).
func (w *Worker) request(t *task, gen int) (frontpay.Validator, string) {
	if w.cfg.NoMarker {
		return t.cmd.Body, ""
	}
	m := markerOf(w.cfg.Merchant, t.cmd.Key, gen)
	if b, ok := marked(t.cmd.Body, m); ok {
		return b, m
	}
	return t.cmd.Body, ""
}

// baselineMode reports whether the command's unknown outcomes are read back against a baseline
// read before its first request: refunds, and captures and charges without a marker.
func (w *Worker) baselineMode(t *task) bool {
	switch t.cmd.Op {
	case frontpay.ReservationRefund:
		return true
	case frontpay.ReservationCapture, frontpay.ReservationCharge:
		_, m := w.request(t, 0)
		return m == ""
	}
	return false
}

// lastError is the error that an upstream_unavailable failure names: this delivery's last, or
// the answer an earlier delivery recorded.
func (w *Worker) lastError(t *task) error {
	if t.lastErr != nil {
		return t.lastErr
	}
	if a := t.claim.rec.LastAnswer; a != nil {
		return &frontpay.Error{Op: t.cmd.Op, HTTPStatus: a.HTTPStatus, Message: a.Message, Errors: a.Errors}
	}
	return nil
}

// succeed records and publishes a success event.
func (w *Worker) succeed(ctx context.Context, t *task, status int, message string, response json.RawMessage) error {
	if len(response) == 0 {
		response = json.RawMessage("null")
	}
	ev, err := schemas.NewSuccess(w.cfg.Source, w.origin(t), schemas.Success{HTTPStatus: status, Message: message, Response: response}, w.now())
	if err != nil {
		return err
	}
	t.traced(&ev)
	return w.finish(ctx, t, "", ev)
}

// fail records and publishes a failure event.
func (w *Worker) fail(ctx context.Context, t *task, f schemas.Failure) error {
	ev, err := w.failure(t, f)
	if err != nil {
		return err
	}
	return w.finish(ctx, t, f.Reason, ev)
}

// failure builds the failure event of the command.
func (w *Worker) failure(t *task, f schemas.Failure) (schemas.Event, error) {
	f.Command = t.raw
	if t.claim != nil {
		f.Attempts = t.claim.rec.Attempts
	}
	f.Retryable = f.Reason == schemas.UpstreamUnavailable
	if len(f.Errors) == 0 {
		f.Errors = json.RawMessage("null")
	}
	ev, err := schemas.NewFailure(w.cfg.Source, w.origin(t), f, w.now())
	t.traced(&ev)
	return ev, err
}

// conflict publishes the idempotency_conflict failure of a command whose key was used by another
// operation or with other data. It is not recorded: the key's record stays the first command's,
// and the failure has an id of its own.
func (w *Worker) conflict(ctx context.Context, t *task) error {
	ev, err := w.failure(&task{raw: t.raw, cmd: t.cmd, ctx: t.ctx}, schemas.Failure{
		Reason: schemas.IdempotencyConflict, Message: "idempotencyKeyUsedWithOtherData",
	})
	if err != nil {
		return err
	}
	ev.ID = schemas.ResultID(schemas.MerchantKey(w.cfg.Merchant, t.cmd.Key)+"\x00conflict\x00"+t.cmd.ID, false, schemas.IdempotencyConflict)
	raw, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	w.obs.Outcome(t.cmd.Op, false, schemas.IdempotencyConflict)
	ctx, span := w.child(ctx, "frontpay.publish")
	defer span.End()
	return w.pub.Publish(ctx, schemas.ResultSubject(w.subjects(), t.cmd.Op, false), ev.ID, raw)
}

// finish records the result event, in the same write as the outcome, so that every later
// delivery of the key gets the very same event, and publishes it.
func (w *Worker) finish(ctx context.Context, t *task, reason schemas.Reason, ev schemas.Event) error {
	raw, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	c := t.claim
	subject := schemas.ResultSubject(w.subjects(), t.cmd.Op, reason == "")
	if err := c.finish(ctx, w.now(), reason, subject, ev.ID, raw); err != nil {
		return err
	}
	w.obs.Outcome(t.cmd.Op, reason == "", reason)
	w.logger(t).Info("command finished", "ok", reason == "", "reason", reason, "attempts", c.rec.Attempts)
	return w.publishRecorded(ctx, c)
}

// publishRecorded puts a finished record's event on the result stream.
func (w *Worker) publishRecorded(ctx context.Context, c *claim) error {
	ctx, span := w.child(ctx, "frontpay.publish")
	defer span.End()
	return w.pub.Publish(ctx, c.rec.Subject, c.rec.EventID, c.rec.Event)
}

// origin is what the command's results carry over from it.
func (w *Worker) origin(t *task) schemas.Origin {
	o := t.cmd.Origin()
	o.Merchant = w.cfg.Merchant
	return o
}

// logger is the command's logger, with what identifies it and the ids of its trace.
func (w *Worker) logger(t *task) *slog.Logger {
	l := w.log.With("op", t.cmd.Op, "id", t.cmd.ID, "key", t.cmd.Key, "correlationid", t.cmd.CorrelationID, "resource", t.cmd.Resource)
	if sc := trace.SpanContextFromContext(t.ctx); sc.IsValid() {
		l = l.With("trace_id", sc.TraceID().String(), "span_id", sc.SpanID().String())
	}
	return l
}

// failureOf maps a permanent error to the failure of CONTRACT.md section 3.
func failureOf(err error) schemas.Failure {
	var ve *frontpay.ValidationError
	if errors.As(err, &ve) {
		b, _ := json.Marshal(ve.Map())
		return schemas.Failure{Reason: schemas.InvalidCommand, Message: "invalidCommand", Errors: b}
	}
	var fe *frontpay.Error
	if !errors.As(err, &fe) {
		return schemas.Failure{Reason: schemas.UpstreamUnavailable, Message: err.Error()}
	}
	f := schemas.Failure{HTTPStatus: fe.HTTPStatus, Message: fe.Message, Errors: fe.Errors}
	switch {
	case fe.HTTPStatus == http.StatusExpectationFailed || fe.HTTPStatus == http.StatusUnprocessableEntity:
		f.Reason = schemas.Validation
	case fe.HTTPStatus == http.StatusNotFound:
		f.Reason = schemas.NotFound
	case fe.HTTPStatus == http.StatusUnauthorized || fe.HTTPStatus == http.StatusForbidden:
		f.Reason = schemas.Unauthorized
	default:
		f.Reason = schemas.BusinessRule
	}
	return f
}

// upstreamFailure is the failure after the retry budget, naming the last error.
func upstreamFailure(last error) schemas.Failure {
	f := schemas.Failure{Reason: schemas.UpstreamUnavailable, Message: "retryBudgetExhausted"}
	var fe *frontpay.Error
	if errors.As(last, &fe) {
		f.HTTPStatus, f.Errors = fe.HTTPStatus, fe.Errors
		if fe.Message != "" {
			f.Message = fe.Message
		}
	}
	return f
}

// answerOf is the API's error answer for the record, nil when no answer came.
func answerOf(err error) *lastAnswer {
	var fe *frontpay.Error
	if !errors.As(err, &fe) || fe.HTTPStatus == 0 {
		return nil
	}
	return &lastAnswer{HTTPStatus: fe.HTTPStatus, Message: fe.Message, Errors: fe.Errors}
}

// statusOf is the HTTP status of a call for metrics: the answer's, or 0 when none came.
func statusOf(resp *frontpay.Response, err error) int {
	if resp != nil {
		return resp.HTTPStatus
	}
	var fe *frontpay.Error
	if errors.As(err, &fe) {
		return fe.HTTPStatus
	}
	return 0
}
