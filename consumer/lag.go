package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/frontpay"
)

// ConsumerLag is what an operator watches of one durable consumer.
type ConsumerLag struct {
	Consumer    string `json:"consumer"`    // durable name, e.g. frontpay-reservation-capture
	Operation   string `json:"operation"`   // e.g. reservation.capture ("" for the sequencer)
	Pending     uint64 `json:"pending"`     // not yet delivered (NumPending)
	AckPending  int    `json:"ackPending"`  // delivered, not yet acked (incl. waiting for a retry)
	Redelivered int    `json:"redelivered"` // delivered more than once and not yet acked
	Waiting     int    `json:"waiting"`     // pull requests waiting
	// OldestAge is the age of the oldest command the consumer has not acked yet, delivered or
	// not; 0 when there is none. It is written to JSON as nanoseconds (oldestAgeNs) and as a
	// duration string (oldestAge).
	OldestAge time.Duration `json:"oldestAgeNs"`
}

// MarshalJSON writes the lag with its oldest age also as a duration string, e.g. "1m30s".
func (l ConsumerLag) MarshalJSON() ([]byte, error) {
	type plain ConsumerLag
	return json.Marshal(struct {
		plain
		OldestAgeText string `json:"oldestAge"`
	}{plain(l), l.OldestAge.String()})
}

// Lag reads every consumer of the topology: the twelve operation consumers and the sequencer, in
// the order of Consumers. It reads the consumers' state in one listing (falling back to one
// request per consumer the listing leaves out) and, for each consumer with anything not acked,
// the timestamp of its oldest unacked command. It fails when a consumer of the topology does not
// exist.
func (t Topology) Lag(ctx context.Context, js jetstream.JetStream) ([]ConsumerLag, error) {
	stream, err := js.Stream(ctx, t.CommandStream())
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", t.CommandStream(), err)
	}
	infos, err := listConsumers(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("list consumers of %s: %w", t.CommandStream(), err)
	}
	var streamSubjects []string
	if si := stream.CachedInfo(); si != nil {
		streamSubjects = si.Config.Subjects
	}
	ops := map[string]frontpay.Operation{}
	for _, op := range frontpay.Operations() {
		ops[ConsumerName(op)] = op
	}

	now := time.Now()
	var out []ConsumerLag
	for _, cfg := range t.Consumers() {
		info := infos[cfg.Durable]
		if info == nil {
			// Not in the listing (in a cluster, a consumer whose leader does not answer in time):
			// ask for it alone.
			c, err := stream.Consumer(ctx, cfg.Durable)
			if err != nil {
				return nil, fmt.Errorf("read consumer %s: %w", cfg.Durable, err)
			}
			info = c.CachedInfo()
		}
		l := ConsumerLag{
			Consumer:    cfg.Durable,
			Operation:   string(ops[cfg.Durable]),
			Pending:     info.NumPending,
			AckPending:  info.NumAckPending,
			Redelivered: info.NumRedelivered,
			Waiting:     info.NumWaiting,
		}
		oldest, err := oldestUnacked(ctx, stream, streamSubjects, info)
		if err != nil {
			return nil, fmt.Errorf("oldest command of %s: %w", cfg.Durable, err)
		}
		if oldest != nil {
			l.OldestAge = max(now.Sub(oldest.Time), 0)
		}
		out = append(out, l)
	}
	return out, nil
}

// listConsumers reads the state of every consumer of a stream, by durable name.
func listConsumers(ctx context.Context, stream jetstream.Stream) (map[string]*jetstream.ConsumerInfo, error) {
	infos := map[string]*jetstream.ConsumerInfo{}
	lister := stream.ListConsumers(ctx)
	// The lister's goroutine blocks until every info is taken: always read to the end.
	for info := range lister.Info() {
		infos[info.Name] = info
	}
	if err := lister.Err(); err != nil {
		return nil, err
	}
	return infos, nil
}

// oldestUnacked returns the first message after the consumer's ack floor that its filter takes:
// the oldest the consumer has not acked, delivered (acked out of order aside) or not. It returns
// nil when the consumer has nothing unacked, or when the message went (acked and removed, or
// expired) between reading the consumer and reading the stream.
func oldestUnacked(ctx context.Context, stream jetstream.Stream, streamSubjects []string, info *jetstream.ConsumerInfo) (*jetstream.RawStreamMsg, error) {
	if info.NumPending == 0 && info.NumAckPending == 0 {
		return nil, nil
	}
	from := info.AckFloor.Stream + 1
	var oldest *jetstream.RawStreamMsg
	for _, subject := range lookupSubjects(info.Config, streamSubjects) {
		m, err := stream.GetMsg(ctx, from, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		} else if err != nil {
			return nil, err
		}
		if oldest == nil || m.Sequence < oldest.Sequence {
			oldest = m
		}
	}
	return oldest, nil
}

// lookupSubjects returns the subjects to look the next message up by: the consumer's filter
// subjects, or ">" (any message of the stream) where it has none or its filters are exactly the
// stream's subjects, as the sequencer's are, which saves a lookup per filter.
func lookupSubjects(cfg jetstream.ConsumerConfig, streamSubjects []string) []string {
	filters := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		filters = []string{cfg.FilterSubject}
	}
	if len(filters) == 0 {
		return []string{">"}
	}
	if len(filters) > 1 && len(filters) == len(streamSubjects) {
		a, b := slices.Clone(filters), slices.Clone(streamSubjects)
		slices.Sort(a)
		slices.Sort(b)
		if slices.Equal(a, b) {
			return []string{">"}
		}
	}
	return filters
}
