package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/frontpay"
)

// ConsumerLag is what an operator watches: the consumer as JetStream sees it (Operation ""),
// and each operation as its owner holds it.
//
// For the consumer: Pending is not yet delivered (NumPending), AckPending delivered and not
// acked (held by the owner: in flight, waiting for a retry or for their turn), Redelivered
// delivered more than once and not yet acked, Waiting the pull requests waiting (the owner's and
// the standbys'), OldestAge the age of the oldest command not acked.
//
// For an operation, from the owner's last report: Pending is held and not started (waiting for
// its turn on its reservation or for a worker), AckPending held in all (Pending and those in
// flight, among them those waiting for a place at the API, or waiting for a retry), OldestAge the
// age of the oldest held.
type ConsumerLag struct {
	// Merchant is the merchant, in a deployment of several ("" otherwise).
	Merchant    string `json:"merchant,omitempty"`
	Consumer    string `json:"consumer"`  // the durable consumer, frontpay-commands or frontpay-<merchant>
	Operation   string `json:"operation"` // e.g. reservation.capture; "" for the consumer as a whole
	Pending     uint64 `json:"pending"`
	AckPending  int    `json:"ackPending"`
	Redelivered int    `json:"redelivered"`
	Waiting     int    `json:"waiting"`
	// OldestAge is 0 when there is none. It is written to JSON as nanoseconds (oldestAgeNs) and
	// as a duration string (oldestAge).
	OldestAge time.Duration `json:"oldestAgeNs"`
	// Owner is the worker instance whose report the operation rows come from ("" when no
	// owner reported within three report periods), on the consumer's row.
	Owner string `json:"owner,omitempty"`
}

// MarshalJSON writes the lag with its oldest age also as a duration string, e.g. "1m30s".
func (l ConsumerLag) MarshalJSON() ([]byte, error) {
	type plain ConsumerLag
	return json.Marshal(struct {
		plain
		OldestAgeText string `json:"oldestAge"`
	}{plain(l), l.OldestAge.String()})
}

// ownerReport is what the owner writes to the state bucket every ReportEvery.
type ownerReport struct {
	Instance string        `json:"instance"`
	At       time.Time     `json:"at"`
	Every    time.Duration `json:"every"`
	Ops      []opHeld      `json:"operations"`
}

// opHeld is what the owner holds of one operation.
type opHeld struct {
	Op       frontpay.Operation `json:"operation"`
	Queued   int                `json:"queued"`
	InFlight int                `json:"inFlight"`
	Oldest   time.Time          `json:"oldest,omitzero"`
}

// held counts what the worker holds, per operation in the order of frontpay.Operations.
func (w *Worker) heldByOp() []opHeld {
	ops := frontpay.Operations()
	out := make([]opHeld, len(ops))
	for i, op := range ops {
		out[i].Op = op
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range w.held {
		i := slices.Index(ops, t.op)
		if i < 0 {
			continue // a dead letter's subject names no operation
		}
		if t.started {
			out[i].InFlight++
		} else {
			out[i].Queued++
		}
		if out[i].Oldest.IsZero() || t.received.Before(out[i].Oldest) {
			out[i].Oldest = t.received
		}
	}
	return out
}

// report writes what the owner holds to the state bucket every ReportEvery, until ctx ends.
func (w *Worker) report(ctx context.Context) {
	tick := time.NewTicker(w.cfg.ReportEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		w.mu.Lock()
		owner := w.own.synced
		w.mu.Unlock()
		if !owner {
			continue
		}
		b, err := json.Marshal(ownerReport{Instance: w.cfg.Instance, At: time.Now(), Every: w.cfg.ReportEvery, Ops: w.heldByOp()})
		if err != nil {
			continue
		}
		if _, err := w.kv.Put(ctx, KeyPrefixOwner+w.consumerName(), b); err != nil {
			w.log.Debug("owner report", "err", err)
		}
	}
}

// Lag reads a merchant's consumer ("": a one-merchant deployment's) as one row (Operation "")
// and the owner's report of each operation (one row each, in the order of frontpay.Operations):
// the consumer's state, the timestamp of its oldest unacked command, and the report from the
// state bucket. Operation rows are zero when no owner reported within three of its report
// periods. It fails when the consumer does not exist.
func (t Topology) Lag(ctx context.Context, js jetstream.JetStream, merchant string) ([]ConsumerLag, error) {
	stream, err := js.Stream(ctx, t.CommandStream())
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", t.CommandStream(), err)
	}
	name := ConsumerFor(merchant)
	c, err := stream.Consumer(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read consumer %s: %w", name, err)
	}
	info := c.CachedInfo()
	now := time.Now()
	row := ConsumerLag{
		Merchant: merchant, Consumer: name, Pending: info.NumPending, AckPending: info.NumAckPending,
		Redelivered: info.NumRedelivered, Waiting: info.NumWaiting,
	}
	if info.NumPending > 0 || info.NumAckPending > 0 {
		filter := ">"
		if merchant != "" {
			filter = t.SubjectPrefix(merchant) + ">"
		}
		m, err := stream.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(filter))
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, fmt.Errorf("oldest command of %s: %w", name, err)
		}
		if m != nil {
			row.OldestAge = max(now.Sub(m.Time), 0)
		}
	}
	rep, err := t.readReport(ctx, js, name)
	if err != nil {
		return nil, err
	}
	if rep != nil && now.Sub(rep.At) > 3*rep.Every {
		rep = nil
	}
	out := []ConsumerLag{row}
	for _, op := range frontpay.Operations() {
		l := ConsumerLag{Merchant: merchant, Consumer: name, Operation: string(op)}
		if rep != nil {
			out[0].Owner = rep.Instance
			if i := slices.IndexFunc(rep.Ops, func(h opHeld) bool { return h.Op == op }); i >= 0 {
				h := rep.Ops[i]
				l.Pending, l.AckPending = uint64(h.Queued), h.Queued+h.InFlight
				if !h.Oldest.IsZero() {
					l.OldestAge = max(now.Sub(h.Oldest), 0)
				}
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// MerchantsOf lists the merchants whose consumers exist on the command stream, sorted: "" alone in
// a one-merchant deployment.
func (t Topology) MerchantsOf(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	stream, err := js.Stream(ctx, t.CommandStream())
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", t.CommandStream(), err)
	}
	skip := append(legacyConsumers(), UnknownMerchantsConsumer)
	var out []string
	lister := stream.ConsumerNames(ctx)
	for name := range lister.Name() {
		switch id, ok := strings.CutPrefix(name, "frontpay-"); {
		case name == ConsumerName:
			out = append(out, "")
		case ok && !slices.Contains(skip, name):
			out = append(out, id)
		}
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("list consumers of %s: %w", t.CommandStream(), err)
	}
	slices.Sort(out)
	return out, nil
}

// readReport reads the last report of a consumer's owner, nil when there is none.
func (t Topology) readReport(ctx context.Context, js jetstream.JetStream, consumer string) (*ownerReport, error) {
	kv, err := js.KeyValue(ctx, t.StateBucket())
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", t.StateBucket(), err)
	}
	e, err := kv.Get(ctx, KeyPrefixOwner+consumer)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read owner report: %w", err)
	}
	var rep ownerReport
	if err := json.Unmarshal(e.Value(), &rep); err != nil {
		return nil, fmt.Errorf("decode owner report: %w", err)
	}
	return &rep, nil
}
