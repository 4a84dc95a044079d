package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// job is one delivery of one valid command.
type job struct {
	cmd *schemas.Command
	raw []byte // the command event as received
	// resource is the command's queue ("reservation.<uuid>" or "order.<uuid>"), "" when none.
	resource string
	log      *slog.Logger
}

// execute drives the command through the idempotency state machine until its result event is
// published (nil), or it must come back later (*retryLater, errLost, or an infrastructure error).
func (w *Worker) execute(ctx context.Context, j *job) error {
	// Most keys are new: claim first, and read the record only when the key exists.
	now := w.now()
	fresh := &record{
		State: stateClaimed, Op: j.cmd.Op, Fingerprint: j.cmd.Fingerprint, CommandID: j.cmd.ID,
		Resource: j.resource, Owner: w.cfg.Instance, Lease: now.Add(w.lease()), Updated: now,
	}
	if rev, err := w.store.create(ctx, j.cmd.Key, fresh); err == nil {
		return w.run(ctx, j, fresh, rev)
	} else if !errors.Is(err, errLost) {
		return err
	}
	for {
		rec, rev, err := w.store.get(ctx, j.cmd.Key)
		if err != nil {
			return err
		}
		now := w.now()
		switch {
		case rec == nil:
			// Gone since (the bucket's TTL): claim it afresh.
			fresh.Lease, fresh.Updated = now.Add(w.lease()), now
			if rev, err = w.store.create(ctx, j.cmd.Key, fresh); errors.Is(err, errLost) {
				continue
			} else if err != nil {
				return err
			}
			return w.run(ctx, j, fresh, rev)

		case rec.Fingerprint != j.cmd.Fingerprint:
			w.obs.IdempotencyConflict(j.cmd.Op)
			return w.fail(ctx, j, nil, 0, schemas.Failure{
				Reason:  schemas.IdempotencyConflict,
				Message: "idempotencyKeyUsedWithOtherData",
			})

		case rec.done() && j.cmd.ReplayOf != "" && !rec.OK && rec.EventID == j.cmd.ReplayOf:
			// A replay of the failure this key ended with: a new generation may try again.
			next := &record{
				State: stateClaimed, Op: rec.Op, Fingerprint: rec.Fingerprint, CommandID: j.cmd.ID,
				Resource: rec.Resource, Gen: rec.Gen + 1, Owner: w.cfg.Instance,
				Lease: now.Add(w.lease()), Updated: now,
			}
			if rev, err = w.store.update(ctx, j.cmd.Key, next, rev); errors.Is(err, errLost) {
				continue
			} else if err != nil {
				return err
			}
			j.log.Info("replaying failed command", "generation", next.Gen)
			return w.run(ctx, j, next, rev)

		case rec.done():
			// A duplicate or a redelivery: the recorded result, unchanged, and no API call.
			w.obs.Duplicate(j.cmd.Op)
			return w.publish(ctx, j, rec, rev)

		case w.inFlight(j.cmd.Key) || now.Before(rec.Lease):
			// Another delivery of this key is being worked on, here or by another worker.
			// Look again soon rather than at the lease's end: the owner usually finishes first.
			return &retryLater{delay: min(max(time.Until(rec.Lease), 100*time.Millisecond), 2*time.Second), why: "key busy"}

		default:
			// The owner's lease ran out: it crashed or was cut off. Take the key over; a request it may
			// have sent is resolved by run's read-back.
			rec.Owner, rec.Lease, rec.Updated = w.cfg.Instance, now.Add(w.lease()), now
			if rev, err = w.store.update(ctx, j.cmd.Key, rec, rev); errors.Is(err, errLost) {
				continue
			} else if err != nil {
				return err
			}
			j.log.Info("took over command", "state", rec.State, "attempts", rec.Attempts)
			return w.run(ctx, j, rec, rev)
		}
	}
}

// run works on a record this worker owns, in state claimed or sending, until it is done.
func (w *Worker) run(ctx context.Context, j *job, rec *record, rev uint64) error {
	w.hold(j.cmd.Key)
	defer w.release(j.cmd.Key)
	op := j.cmd.Op
	var lastErr error
	if a := rec.LastAnswer; a != nil {
		// The answer an earlier delivery got, should the attempts be spent already.
		lastErr = &frontpay.Error{Op: op, HTTPStatus: a.HTTPStatus, Message: a.Message, Errors: a.Errors}
	}
	for {
		var err error
		if rec.State == stateSending {
			if rec, rev, err = w.resolve(ctx, j, rec, rev); err != nil || rec.done() {
				return err
			}
		}
		if rec.Attempts >= w.cfg.MaxAttempts {
			return w.fail(ctx, j, rec, rev, upstreamFailure(lastErr))
		}
		if needsBaseline(op) && rec.Baseline == nil {
			d, err := w.api.Details(ctx, j.cmd.Params[0])
			if err != nil {
				if frontpay.Classify(err) == frontpay.Permanent {
					return w.fail(ctx, j, rec, rev, failureOf(err))
				}
				// Like every read that gets no answer, it has a budget: the command must end.
				rec.ReadBackFailures++
				j.log.Warn("baseline read failed", "failures", rec.ReadBackFailures, "err", err)
				if rec.ReadBackFailures >= w.cfg.MaxAttempts {
					return w.fail(ctx, j, rec, rev, upstreamFailure(err))
				}
				return w.later(ctx, j, rec, rev, err)
			}
			rec.Baseline, rec.ReadBackFailures = baselineOf(&d.Data), 0
		}

		// Take the rate limiter's turn first (it may hold the call back for a 429's Retry-After):
		// "sending" is recorded only when the request can leave at once.
		if err := w.api.Wait(ctx); err != nil {
			return w.later(ctx, j, rec, rev, err)
		}
		// Record that a request is about to leave before it does: a crash from here on is
		// resolved by read-back, never by sending blindly.
		now := w.now()
		rec.State, rec.Attempts, rec.SentAt, rec.Updated = stateSending, rec.Attempts+1, now, now
		rec.Owner, rec.Lease = w.cfg.Instance, now.Add(w.lease())
		if rev, err = w.store.update(ctx, j.cmd.Key, rec, rev); err != nil {
			return err
		}
		// The request may not outlive the lease: past it, another worker may take the key over.
		callCtx, cancel := context.WithDeadline(frontpay.AfterWait(ctx), now.Add(w.cfg.APITimeout))
		start := time.Now()
		resp, err := w.api.Do(callCtx, op, j.cmd.Params, j.cmd.Body)
		cancel()
		class := frontpay.Classify(err)
		w.obs.APICall(op, statusOf(resp, err), time.Since(start))
		j.log.Debug("api call", "attempt", rec.Attempts, "class", class, "err", err)

		switch {
		case class == frontpay.Success:
			return w.succeed(ctx, j, rec, rev, resp.HTTPStatus, resp.Message, resp.Raw)
		case class == frontpay.Permanent:
			return w.fail(ctx, j, rec, rev, failureOf(err))
		case class == frontpay.Retryable || resendable(op):
			// Nothing reached the API (or it refused with 429 before acting), or sending again is
			// harmless: back to claimed.
			rec.State = stateClaimed
			lastErr = err
		default:
			// Sent, outcome unknown: stay in sending. The read-back runs before anything is sent
			// again, after the backoff, so that a request still being processed has settled.
			w.obs.Ambiguous(op)
			j.log.Warn("outcome unknown, will read back", "attempt", rec.Attempts, "err", err)
			lastErr = err
		}
		rec.LastAnswer = answerOf(err)
		if rec.State == stateClaimed && rec.Attempts >= w.cfg.MaxAttempts {
			return w.fail(ctx, j, rec, rev, upstreamFailure(err))
		}
		delay := w.backoff(rec.Attempts, err)
		w.obs.Retry(op)
		if delay > w.cfg.InProcessRetry {
			return w.later(ctx, j, rec, rev, err)
		}
		// What the sleep follows is on record first: "claimed" when nothing was sent, so that a
		// crash during the wait is not taken for a request in flight.
		if rev, err = w.store.update(ctx, j.cmd.Key, rec, rev); err != nil {
			return err
		}
		if err := sleep(ctx, delay); err != nil {
			return w.later(ctx, j, rec, rev, err)
		}
	}
}

// resolve decides the outcome of a request sent earlier (state sending), by read-back where the
// operation allows it. The record it returns is done, or claimed again when the request provably
// did not take effect.
func (w *Worker) resolve(ctx context.Context, j *job, rec *record, rev uint64) (*record, uint64, error) {
	op := j.cmd.Op
	if resendable(op) {
		rec.State = stateClaimed
		return rec, rev, nil
	}
	if !needsBaseline(op) || rec.Baseline == nil {
		w.obs.ReadBack(op, undecided.String())
		return rec, rev, w.fail(ctx, j, rec, rev, schemas.Failure{
			Reason:  schemas.OutcomeUnknown,
			Message: "outcomeUnknownNoReadBack",
		})
	}
	d, err := w.api.Details(ctx, j.cmd.Params[0])
	if err != nil {
		rec.ReadBackFailures++
		j.log.Warn("read-back failed", "failures", rec.ReadBackFailures, "err", err)
		if rec.ReadBackFailures >= w.cfg.MaxAttempts {
			w.obs.ReadBack(op, undecided.String())
			return rec, rev, w.fail(ctx, j, rec, rev, schemas.Failure{Reason: schemas.OutcomeUnknown, Message: "readBackFailed"})
		}
		return rec, rev, w.later(ctx, j, rec, rev, err)
	}
	v, response := readBack(op, j.cmd.Body, rec.Baseline, &d.Data)
	w.obs.ReadBack(op, v.String())
	j.log.Info("read back", "verdict", v.String(), "attempts", rec.Attempts)
	switch v {
	case applied:
		return rec, rev, w.succeed(ctx, j, rec, rev, http.StatusAccepted, successMessage[op], response)
	case notApplied:
		rec.State = stateClaimed
		// The reservation as it is now is the baseline of the next request.
		rec.Baseline = baselineOf(&d.Data)
		return rec, rev, nil
	default:
		return rec, rev, w.fail(ctx, j, rec, rev, schemas.Failure{Reason: schemas.OutcomeUnknown, Message: "outcomeUnknownAfterReadBack"})
	}
}

// later records the command's progress and hands the message back for a later delivery.
func (w *Worker) later(ctx context.Context, j *job, rec *record, rev uint64, cause error) error {
	now := w.now()
	delay := w.backoff(max(rec.Attempts, 1), cause)
	// The next delivery may take over at once when nothing is in flight; after an unknown outcome
	// it waits out the delay, so the read-back sees what the API settled on.
	rec.Lease, rec.Updated = now, now
	if rec.State == stateSending {
		rec.Lease = now.Add(delay)
	}
	if _, err := w.store.update(ctx, j.cmd.Key, rec, rev); err != nil {
		return err
	}
	return &retryLater{delay: delay, why: fmt.Sprint(cause)}
}

// succeed records and publishes a success event.
func (w *Worker) succeed(ctx context.Context, j *job, rec *record, rev uint64, status int, message string, response json.RawMessage) error {
	if len(response) == 0 {
		response = json.RawMessage("null")
	}
	ev, err := schemas.NewSuccess(w.cfg.Source, j.cmd.Origin(), schemas.Success{HTTPStatus: status, Message: message, Response: response}, w.now())
	if err != nil {
		return err
	}
	return w.finish(ctx, j, rec, rev, true, "", ev)
}

// fail records and publishes a failure event. With rec nil the failure is not recorded: an
// idempotency conflict must not overwrite the key's own record, and gets an id of its own.
func (w *Worker) fail(ctx context.Context, j *job, rec *record, rev uint64, f schemas.Failure) error {
	f.Command = j.raw
	if rec != nil {
		f.Attempts = rec.Attempts
	}
	f.Retryable = f.Reason == schemas.UpstreamUnavailable
	if len(f.Errors) == 0 {
		f.Errors = json.RawMessage("null")
	}
	ev, err := schemas.NewFailure(w.cfg.Source, j.cmd.Origin(), f, w.now())
	if err != nil {
		return err
	}
	if rec == nil {
		ev.ID = schemas.ResultID(j.cmd.Key+"\x00conflict\x00"+j.cmd.ID, false, f.Reason)
	}
	return w.finish(ctx, j, rec, rev, false, f.Reason, ev)
}

// finish records the result event (so that every later delivery of the key gets the very same
// event) and publishes it.
func (w *Worker) finish(ctx context.Context, j *job, rec *record, rev uint64, ok bool, reason schemas.Reason, ev schemas.Event) error {
	raw, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	subject := schemas.ResultSubject(w.cfg.Prefix, j.cmd.Op, ok)
	w.obs.Outcome(j.cmd.Op, ok, reason)
	if rec == nil {
		return w.pub.Publish(ctx, subject, ev.ID, raw)
	}
	rec.OK, rec.Subject, rec.EventID, rec.Event, rec.Updated = ok, subject, ev.ID, raw, w.now()
	rec.State = stateFailed
	if ok {
		rec.State = stateSucceeded
	}
	if rev, err = w.store.update(ctx, j.cmd.Key, rec, rev); err != nil {
		return err
	}
	j.log.Info("command finished", "ok", ok, "reason", reason, "attempts", rec.Attempts)
	return w.publish(ctx, j, rec, rev)
}

// publish puts the recorded event on the result stream and marks the record published.
func (w *Worker) publish(ctx context.Context, j *job, rec *record, rev uint64) error {
	if err := w.pub.Publish(ctx, rec.Subject, rec.EventID, rec.Event); err != nil {
		return err
	}
	if rec.State == statePublished {
		return nil
	}
	rec.State, rec.Updated = statePublished, w.now()
	if _, err := w.store.update(ctx, j.cmd.Key, rec, rev); err != nil && !errors.Is(err, errLost) {
		// The event is out; a later delivery publishes it again, which the stream drops.
		j.log.Warn("could not mark record published", "err", err)
	}
	return nil
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
