package consumer

import (
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// Observer is told what the worker does, for metrics. Its methods must be fast and safe for
// concurrent use.
type Observer interface {
	// APICall: one HTTP attempt of an operation's own call, with its status (0: no answer).
	APICall(op frontpay.Operation, status int, took time.Duration)
	// Outcome: a command ended with a result event (reason empty on success).
	Outcome(op frontpay.Operation, ok bool, reason schemas.Reason)
	// Retry: a command will be attempted again.
	Retry(op frontpay.Operation)
	// Duplicate: a command was answered from its idempotency record, with no call.
	Duplicate(op frontpay.Operation)
	// IdempotencyConflict: a key came back with other data.
	IdempotencyConflict(op frontpay.Operation)
	// Ambiguous: a sent request's outcome is unknown.
	Ambiguous(op frontpay.Operation)
	// ReadBack: an unknown outcome was resolved: "applied", "not_applied" or "undecided".
	ReadBack(op frontpay.Operation, verdict string)
	// DeadLetter: a message was moved to the dead-letter stream.
	DeadLetter()
	// Settled: a command's result (or dead letter) is out and the command acked, took after it
	// was stored on the command stream.
	Settled(op frontpay.Operation, took time.Duration)
	// TakeOver: this worker became the owner of the commands and reset the consumer.
	TakeOver()
	// Unworkable: a command could not be worked on (a panic, a record that cannot be read, a
	// result or dead letter JetStream refuses) and went to the dead letters, or was left on the
	// command stream when its dead letter was refused too.
	Unworkable(op frontpay.Operation)
}

type nopObserver struct{}

func (nopObserver) APICall(frontpay.Operation, int, time.Duration)   {}
func (nopObserver) Outcome(frontpay.Operation, bool, schemas.Reason) {}
func (nopObserver) Retry(frontpay.Operation)                         {}
func (nopObserver) Duplicate(frontpay.Operation)                     {}
func (nopObserver) IdempotencyConflict(frontpay.Operation)           {}
func (nopObserver) Ambiguous(frontpay.Operation)                     {}
func (nopObserver) ReadBack(frontpay.Operation, string)              {}
func (nopObserver) DeadLetter()                                      {}
func (nopObserver) Settled(frontpay.Operation, time.Duration)        {}
func (nopObserver) TakeOver()                                        {}
func (nopObserver) Unworkable(frontpay.Operation)                    {}
