package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// defaultNATSURL is where the tools look when NATS_URL is empty: the embedded server of a local
// worker.
const defaultNATSURL = "nats://127.0.0.1:4222"

// tool is a connection of an operator's command to the worker's NATS.
type tool struct {
	cfg  *NATSConfig
	nc   *nats.Conn
	js   jetstream.JetStream
	topo consumer.Topology
}

func openTool() (*tool, error) {
	cfg, err := LoadNATSConfig()
	if err != nil {
		return nil, err
	}
	url := cfg.NATSURL
	if url == "" {
		url = defaultNATSURL
	}
	nc, js, err := connect(cfg, url, discardLogger())
	if err != nil {
		return nil, err
	}
	return &tool{cfg: cfg, nc: nc, js: js, topo: consumer.Topology{Prefix: cfg.SubjectPrefix}}, nil
}

func (t *tool) close() { t.nc.Close() }

// parseOp checks an operation name given on the command line.
func parseOp(s string) (frontpay.Operation, error) {
	op := frontpay.Operation(s)
	if !op.Valid() {
		names := make([]string, 0, 12)
		for _, o := range frontpay.Operations() {
			names = append(names, string(o))
		}
		return "", fmt.Errorf("unknown operation %q; one of %s", s, strings.Join(names, ", "))
	}
	return op, nil
}

// parseWhen reads a time as RFC 3339 or as a duration before now ("24h").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration like 24h nor an RFC 3339 time", s)
	}
	return t, nil
}

// runPublish wraps a payload in a command event, publishes it and prints the result event.
func runPublish(ctx context.Context, args []string, stdin io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	key := fs.String("key", "", "idempotency key (default: the event id)")
	corr := fs.String("correlation", "", "correlation id")
	source := fs.String("source", "frontpay-worker/publish", "source of the command event")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the result; 0: do not wait")
	fs.Usage = func() { fmt.Fprintln(fs.Output(), "usage: frontpay-worker publish [flags] <operation> <file.json|->") }
	if err := fs.Parse(args); err != nil {
		return errors.Join(err, errUsage)
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.Join(errors.New("publish takes an operation and a file"), errUsage)
	}
	op, err := parseOp(fs.Arg(0))
	if err != nil {
		return err
	}
	var raw []byte
	if fs.Arg(1) == "-" {
		raw, err = io.ReadAll(io.LimitReader(stdin, schemas.MaxCommandBytes+1))
	} else {
		raw, err = os.ReadFile(fs.Arg(1))
	}
	if err != nil {
		return fmt.Errorf("read payload: %w", err)
	}
	if !json.Valid(raw) {
		return errors.New("the payload is not JSON")
	}
	ev, cmd, err := newCommand(op, *source, *key, *corr, json.RawMessage(raw))
	if err != nil {
		return err
	}
	// The worker would refuse it: say why now, and publish nothing.
	if _, err := schemas.ParseCommand(op, cmd, time.Now()); err != nil {
		return fmt.Errorf("not a valid %s command: %w", op, err)
	}
	t, err := openTool()
	if err != nil {
		return err
	}
	defer t.close()
	results := make(chan *nats.Msg, 16)
	for _, ok := range []bool{true, false} {
		sub, err := t.nc.ChanSubscribe(schemas.ResultSubject(t.cfg.SubjectPrefix, op, ok), results)
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	m := nats.NewMsg(schemas.CommandSubject(t.cfg.SubjectPrefix, op))
	m.Data = cmd
	m.Header.Set(jetstream.MsgIDHeader, ev.ID)
	if _, err := t.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	k := ev.IdempotencyKey
	if k == "" {
		k = ev.ID
	}
	fmt.Fprintf(out, "published %s id=%s idempotencykey=%s\n", m.Subject, ev.ID, k)
	if *wait == 0 {
		return nil
	}
	timeout := time.After(*wait)
	for {
		select {
		case msg := <-results:
			var res schemas.Event
			if json.Unmarshal(msg.Data, &res) != nil || res.IdempotencyKey != k {
				continue
			}
			fmt.Fprintf(out, "%s\n", msg.Data)
			if strings.HasSuffix(res.Type, ".failed") {
				return fmt.Errorf("%s failed", op)
			}
			return nil
		case <-timeout:
			return fmt.Errorf("no result within %s (is a worker running?)", *wait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// failure is a failure event found on the result stream.
type failure struct {
	event schemas.Event
	data  schemas.Failure
	at    time.Time
}

// runReplay re-publishes failed commands from their failure events.
func runReplay(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	opName := fs.String("operation", "", "only this operation, e.g. reservation.refund")
	since := fs.String("since", "24h", "failures from this time on: a duration before now (24h) or RFC 3339")
	until := fs.String("until", "", "failures up to this time: a duration before now or RFC 3339 (default now)")
	reason := fs.String("reason", "", "only failures with this reason, e.g. upstream_unavailable")
	key := fs.String("key", "", "only the command with this idempotency key")
	eventID := fs.String("event-id", "", "only the failure event with this id")
	dry := fs.Bool("dry-run", false, "list what would be replayed, publish nothing")
	if err := fs.Parse(args); err != nil {
		return errors.Join(err, errUsage)
	}
	now := time.Now()
	from, err := parseWhen(*since, now)
	if err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	to, err := parseWhen(*until, now)
	if err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	if to.IsZero() {
		to = now
	}
	ops := frontpay.Operations()
	if *opName != "" {
		op, err := parseOp(*opName)
		if err != nil {
			return err
		}
		ops = []frontpay.Operation{op}
	}
	if *reason != "" && !slices.Contains(schemas.Reasons(), schemas.Reason(*reason)) {
		return fmt.Errorf("--reason: unknown reason %q", *reason)
	}
	t, err := openTool()
	if err != nil {
		return err
	}
	defer t.close()

	failures, err := t.failures(ctx, ops, from, to)
	if err != nil {
		return err
	}
	var picked []failure
	for _, f := range failures {
		if (*reason == "" || string(f.data.Reason) == *reason) && (*key == "" || f.event.IdempotencyKey == *key) &&
			(*eventID == "" || f.event.ID == *eventID) {
			picked = append(picked, f)
		}
	}
	verb := "replayed"
	if *dry {
		verb = "would replay"
	}
	for _, f := range picked {
		op := strings.TrimSuffix(f.event.Type, ".failed")
		var id string
		if !*dry {
			if id, err = t.replay(ctx, frontpay.Operation(op), f); err != nil {
				return err
			}
		}
		fmt.Fprintf(out, "%s %s key=%s failure=%s reason=%s failed_at=%s command=%s\n", verb, op,
			f.event.IdempotencyKey, f.event.ID, f.data.Reason, f.at.UTC().Format(time.RFC3339), id)
	}
	fmt.Fprintf(out, "%d failure(s) between %s and %s, %d %s\n", len(failures),
		from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), len(picked), verb)
	return nil
}

// failures reads the result events of ops stored between from and to and returns the failures
// that are the latest outcome of their key: a key that failed and then succeeded (a replay that
// worked) is not listed.
func (t *tool) failures(ctx context.Context, ops []frontpay.Operation, from, to time.Time) ([]failure, error) {
	var subjects []string
	for _, op := range ops {
		subjects = append(subjects, schemas.ResultSubject(t.cfg.SubjectPrefix, op, false), schemas.ResultSubject(t.cfg.SubjectPrefix, op, true))
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !from.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &from
	}
	stream, err := t.js.Stream(ctx, t.topo.ResultStream())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", t.topo.ResultStream(), err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, err
	}
	c, err := stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", t.topo.ResultStream(), err)
	}
	latest := map[string]failure{}
	var order []string
	result := func() []failure {
		var out []failure
		for _, k := range order {
			if f := latest[k]; !strings.HasSuffix(f.event.Type, ".succeeded") {
				out = append(out, f)
			}
		}
		return out
	}
	// Read up to what the stream held when we started: later events are not ours to judge.
	last := info.State.LastSeq
	for {
		batch, err := c.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			if md.Timestamp.After(to) || md.Sequence.Stream > last {
				return result(), nil
			}
			f := failure{at: md.Timestamp}
			if json.Unmarshal(m.Data(), &f.event) == nil && json.Unmarshal(f.event.Data, &f.data) == nil &&
				(strings.HasSuffix(f.event.Type, ".succeeded") || len(f.data.Command) > 0) {
				if _, seen := latest[f.event.IdempotencyKey]; !seen {
					order = append(order, f.event.IdempotencyKey)
				}
				latest[f.event.IdempotencyKey] = f
			}
			if md.Sequence.Stream >= last {
				return result(), nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
		if n == 0 {
			return result(), nil
		}
	}
}

// replay publishes the command of a failure again, as a replay: the same idempotency key, the
// extension replayof naming the failure, and an id derived from the failure's, so that
// replaying the same failure twice publishes the same event.
func (t *tool) replay(ctx context.Context, op frontpay.Operation, f failure) (string, error) {
	var cmd map[string]json.RawMessage
	if err := json.Unmarshal(f.data.Command, &cmd); err != nil {
		return "", fmt.Errorf("failure %s carries no command object: %w", f.event.ID, err)
	}
	sum := sha256.Sum256([]byte("replay\x00" + f.event.ID))
	id := "replay-" + hex.EncodeToString(sum[:16])
	set := func(name, value string) { cmd[name], _ = json.Marshal(value) }
	set("id", id)
	set("idempotencykey", f.event.IdempotencyKey)
	set("replayof", f.event.ID)
	set("time", time.Now().UTC().Format(time.RFC3339))
	raw, err := json.Marshal(cmd)
	if err != nil {
		return "", err
	}
	m := nats.NewMsg(schemas.CommandSubject(t.cfg.SubjectPrefix, op))
	m.Data = raw
	m.Header.Set(jetstream.MsgIDHeader, id)
	if _, err := t.js.PublishMsg(ctx, m); err != nil {
		return "", fmt.Errorf("publish replay of %s: %w", f.event.ID, err)
	}
	return id, nil
}

// errThreshold is the exit of a lag check that found a threshold crossed.
var errThreshold = errors.New("threshold crossed")

// runLag prints each consumer's lag, and fails when a threshold given by flag is crossed.
func runLag(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("lag", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	maxPending := fs.Uint64("max-pending", 0, "fail when a consumer has more commands not yet delivered (0: no check)")
	maxAckPending := fs.Int("max-ack-pending", 0, "fail when a consumer has more commands delivered and not yet answered (0: no check)")
	maxAge := fs.Duration("max-age", 0, "fail when a consumer's oldest unanswered command is older (0: no check)")
	if err := fs.Parse(args); err != nil {
		return errors.Join(err, errUsage)
	}
	t, err := openTool()
	if err != nil {
		return err
	}
	defer t.close()
	lags, err := t.topo.Lag(ctx, t.js)
	if err != nil {
		return err
	}
	// The consumer's row is "(all)"; the operations' rows come from the owner's report.
	row := func(l consumer.ConsumerLag) string { return cmp.Or(l.Operation, "(all)") }
	var crossed []string
	for _, l := range lags {
		switch {
		case *maxPending > 0 && l.Pending > *maxPending:
			crossed = append(crossed, fmt.Sprintf("%s: %d pending > %d", row(l), l.Pending, *maxPending))
		case *maxAckPending > 0 && l.AckPending > *maxAckPending:
			crossed = append(crossed, fmt.Sprintf("%s: %d ack pending > %d", row(l), l.AckPending, *maxAckPending))
		case *maxAge > 0 && l.OldestAge > *maxAge:
			crossed = append(crossed, fmt.Sprintf("%s: oldest %s > %s", row(l), l.OldestAge.Round(time.Second), *maxAge))
		}
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(lags); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "consumer %s, owner %s\n", consumer.ConsumerName, cmp.Or(lags[0].Owner, "(none reporting)"))
		fmt.Fprintf(out, "%-24s %10s %11s %11s %8s %12s\n", "OPERATION", "PENDING", "ACK PENDING", "REDELIVERED", "WAITING", "OLDEST")
		for _, l := range lags {
			fmt.Fprintf(out, "%-24s %10d %11d %11d %8d %12s\n", row(l), l.Pending, l.AckPending, l.Redelivered, l.Waiting,
				l.OldestAge.Round(time.Millisecond))
		}
	}
	if len(crossed) > 0 {
		return fmt.Errorf("%w: %s", errThreshold, strings.Join(crossed, "; "))
	}
	return nil
}
