package testworld

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// Command is a command event as built: one a shop could publish, or, with edits, one the worker
// must refuse.
type Command struct {
	Op    frontpay.Operation
	ID    string
	Key   string // the idempotency key: the event's, or its id without one
	Event schemas.Event
	Raw   []byte // the event as published
}

func (c Command) String() string { return fmt.Sprintf("%s %s (key %s)", c.Op, c.ID, c.Key) }

// NewCommand builds a command event of op around data, unchecked, so that a test can publish
// what the worker must refuse: a new id, source "shop/test", the time now, no idempotency key
// (the id is the key) and no correlation id; edits then change the envelope as they like. A test
// that wants a command the worker's rules accept builds it with package client.
func NewCommand(tb testing.TB, op frontpay.Operation, data any, edits ...func(*schemas.Event)) Command {
	tb.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		tb.Fatal(err)
	}
	ev := schemas.Event{
		SpecVersion: "1.0", ID: schemas.NewID(), Source: "shop/test", Type: schemas.CommandSubject("", op),
		Time: time.Now().UTC().Format(time.RFC3339), DataContentType: "application/json", Data: raw,
	}
	for _, e := range edits {
		e(&ev)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		tb.Fatal(err)
	}
	return Command{Op: op, ID: ev.ID, Key: cmp.Or(ev.IdempotencyKey, ev.ID), Event: ev, Raw: b}
}

// Msg is the message that publishes c on its subject under prefix, with Nats-Msg-Id its id.
func (c Command) Msg(prefix string) *nats.Msg { return CommandMsg(prefix, c.Op, c.ID, c.Raw) }

// CommandMsg is the message that publishes the command event raw of op on its subject under
// prefix, with Nats-Msg-Id id, so that a publish retried after a lost answer is dropped as a
// duplicate.
func CommandMsg(prefix string, op frontpay.Operation, id string, raw []byte) *nats.Msg {
	m := nats.NewMsg(schemas.CommandSubject(prefix, op))
	m.Data = raw
	m.Header.Set(jetstream.MsgIDHeader, id)
	return m
}

// Publish stores m in its stream and returns its sequence, retrying (through a server restart
// or a leader election) until the stream has it; after Patience it fails tb.
func Publish(tb testing.TB, js jetstream.JetStream, m *nats.Msg) uint64 {
	tb.Helper()
	seq, err := Store(Context(tb), js, m)
	if err != nil {
		tb.Fatal(err)
	}
	return seq
}

// Store's pace: each attempt waits attemptTimeout for the stream's answer (one sent while the
// server restarts may never get one), and the next follows retryPause later.
const (
	attemptTimeout = 2 * time.Second
	retryPause     = 50 * time.Millisecond
)

// Store is Publish for a goroutine of the test's: it retries until ctx ends.
func Store(ctx context.Context, js jetstream.JetStream, m *nats.Msg) (uint64, error) {
	for {
		pctx, cancel := context.WithTimeout(ctx, attemptTimeout)
		ack, err := js.PublishMsg(pctx, m)
		cancel()
		if err == nil {
			return ack.Sequence, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("publish %s on %s: %w", m.Header.Get(jetstream.MsgIDHeader), m.Subject, err)
		case <-time.After(retryPause):
		}
	}
}

// ForgeFailure publishes, on the result subject of op under prefix, a failure event that no
// worker recorded: an upstream_unavailable failure from "mallory" that carries a valid command of
// key with data. It returns the event.
func ForgeFailure(tb testing.TB, js jetstream.JetStream, prefix string, op frontpay.Operation, key string, data any) schemas.Event {
	tb.Helper()
	c := NewCommand(tb, op, data, func(e *schemas.Event) { e.Source, e.IdempotencyKey = "mallory", key })
	ev, err := schemas.NewFailure("mallory", schemas.OriginOf(op, c.Raw), schemas.Failure{
		Reason: schemas.UpstreamUnavailable, Retryable: true, Message: "retryBudgetExhausted",
		Errors: json.RawMessage("null"), Attempts: 8, Command: c.Raw,
	}, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	m := nats.NewMsg(schemas.ResultSubject(prefix, op, false))
	if m.Data, err = json.Marshal(ev); err != nil {
		tb.Fatal(err)
	}
	m.Header.Set(jetstream.MsgIDHeader, ev.ID)
	Publish(tb, js, m)
	return ev
}
