package consumer

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// Retention and redelivery settings, each chosen on purpose.
const (
	// CommandRetention keeps commands for a month: a command is answered long before, and a month
	// covers any outage the operators would rather recover from than re-publish.
	CommandRetention = 31 * 24 * time.Hour
	// ResultRetention keeps result events, and with them the failed commands they carry, long enough
	// to replay a failed refund or charge within the API's 90-day charge window.
	ResultRetention = 93 * 24 * time.Hour
	// DeadLetterRetention keeps messages that were not commands at all for inspection.
	DeadLetterRetention = 93 * 24 * time.Hour
	// StateTTL is how long an idempotency record outlives its last change: reservations live 7 to 31
	// days and charges up to 90 days, so a key is remembered past every window the API has.
	StateTTL = 100 * 24 * time.Hour
	// DuplicateWindow is the streams' Nats-Msg-Id window. The idempotency record is what stops a
	// second effect; the window only has to drop the copy of a result published again after a crash
	// between publishing and recording it, which comes back one AckWait (plus processing) later.
	// It is kept to minutes because the server holds every id of the window in memory.
	DuplicateWindow = 5 * time.Minute
	// MaxAckPending bounds the commands of one operation that are delivered and not yet answered,
	// including those waiting with NakWithDelay: far above the in-flight limit, so that commands
	// waiting for a retry or for their turn on a reservation never starve the others.
	MaxAckPending = 20000
)

// Topology names and configures the streams, key-value bucket and consumers of one subject prefix.
type Topology struct {
	Prefix   string // FRONTPAY_SUBJECT_PREFIX: "" or ending in "."
	Replicas int    // stream and bucket replicas: 1 for one server, 3 for a cluster
	AckWait  time.Duration
}

func (t Topology) suffix() string {
	p := strings.TrimSuffix(t.Prefix, ".")
	if p == "" {
		return ""
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(p) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return "_" + b.String()
}

// CommandStream is the name of the stream that holds command events.
func (t Topology) CommandStream() string { return "FRONTPAY" + t.suffix() + "_COMMANDS" }

// ResultStream is the name of the stream that holds result and status events.
func (t Topology) ResultStream() string { return "FRONTPAY" + t.suffix() + "_RESULTS" }

// DeadLetterStream is the name of the dead-letter stream.
func (t Topology) DeadLetterStream() string { return "FRONTPAY" + t.suffix() + "_DEADLETTER" }

// StateBucket is the key-value bucket of idempotency records, reservation queues and checkpoints.
func (t Topology) StateBucket() string { return "frontpay" + strings.ToLower(t.suffix()) + "_state" }

// ConsumerName is the durable pull consumer of an operation's commands.
func ConsumerName(op frontpay.Operation) string {
	return "frontpay-" + strings.ReplaceAll(string(op), ".", "-")
}

// SequencerName is the durable consumer that reads every command in publish order to queue it on
// its reservation or order.
const SequencerName = "frontpay-sequencer"

func (t Topology) replicas() int { return max(t.Replicas, 1) }

// Streams returns the configurations of the three streams.
func (t Topology) Streams() []jetstream.StreamConfig {
	var cmds, results []string
	for _, op := range frontpay.Operations() {
		cmds = append(cmds, schemas.CommandSubject(t.Prefix, op))
		results = append(results, schemas.ResultSubject(t.Prefix, op, true), schemas.ResultSubject(t.Prefix, op, false))
	}
	results = append(results, t.Prefix+"reservation.status.changed", t.Prefix+"order.status.changed")
	return []jetstream.StreamConfig{
		{
			Name:        t.CommandStream(),
			Description: "Front Payment commands, one subject per operation",
			Subjects:    cmds,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      CommandRetention,
			Storage:     jetstream.FileStorage,
			Replicas:    t.replicas(),
			Duplicates:  DuplicateWindow,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        t.ResultStream(),
			Description: "Front Payment results, failures (with the failed command) and status changes",
			Subjects:    results,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      ResultRetention,
			Storage:     jetstream.FileStorage,
			Replicas:    t.replicas(),
			Duplicates:  DuplicateWindow,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        t.DeadLetterStream(),
			Description: "Messages on command subjects that were not JSON objects, unchanged",
			Subjects:    []string{schemas.DeadLetterSubject(t.Prefix, ">")},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      DeadLetterRetention,
			Storage:     jetstream.FileStorage,
			Replicas:    t.replicas(),
			Duplicates:  DuplicateWindow,
		},
	}
}

// Bucket returns the configuration of the state bucket.
func (t Topology) Bucket() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      t.StateBucket(),
		Description: "idempotency records, reservation queues and checkpoints of frontpay-worker",
		History:     1,
		TTL:         StateTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    t.replicas(),
	}
}

// Consumers returns the configuration of every durable consumer: one per operation, and the
// sequencer over all commands.
//
// AckWait is the time a crashed worker's command waits before another takes it; a live worker
// extends it with InProgress while it works. MaxDeliver is unlimited on purpose: the worker itself
// ends every command with a result after FRONTPAY_MAX_ATTEMPTS HTTP attempts, and a limit here
// would silently drop a command that only waited its turn. BackOff is unset: the worker's retry
// delays come from the command's attempts and Retry-After through NakWithDelay, and a crashed
// worker's command should be taken over after one AckWait, not later.
func (t Topology) Consumers() []jetstream.ConsumerConfig {
	var out []jetstream.ConsumerConfig
	var all []string
	for _, op := range frontpay.Operations() {
		subj := schemas.CommandSubject(t.Prefix, op)
		all = append(all, subj)
		out = append(out, jetstream.ConsumerConfig{
			Durable:       ConsumerName(op),
			Description:   "frontpay-worker: " + string(op) + " commands",
			FilterSubject: subj,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       t.AckWait,
			MaxDeliver:    -1,
			MaxAckPending: MaxAckPending,
			Replicas:      t.replicas(),
		})
	}
	out = append(out, jetstream.ConsumerConfig{
		Durable:        SequencerName,
		Description:    "frontpay-worker: queues every command on its reservation or order, in publish order",
		FilterSubjects: all,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        t.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  MaxAckPending,
		Replicas:       t.replicas(),
	})
	return out
}

// Ensure creates or updates the streams, the bucket and the consumers.
func (t Topology) Ensure(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	for _, cfg := range t.Streams() {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, t.Bucket())
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", t.StateBucket(), err)
	}
	for _, cfg := range t.Consumers() {
		if _, err := js.CreateOrUpdateConsumer(ctx, t.CommandStream(), cfg); err != nil {
			return nil, fmt.Errorf("create consumer %s: %w", cfg.Durable, err)
		}
	}
	return kv, nil
}
