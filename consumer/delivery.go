package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/schemas"
)

// Delivery and settling: the one place that acknowledges a command.
//
// A command is acked once its result event is on the result stream (or its dead letter on the
// dead-letter stream), never before: a crash in between makes the next owner publish the recorded
// event again, which the stream drops as a duplicate within its window. A command is never naked
// nor terminated: retries wait in the owner's memory, and a command the owner stops working on
// (it lost the pin, it stops) stays unacked, so the next owner's reset delivers it again in order.

// work runs a ready task until it is settled or must wait.
func (w *Worker) work(ctx context.Context, t *task) {
	w.mu.Lock()
	if !t.started {
		if t.epoch != w.own.epoch || w.stopping {
			w.mu.Unlock()
			return // dropped: the next owner gets it again
		}
		t.started = true
		w.active.Add(1)
	}
	w.mu.Unlock()
	t.waited()

	wait, err := w.protect(t.within(ctx), t)
	switch {
	case err == nil && wait == 0:
		t.errs = 0
		w.settle(t)
	case err == nil:
		t.errs = 0
		w.later(t, wait)
	case ctx.Err() != nil:
		w.handBack(t)
	default:
		t.errs++
		w.log.Warn("command not finished, will be worked on again", "subject", t.msg.Subject(), "seq", t.seq, "err", err)
		w.later(t, infraDelay(t.errs))
	}
}

// settle acknowledges a command whose result (or dead letter) is stored.
func (w *Worker) settle(t *task) {
	_ = t.msg.Ack()
	t.endTrace("settled", nil)
	w.obs.Settled(t.op, time.Since(t.received))
	w.release(t)
}

// handBack gives a started command back unfinished: its record's lease is shortened so that the
// next owner need not wait for it (after an unknown outcome, only until the read-back was due),
// and the command stays unacked.
func (w *Worker) handBack(t *task) {
	if c := t.claim; c != nil && !c.rec.done() && c.rec.Owner == w.cfg.Instance {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		now := w.now()
		lease := now
		if c.rec.State == stateSending && t.resumeAt.After(now) {
			lease = t.resumeAt
		}
		if err := c.hold(ctx, w.cfg.Instance, now, lease, c.rec.ReadBackFailures, nil); err != nil {
			w.log.Debug("hand back record", "err", err)
		}
		cancel()
	}
	t.endTrace("handed back", nil)
	w.release(t)
}

// protect runs one step of t and turns what no retry can mend (a panic, a transition the state
// machine forbids, a record that cannot be read, a result JetStream refuses) into a dead letter:
// the command's record keeps its state, the command is acked, and the worker serves on. A dead
// letter JetStream refuses too is logged and counted, and the command acked: it stays on the
// command stream for its retention.
func (w *Worker) protect(ctx context.Context, t *task) (wait time.Duration, err error) {
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("panic working on a command", "subject", t.msg.Subject(), "seq", t.seq, "panic", p, "stack", string(debug.Stack()))
			wait, err = w.unworkable(ctx, t, fmt.Sprintf("panic: %v", p))
		}
	}()
	wait, err = w.step(ctx, t)
	if errors.Is(err, errTransition) || errors.Is(err, errCorrupt) || errors.Is(err, publisher.ErrRefused) {
		w.log.Error("command cannot be worked on", "subject", t.msg.Subject(), "seq", t.seq, "err", err)
		return w.unworkable(ctx, t, err.Error())
	}
	return wait, err
}

// unworkable dead-letters t with reason; when its dead letter is what was refused, it gives up.
func (w *Worker) unworkable(ctx context.Context, t *task, reason string) (time.Duration, error) {
	w.obs.Unworkable(t.op)
	if t.deadLetter != "" {
		w.log.Error("dead letter refused: the command stays on the command stream only", "subject", t.msg.Subject(),
			"seq", t.seq, "reason", reason)
		return 0, nil
	}
	t.deadLetter = reason
	err := w.bury(ctx, t)
	if errors.Is(err, publisher.ErrRefused) {
		return w.unworkable(ctx, t, err.Error())
	}
	return 0, err
}

// step works on a command until it needs to wait (it returns the wait) or its result is out
// (0, nil).
func (w *Worker) step(ctx context.Context, t *task) (time.Duration, error) {
	switch {
	case t.deadLetter != "":
		return 0, w.bury(ctx, t)
	case t.invalid != nil:
		return 0, w.refuse(ctx, t)
	case t.claim == nil:
		return w.acquire(ctx, t)
	case t.claim.rec.done():
		return 0, w.publishRecorded(ctx, t.claim)
	}
	return w.run(ctx, t)
}

// bury copies a message that cannot be worked on to the dead-letter stream.
func (w *Worker) bury(ctx context.Context, t *task) error {
	w.obs.DeadLetter()
	w.log.Warn("dead letter", "subject", t.msg.Subject(), "reason", t.deadLetter, "seq", t.seq)
	return w.pub.DeadLetter(ctx, schemas.DeadLetterSubject(w.cfg.Prefix, t.msg.Subject()), t.msg, t.deadLetter)
}

// refuse publishes the invalid_command failure of a JSON object that is not a valid command.
// Nothing is recorded: no call is made, and a redelivery produces the very same event. A command
// too large for a failure event to carry is copied to the dead-letter stream, and its failure
// carries "command": null.
func (w *Worker) refuse(ctx context.Context, t *task) error {
	raw := t.raw
	o := schemas.OriginOf(t.op, raw)
	o.Merchant = w.cfg.Merchant
	f := t.invalid.Failure(raw)
	if len(raw) > schemas.MaxCommandBytes {
		w.obs.DeadLetter()
		if err := w.pub.DeadLetter(ctx, schemas.DeadLetterSubject(w.cfg.Prefix, t.msg.Subject()), t.msg, "command too large"); err != nil {
			return err
		}
		f.Command = json.RawMessage("null")
	}
	ev, err := schemas.NewFailure(w.cfg.Source, o, f, w.now())
	if err != nil {
		return err
	}
	t.traced(&ev)
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	w.obs.Outcome(t.op, false, schemas.InvalidCommand)
	ctx, span := w.child(ctx, "frontpay.publish")
	defer span.End()
	w.log.Warn("invalid command", "op", t.op, "id", o.CommandID, "key", o.Key, "correlationid", o.CorrelationID,
		"resource", o.Resource, "problems", len(t.invalid.Fields))
	return w.pub.Publish(ctx, schemas.ResultSubject(w.subjects(), t.op, false), ev.ID, b)
}
