// Package publisher puts events on JetStream and waits until the stream has stored them.
//
// Every event carries Nats-Msg-Id, so a copy published again within the stream's duplicate window
// is dropped by the server. Publish retries transient failures (no responders while a server
// restarts, timeouts) until its context ends: the caller acknowledges its input only after Publish
// returned nil, so an event is never lost for want of a retry.
package publisher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ContentType is the content type of a structured-mode CloudEvent.
const ContentType = "application/cloudevents+json"

// Headers a dead letter carries besides the original ones.
const (
	HeaderDeadLetterReason  = "Frontpay-Dead-Letter-Reason"
	HeaderDeadLetterSubject = "Frontpay-Original-Subject"
	HeaderDeadLetterStream  = "Frontpay-Original-Stream"
	HeaderDeadLetterSeq     = "Frontpay-Original-Sequence"
)

// Publisher publishes to JetStream. It is safe for concurrent use.
type Publisher struct {
	js      jetstream.JetStream
	log     *slog.Logger
	attempt time.Duration
}

// New returns a Publisher. attemptTimeout bounds one publish attempt (default 5s).
func New(js jetstream.JetStream, log *slog.Logger, attemptTimeout time.Duration) *Publisher {
	if attemptTimeout <= 0 {
		attemptTimeout = 5 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Publisher{js: js, log: log, attempt: attemptTimeout}
}

// Publish stores an event with Nats-Msg-Id msgID on subject and returns once the stream has it
// (or had it already: a duplicate counts as stored). It retries until ctx ends.
func (p *Publisher) Publish(ctx context.Context, subject, msgID string, data []byte) error {
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set("Content-Type", ContentType)
	return p.publish(ctx, m)
}

// DeadLetter copies a message that cannot be processed, its bytes and headers unchanged, to
// subject, adding headers that say why and where it came from.
func (p *Publisher) DeadLetter(ctx context.Context, subject string, orig jetstream.Msg, reason string) error {
	m := nats.NewMsg(subject)
	m.Data = orig.Data()
	for k, vs := range orig.Headers() {
		for _, v := range vs {
			m.Header.Add(k, v)
		}
	}
	m.Header.Set(HeaderDeadLetterReason, reason)
	m.Header.Set(HeaderDeadLetterSubject, orig.Subject())
	if md, err := orig.Metadata(); err == nil {
		m.Header.Set(HeaderDeadLetterStream, md.Stream)
		m.Header.Set(HeaderDeadLetterSeq, fmt.Sprint(md.Sequence.Stream))
		// The original's own Nats-Msg-Id stays as it was; without one, the copy gets an id of its
		// own, so that copying the same message again after a crash stores it once.
		if m.Header.Get(jetstream.MsgIDHeader) == "" {
			m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("deadletter-%s-%d", md.Stream, md.Sequence.Stream))
		}
	}
	return p.publish(ctx, m)
}

func (p *Publisher) publish(ctx context.Context, m *nats.Msg) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	b.MaxInterval = 2 * time.Second
	b.MaxElapsedTime = 0
	op := func() error {
		actx, cancel := context.WithTimeout(ctx, p.attempt)
		defer cancel()
		_, err := p.js.PublishMsg(actx, m)
		if err != nil && ctx.Err() == nil {
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
				return backoff.Permanent(err)
			}
			p.log.Warn("publish failed, retrying", "subject", m.Subject, "err", err)
		}
		return err
	}
	if err := backoff.Retry(op, backoff.WithContext(b, ctx)); err != nil {
		return fmt.Errorf("publish to %s: %w", m.Subject, err)
	}
	return nil
}
