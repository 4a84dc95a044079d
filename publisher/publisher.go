// Package publisher puts events on JetStream and waits until the stream has stored them.
//
// Every event carries Nats-Msg-Id, so a copy published again within the stream's duplicate window
// is dropped by the server. Publish retries transient failures (no responders while a server
// restarts, timeouts) until its context ends: the caller acknowledges its input only after Publish
// returned nil, so an event is never lost for want of a retry. A refusal that no retry can mend
// (ErrRefused) ends it at once.
package publisher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
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
	// HeaderOriginalPrefix prefixes the original's own Nats-* headers on its dead letter
	// (Frontpay-Original-Nats-Msg-Id, Frontpay-Original-Nats-Expected-Stream, …): kept as they were,
	// JetStream would act on them when storing the copy (CONTRACT.md section 6).
	HeaderOriginalPrefix = "Frontpay-Original-"
)

// ErrRefused is wrapped by the error of Publish and DeadLetter when JetStream refuses the message
// in a way that sending it again cannot mend: a 4xx-class JetStream API error (such as 10060
// expected stream does not match, 10071 wrong last sequence, 10054 message over the stream's size
// limit), or a message over the server's max payload. Such a message is not retried; the JetStream
// error stays in the chain for errors.As.
var ErrRefused = errors.New("refused by JetStream")

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
// (or had it already: a duplicate counts as stored). It retries until ctx ends, unless the
// message is refused (ErrRefused).
func (p *Publisher) Publish(ctx context.Context, subject, msgID string, data []byte) error {
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set("Content-Type", ContentType)
	_, err := p.publish(ctx, m)
	return err
}

// DeadLetter copies a message that cannot be processed, its bytes and headers, to subject,
// adding headers that say why and where it came from. The original's Nats-* headers are kept
// under HeaderOriginalPrefix, so the copy's Nats-Msg-Id is the worker's alone:
// "deadletter-<stream>-<sequence>" of the original, the same when the copy is made again after a
// crash. Since anyone allowed to publish on subject could store a message under that id first,
// a copy that the stream calls a duplicate is read back: unless the stored message is this very
// copy (same subject, origin and bytes), the copy is stored again without an id, so that nothing
// is lost.
func (p *Publisher) DeadLetter(ctx context.Context, subject string, orig jetstream.Msg, reason string) error {
	m := nats.NewMsg(subject)
	m.Data = orig.Data()
	for k, vs := range orig.Headers() {
		if len(k) >= 5 && strings.EqualFold(k[:5], "Nats-") {
			k = HeaderOriginalPrefix + k
		}
		m.Header[k] = append(m.Header[k], vs...)
	}
	m.Header.Set(HeaderDeadLetterReason, reason)
	m.Header.Set(HeaderDeadLetterSubject, orig.Subject())
	md, err := orig.Metadata()
	if err != nil { // not a JetStream message: nothing names it for an id
		_, err = p.publish(ctx, m)
		return err
	}
	m.Header.Set(HeaderDeadLetterStream, md.Stream)
	m.Header.Set(HeaderDeadLetterSeq, strconv.FormatUint(md.Sequence.Stream, 10))
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("deadletter-%s-%d", md.Stream, md.Sequence.Stream))
	ack, err := p.publish(ctx, m)
	if err != nil || !ack.Duplicate {
		return err
	}
	ours, err := p.isCopy(ctx, ack, m)
	if err != nil || ours {
		return err
	}
	p.log.Warn("dead-letter id taken by another message; storing the copy without an id",
		"subject", subject, "id", m.Header.Get(jetstream.MsgIDHeader), "taken_by_seq", ack.Sequence)
	m.Header.Del(jetstream.MsgIDHeader)
	_, err = p.publish(ctx, m)
	return err
}

// isCopy reads back the message a duplicate PubAck names and tells whether it is m: the same
// subject, origin headers and bytes. A message no longer there is not.
func (p *Publisher) isCopy(ctx context.Context, ack *jetstream.PubAck, m *nats.Msg) (bool, error) {
	var stored *jetstream.RawStreamMsg
	err := p.retry(ctx, "read back "+m.Subject, func(ctx context.Context) error {
		s, err := p.js.Stream(ctx, ack.Stream)
		if err != nil {
			return err
		}
		stored, err = s.GetMsg(ctx, ack.Sequence)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return backoff.Permanent(err)
		}
		return err
	})
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	for _, k := range []string{HeaderDeadLetterStream, HeaderDeadLetterSeq} {
		if stored.Header.Get(k) != m.Header.Get(k) {
			return false, nil
		}
	}
	return stored.Subject == m.Subject && bytes.Equal(stored.Data, m.Data), nil
}

func (p *Publisher) publish(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
	var ack *jetstream.PubAck
	err := p.retry(ctx, "publish to "+m.Subject, func(ctx context.Context) error {
		var err error
		ack, err = p.js.PublishMsg(ctx, m)
		if refused(err) {
			return backoff.Permanent(fmt.Errorf("%w: %w", ErrRefused, err))
		}
		return err
	})
	return ack, err
}

// retry runs op, each attempt bounded by the attempt timeout, until it succeeds, returns a
// backoff.Permanent error, or ctx ends.
func (p *Publisher) retry(ctx context.Context, what string, op func(context.Context) error) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	b.MaxInterval = 2 * time.Second
	b.MaxElapsedTime = 0
	err := backoff.Retry(func() error {
		actx, cancel := context.WithTimeout(ctx, p.attempt)
		defer cancel()
		err := op(actx)
		var permanent *backoff.PermanentError
		if err != nil && ctx.Err() == nil && !errors.As(err, &permanent) {
			p.log.Warn(what+" failed, retrying", "err", err)
		}
		return err
	}, backoff.WithContext(b, ctx))
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// refused tells whether JetStream refused a publish for good: a 4xx-class API error, except
// those that pass (408 timeout, 409 the same id being stored just now, 429 too many requests), or
// a message over the server's max payload.
func refused(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) {
		return true
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.Code {
	case 408, 409, 429:
		return false
	}
	return apiErr.Code >= 400 && apiErr.Code < 500
}
