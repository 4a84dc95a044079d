package status

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
)

// History poll settings.
const (
	// CheckpointKey is the state bucket key of the history checkpoint: the end of the last window
	// read, in Unix seconds.
	CheckpointKey = consumer.KeyCheckpoint
	// Overlap is how far before the checkpoint a poll starts reading: the history has minute
	// precision, and a change may be recorded a little after it happened.
	Overlap = 2 * time.Minute
	// FirstWindow is what the first poll, with no checkpoint, reads: the API's own default.
	FirstWindow = 24 * time.Hour
	// MaxWindow is the longest window one history call asks for; after an outage a poll catches
	// up in windows of this size, storing the checkpoint after each.
	MaxWindow = 24 * time.Hour
)

// historyLayout is the history's "datetime": "21.01.2024 04:00".
const historyLayout = "02.01.2006 15:04"

// Run polls the history every Config.Poll, the first time at once, until ctx ends. With Poll 0 it
// returns at once. A failed poll is logged; the next one reads its window again.
func (s *Service) Run(ctx context.Context) {
	if s.cfg.Poll <= 0 {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.Poll(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("history poll failed", "err", err)
		}
		t.Reset(s.cfg.Poll)
	}
}

// Poll reads the history once, from the checkpoint (less Overlap; the last FirstWindow without
// one) to now, publishes the reserved, captured and charged changes it has not published before,
// and moves the checkpoint on.
func (s *Service) Poll(ctx context.Context) error {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	now := s.cfg.Now().UTC().Truncate(time.Second)
	cp, rev, err := s.checkpoint(ctx)
	if err != nil {
		return err
	}
	start := now.Add(-FirstWindow)
	if !cp.IsZero() {
		start = cp.Add(-Overlap)
	}
	if start.After(now) { // the clock went back
		start = now
	}
	for {
		end := start.Add(MaxWindow)
		if end.After(now) {
			end = now
		}
		if err := s.pollWindow(ctx, start, end); err != nil {
			return err
		}
		if end.After(cp) { // never move the checkpoint back
			if rev, err = s.storeCheckpoint(ctx, end, rev); err != nil {
				return err
			}
		}
		if !end.Before(now) {
			return nil
		}
		start = end
	}
}

// pollWindow publishes the changes of one window of the history.
func (s *Service) pollWindow(ctx context.Context, start, end time.Time) error {
	res, err := s.api.History(ctx, start, end)
	if err != nil {
		return fmt.Errorf("read history %d–%d: %w", start.Unix(), end.Unix(), err)
	}
	s.log.Debug("history read", "start", start, "end", end, "entries", len(res.Data))
	for _, e := range res.Data {
		c, why, ok := s.fromHistory(e)
		switch {
		case !ok:
			continue // not a status change
		case why != "":
			s.reject(SourceHistory, c.uuid, c.status, why)
			continue
		}
		if err := s.record(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// fromHistory canonicalises a history entry. ok is false for entries that are not status changes;
// why says what is wrong with one that cannot be read.
func (s *Service) fromHistory(e frontpay.HistoryEvent) (c change, why string, ok bool) {
	c = change{resource: "reservation", status: strings.ToLower(strings.TrimSpace(e.Title)), source: SourceHistory}
	if !reservationStatuses[c.status] {
		return c, "", false
	}
	if frontpay.ValidateUUID("uuid", e.UUID) != nil {
		return c, "history entry without a valid uuid", true
	}
	c.uuid = e.UUID
	at, err := time.ParseInLocation(historyLayout, strings.TrimSpace(e.Datetime), s.cfg.HistoryLocation)
	if err != nil {
		return c, "history entry with an unreadable datetime", true
	}
	c.at = minute(at)
	cents, err := e.Amount.Cents()
	if err != nil || cents < 0 {
		return c, "history entry with an unreadable amount", true
	}
	c.cents = cents
	if e.PaymentMethod != nil {
		if m, ok := paymentMethod(*e.PaymentMethod); ok {
			c.method = m
		}
	}
	return c, "", true
}

// checkpoint reads the checkpoint and its revision; zero time (and revision 0 if absent) when
// there is none or it cannot be read.
func (s *Service) checkpoint(ctx context.Context) (time.Time, uint64, error) {
	e, err := s.kv.Get(ctx, s.checkpointKey())
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return time.Time{}, 0, nil
	case err != nil:
		return time.Time{}, 0, fmt.Errorf("read %s: %w", s.checkpointKey(), err)
	}
	sec, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil || sec <= 0 {
		s.log.Warn("history checkpoint unreadable, starting over", "key", s.checkpointKey())
		return time.Time{}, e.Revision(), nil
	}
	return time.Unix(sec, 0).UTC(), e.Revision(), nil
}

// storeCheckpoint sets the checkpoint to end with compare-and-swap on rev (0: create). When
// another poller moved it meanwhile, the later of the two stays.
func (s *Service) storeCheckpoint(ctx context.Context, end time.Time, rev uint64) (uint64, error) {
	val := []byte(strconv.FormatInt(end.Unix(), 10))
	for range 10 {
		var err error
		var n uint64
		if rev == 0 {
			n, err = s.kv.Create(ctx, s.checkpointKey(), val)
		} else {
			n, err = s.kv.Update(ctx, s.checkpointKey(), val, rev)
		}
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return rev, fmt.Errorf("store %s: %w", s.checkpointKey(), err)
		}
		cur, curRev, err := s.checkpoint(ctx)
		if err != nil {
			return rev, err
		}
		if !cur.IsZero() && !cur.Before(end) {
			return curRev, nil // another poller is further on
		}
		rev = curRev
	}
	return rev, fmt.Errorf("store %s: too much contention", s.checkpointKey())
}

// checkpointKey is the state bucket key of the merchant's history checkpoint: CheckpointKey in a
// one-merchant deployment, CheckpointKey and the merchant's id after a dot otherwise.
func (s *Service) checkpointKey() string {
	if s.cfg.Merchant == "" {
		return CheckpointKey
	}
	return CheckpointKey + "." + s.cfg.Merchant
}
