package consumer

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// Replay (CONTRACT.md section 5): which failed commands to publish again, and the replays
// themselves. It must agree with acquire (process.go), which lets a replay through only where the
// key's record ended with the very failure the replay names (a new generation, record.go); any
// other replay is answered with the key's recorded result and makes no call. So replay selects
// only such failures: it reads the result stream for candidates, and each candidate's record for
// the verdict. A failure event that the record does not hold (one forged on a result subject, a
// copy of an older failure, one superseded by a later generation, one the worker never records:
// invalid_command and idempotency_conflict) is counted and left out. The one exception is the
// answer to an unknown merchant's command (invalid_command, unknownMerchant, CONTRACT.md section
// 9): it is never recorded either, and is replayed where its key has no record, which is what
// acquire then finds: the replay is the key's first command.

// ReplayFilter says which failures SelectReplays selects.
type ReplayFilter struct {
	// Ops are the operations whose results are read; nil: every operation.
	Ops []frontpay.Operation
	// Merchant, in a deployment of several merchants, selects that merchant's failures; "":
	// every merchant's.
	Merchant string
	// From and To bound when the result stream stored the events: zero From reads from the
	// stream's first event, zero To up to the last event it holds when the scan starts.
	From, To time.Time
	// Reason selects failures of this reason only. outcome_unknown failures are selected only
	// when Reason names them: their effect may have happened.
	Reason schemas.Reason
	// Key and EventID select the failure of one idempotency key, or one failure event.
	Key, EventID string
	// Limit selects at most this many, the oldest failing keys first; 0: no limit.
	Limit int
}

// FailureEvent is a failure event as the result stream holds it.
type FailureEvent struct {
	Op       frontpay.Operation // of the subject it was stored on
	Merchant string             // of the subject it was stored on ("" in a one-merchant deployment)
	Event    schemas.Event
	Data     schemas.Failure
	At       time.Time // when the stream stored it
	// subject and raw are the subject and the bytes as stored.
	subject string
	raw     []byte
}

// ReplaySelection is what SelectReplays found.
type ReplaySelection struct {
	Scanned int // result events read
	Failed  int // keys whose latest result in the window is a failure
	Matched int // of those, the failures the filter's Ops, Reason, Key and EventID select
	// Selected are the failures to replay, in the order their keys first appear in the window.
	Selected []FailureEvent
	Skipped  ReplaySkipped
}

// ReplaySkipped counts the failures the filter matched that are not selected, by why.
type ReplaySkipped struct {
	Succeeded   int // the key has succeeded since
	Unknown     int // outcome_unknown, and the filter's Reason does not name it
	NoCommand   int // the failure carries no command to replay (too large, or not a JSON object)
	NotRecorded int // not the failure the worker recorded last for the key
	OverLimit   int // beyond the filter's Limit
}

// SelectReplays reads the result events of f.Ops stored between f.From and f.To, up to the last
// the result stream holds when it starts, and selects the failures to replay. For each key whose
// latest result is a failure, it selects that failure where the filter matches it, it is not an
// outcome_unknown failure that f.Reason leaves out, it carries a command, and the key's record in
// the state bucket ended with that very failure; it counts every other one it matched in Skipped.
// A key whose latest result is a success is not replayed (its last failure, where the filter
// matches it, counts as succeeded since). progress, where not nil, is called at every event with
// the events read so far and an estimate of all it will read.
func (t Topology) SelectReplays(ctx context.Context, js jetstream.JetStream, f ReplayFilter, progress func(scanned, total int)) (*ReplaySelection, error) {
	sc, err := t.scanFailures(ctx, js, f, progress)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, t.StateBucket())
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", t.StateBucket(), err)
	}
	sel := &ReplaySelection{Scanned: sc.scanned, Failed: len(sc.failures)}
	for _, e := range sc.superseded {
		if f.matches(e) {
			sel.Skipped.Succeeded++
		}
	}
	for _, e := range sc.failures {
		if !f.matches(e) {
			continue
		}
		sel.Matched++
		if e.Data.Reason == schemas.OutcomeUnknown && f.Reason != schemas.OutcomeUnknown {
			sel.Skipped.Unknown++
			continue
		}
		if !isObject(e.Data.Command) {
			sel.Skipped.NoCommand++
			continue
		}
		s := &store{kv: kv, merchant: e.Merchant}
		c, err := s.load(ctx, e.Event.IdempotencyKey)
		if err != nil {
			return nil, err
		}
		switch {
		case c.rec.State == stateSucceeded:
			sel.Skipped.Succeeded++
		case !c.rec.endedWith(e) && !(c.rev == 0 && e.unknownMerchant()):
			sel.Skipped.NotRecorded++
		case f.Limit > 0 && len(sel.Selected) == f.Limit:
			sel.Skipped.OverLimit++
		default:
			sel.Selected = append(sel.Selected, e)
		}
	}
	return sel, nil
}

// endedWith reports whether the record ended with the failure event e, as the worker recorded
// and published it (the same subject and bytes): the failure a replay of which acquire lets
// through (rec.EventID == replayof).
func (r *record) endedWith(e FailureEvent) bool {
	return r.done() && !r.OK && r.EventID == e.Event.ID && r.Subject == e.subject && bytes.Equal(r.Event, e.raw)
}

// unknownMerchant reports whether e answers a command of a merchant the deployment did not know.
func (e FailureEvent) unknownMerchant() bool {
	return e.Merchant != "" && e.Data.Reason == schemas.InvalidCommand && e.Data.Message == "unknownMerchant"
}

// matches reports whether the filter's Reason, Key and EventID select e (Ops chose what was read).
func (f *ReplayFilter) matches(e FailureEvent) bool {
	return (f.Reason == "" || e.Data.Reason == f.Reason) && (f.Key == "" || e.Event.IdempotencyKey == f.Key) &&
		(f.EventID == "" || e.Event.ID == f.EventID)
}

// isObject reports whether raw is a JSON object.
func isObject(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(raw, &m) == nil && m != nil
}

// failureScan is what scanFailures found in the result stream.
type failureScan struct {
	scanned    int            // result events read
	failures   []FailureEvent // the failures that are the latest result of their key, in the order the keys first appear
	superseded []FailureEvent // the last failure of each key that has succeeded since
}

// scanFailures reads the result events of f.Ops stored between f.From and f.To and returns the
// failures that are the latest result of their key: a key that failed and then succeeded (a
// replay that worked) is not among them, but its last failure is among the superseded.
func (t Topology) scanFailures(ctx context.Context, js jetstream.JetStream, f ReplayFilter, progress func(scanned, total int)) (failureScan, error) {
	ops := f.Ops
	if len(ops) == 0 {
		ops = frontpay.Operations()
	}
	prefix := t.Prefix
	if t.Merchants {
		prefix = t.SubjectPrefix(cmp.Or(f.Merchant, "*"))
	}
	var subjects []string
	for _, op := range ops {
		subjects = append(subjects, schemas.ResultSubject(prefix, op, false), schemas.ResultSubject(prefix, op, true))
	}
	stream, err := js.Stream(ctx, t.ResultStream())
	if err != nil {
		return failureScan{}, fmt.Errorf("read %s: %w", t.ResultStream(), err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return failureScan{}, err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !f.From.IsZero() {
		if info.State.LastTime.Before(f.From) {
			return failureScan{}, nil // nothing stored since: no need for firstSince to wait out its fetch
		}
		first, err := firstSince(ctx, stream, f.From)
		if err != nil {
			return failureScan{}, fmt.Errorf("read %s: %w", t.ResultStream(), err)
		}
		if first == 0 || first > info.State.LastSeq {
			return failureScan{}, nil // nothing stored since
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, first
	}
	c, err := stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return failureScan{}, fmt.Errorf("read %s: %w", t.ResultStream(), err)
	}
	latest := map[string]FailureEvent{}       // by key: its latest result, a failure or a success
	failedBefore := map[string]FailureEvent{} // by key: its latest failure
	var order []string
	scanned := 0
	result := func() (failureScan, error) {
		out := failureScan{scanned: scanned}
		for _, k := range order {
			if e := latest[k]; !strings.HasSuffix(e.Event.Type, ".succeeded") {
				out.failures = append(out.failures, e)
			} else if e, ok := failedBefore[k]; ok {
				out.superseded = append(out.superseded, e)
			}
		}
		return out, nil
	}
	// Read up to what the stream held when we started: later events are not ours to judge.
	last := info.State.LastSeq
	for {
		batch, err := c.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return failureScan{}, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return failureScan{}, err
			}
			if (!f.To.IsZero() && md.Timestamp.After(f.To)) || md.Sequence.Stream > last {
				return result()
			}
			scanned++
			if progress != nil {
				progress(scanned, scanned+int(md.NumPending))
			}
			if e, ok := t.resultEvent(m.Subject(), m.Data(), md.Timestamp); ok {
				k := schemas.MerchantKey(e.Merchant, e.Event.IdempotencyKey)
				if _, seen := latest[k]; !seen {
					order = append(order, k)
				}
				if strings.HasSuffix(e.Event.Type, ".failed") {
					failedBefore[k] = e
				}
				latest[k] = e
			}
			// The last event to read: the stream's last when the scan started, or the last of
			// those the filter selects (the server counts none pending after it; anything stored
			// since the scan started comes after last). Without this a scan whose filter leaves the
			// stream's last event out would end only when its fetch had waited out.
			if md.Sequence.Stream >= last || md.NumPending == 0 {
				return result()
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return failureScan{}, err
		}
		if n == 0 {
			// An empty fetch is the end only where nothing is pending: a busy server can let a
			// fetch wait out with messages still to come.
			info, err := c.Info(ctx)
			if err != nil {
				return failureScan{}, err
			}
			if info.NumPending == 0 {
				return result()
			}
		}
	}
}

// firstSince returns the sequence of the first message the stream stored at or after from, 0
// when there is none. A consumer with several filter subjects that starts by time can miss the
// first message of one of them (nats-server 2.15.2), so the scan's consumer starts by sequence,
// and this unfiltered one, which starts by time correctly, finds the sequence.
func firstSince(ctx context.Context, stream jetstream.Stream, from time.Time) (uint64, error) {
	c, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from})
	if err != nil {
		return 0, err
	}
	m, err := c.Next(jetstream.FetchMaxWait(time.Second))
	if errors.Is(err, nats.ErrTimeout) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	md, err := m.Metadata()
	if err != nil {
		return 0, err
	}
	return md.Sequence.Stream, nil
}

// resultEvent reads a result event stored on subject at at; false when it is not one: not an
// event, or a failure without a command member.
func (t Topology) resultEvent(subject string, data []byte, at time.Time) (FailureEvent, bool) {
	e := FailureEvent{At: at, subject: subject, raw: data}
	name, ok := strings.CutPrefix(subject, t.Prefix)
	if !ok {
		return e, false
	}
	if t.Merchants {
		if e.Merchant, name, ok = strings.Cut(name, "."); !ok {
			return e, false
		}
	}
	e.Op = frontpay.Operation(strings.TrimSuffix(strings.TrimSuffix(name, ".failed"), ".succeeded"))
	if json.Unmarshal(data, &e.Event) != nil || json.Unmarshal(e.Event.Data, &e.Data) != nil {
		return e, false
	}
	return e, strings.HasSuffix(e.Event.Type, ".succeeded") || len(e.Data.Command) > 0
}

// replayCommand returns the command event of e again, as a replay: the same idempotency key, the
// extension replayof naming the failure, the time now, and an id derived from the failure's, so
// that replaying the same failure twice publishes the same event (the command stream drops the
// copy within its duplicate window, and the worker answers a later one as a duplicate).
func replayCommand(e FailureEvent, now time.Time) (id string, raw []byte, err error) {
	var cmd map[string]json.RawMessage
	if err := json.Unmarshal(e.Data.Command, &cmd); err != nil || cmd == nil {
		return "", nil, fmt.Errorf("failure %s carries no command object", e.Event.ID)
	}
	sum := sha256.Sum256([]byte("replay\x00" + e.Event.ID))
	id = "replay-" + hex.EncodeToString(sum[:16])
	set := func(name, value string) { cmd[name], _ = json.Marshal(value) }
	set("id", id)
	set("idempotencykey", e.Event.IdempotencyKey)
	set("replayof", e.Event.ID)
	set("time", now.UTC().Format(time.RFC3339))
	raw, err = json.Marshal(cmd)
	return id, raw, err
}

// Replay publishes the command of a failure that SelectReplays selected again, as a replay, on
// its operation's command subject with Nats-Msg-Id set to the replay's id, and returns that id.
func (t Topology) Replay(ctx context.Context, js jetstream.JetStream, e FailureEvent) (string, error) {
	id, raw, err := replayCommand(e, time.Now())
	if err != nil {
		return "", err
	}
	m := nats.NewMsg(schemas.CommandSubject(t.SubjectPrefix(e.Merchant), e.Op))
	m.Data = raw
	m.Header.Set(jetstream.MsgIDHeader, id)
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return "", fmt.Errorf("publish replay of %s: %w", e.Event.ID, err)
	}
	return id, nil
}
