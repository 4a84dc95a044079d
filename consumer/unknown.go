package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/schemas"
)

// UnknownMerchants answers the commands of merchants that are not in the merchants file, in a
// deployment of several: invalid_command, message unknownMerchant, on the merchant's own result
// subject, with no call (CONTRACT.md section 9). Which commands are an unknown merchant's is
// decided with the merchants' consumers through the state bucket (merchants.go). Every replica
// pulls from its consumer; the answers need no order, and the same answer twice is one event.
type UnknownMerchants struct {
	topo   Topology
	source string
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	pub    Publisher
	obs    Observer
	log    *slog.Logger
	now    func() time.Time

	mu     sync.Mutex
	starts map[string]uint64 // merchants known to have a consumer: where it starts
}

// NewUnknownMerchants returns the answerer of unknown merchants' commands for a topology with
// Merchants set; source is the source of its events.
func NewUnknownMerchants(topo Topology, source string, js jetstream.JetStream, kv jetstream.KeyValue, pub Publisher, obs Observer, log *slog.Logger) *UnknownMerchants {
	if obs == nil {
		obs = nopObserver{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &UnknownMerchants{topo: topo, source: source, js: js, kv: kv, pub: pub, obs: obs, log: log,
		now: time.Now, starts: map[string]uint64{}}
}

// Run answers until ctx ends.
func (u *UnknownMerchants) Run(ctx context.Context) error {
	c, err := u.js.Consumer(ctx, u.topo.CommandStream(), UnknownMerchantsConsumer)
	if err != nil {
		return fmt.Errorf("open consumer %s: %w", UnknownMerchantsConsumer, err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		if err := u.handle(ctx, m); err != nil {
			if ctx.Err() == nil {
				u.log.Warn("unknown merchant's command not answered, will be redelivered", "subject", m.Subject(), "err", err)
			}
			_ = m.NakWithDelay(time.Second)
			return
		}
		_ = m.Ack()
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { u.log.Debug("consume", "err", err) }))
	if err != nil {
		return fmt.Errorf("consume %s: %w", UnknownMerchantsConsumer, err)
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	return nil
}

// handle answers one command if its merchant has no consumer for it.
func (u *UnknownMerchants) handle(ctx context.Context, m jetstream.Msg) error {
	md, err := m.Metadata()
	if err != nil {
		return err
	}
	merchant, _, _ := strings.Cut(strings.TrimPrefix(m.Subject(), u.topo.Prefix), ".")
	u.mu.Lock()
	start, known := u.starts[merchant]
	u.mu.Unlock()
	if known && md.Sequence.Stream >= start {
		return nil // the merchant's consumer's
	}
	start, unknown, err := unknownAt(ctx, u.kv, merchant, md.Sequence.Stream)
	if err != nil {
		return err
	}
	if start != 0 {
		u.mu.Lock()
		u.starts[merchant] = start
		u.mu.Unlock()
	}
	if !unknown {
		return nil
	}
	prefix := u.topo.SubjectPrefix(merchant)
	op, ok := schemas.OpFromSubject(prefix, m.Subject())
	raw := schemas.Structured(m.Headers(), m.Data())
	_, perr := schemas.ParseCommand(op, raw, u.now())
	var invalid *schemas.InvalidError
	if !ok || (perr != nil && !errors.As(perr, &invalid)) {
		u.obs.DeadLetter()
		return u.pub.DeadLetter(ctx, schemas.DeadLetterSubject(u.topo.Prefix, m.Subject()), m, "not a JSON object")
	}
	o := schemas.OriginOf(op, raw)
	o.Merchant = merchant
	errs, _ := json.Marshal(map[string][]string{"merchant": {fmt.Sprintf("%q is not a merchant of this deployment", merchant)}})
	ev, err := schemas.NewFailure(u.source, o, schemas.Failure{
		Reason: schemas.InvalidCommand, Message: "unknownMerchant", Errors: errs, Command: raw,
	}, u.now())
	if err != nil {
		return err
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	u.obs.Outcome(op, false, schemas.InvalidCommand)
	u.log.Warn("command of an unknown merchant", "merchant", merchant, "op", op, "id", o.CommandID, "seq", md.Sequence.Stream)
	return u.pub.Publish(ctx, schemas.ResultSubject(prefix, op, false), ev.ID, b)
}
