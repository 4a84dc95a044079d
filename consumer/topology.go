package consumer

import (
	"cmp"
	"context"
	"errors"
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
	// MaxAckPending bounds the commands the owner holds, delivered and not yet answered: those
	// in flight, waiting for a retry in memory, or waiting for their turn on a reservation. It
	// bounds the owner's memory: make bench's memory scenario (100,000 small commands waiting)
	// peaked at 58 MiB resident with 5,000, 83 MiB with 10,000 and 136 MiB with 20,000. It is
	// still far above the in-flight limit (FRONTPAY_CONCURRENCY, 64), so that a reservation with
	// a long backlog never starves the others for long.
	MaxAckPending = 5000
	// PriorityGroup is the priority group every worker pulls in: the server delivers to one
	// pinned client of it at a time, the owner.
	PriorityGroup = "frontpay"
	// DefaultPinnedTTL is how long the server keeps a silent owner pinned: the longest a dead
	// owner's commands wait for a standby. Owners pull at least every third of it.
	DefaultPinnedTTL = 10 * time.Second
	// DefaultAckWait is how long a delivered command may stay unanswered before the server sends
	// it again. The owner holds commands in memory (waiting for their turn or a retry) and drops
	// such copies by stream sequence; a new owner gets everything above the ack floor at once by
	// resetting the consumer, so AckWait no longer decides how soon a crashed owner's commands
	// are taken over, and long is better: fewer copies of held commands.
	DefaultAckWait = 5 * time.Minute
)

// Topology names and configures the streams, key-value bucket and consumers of one subject prefix.
type Topology struct {
	Prefix   string // FRONTPAY_SUBJECT_PREFIX: "" or ending in "."
	Replicas int    // stream and bucket replicas: 1 for one server, 3 for a cluster
	// AckWait is the consumer's AckWait (default DefaultAckWait), PinnedTTL its pinned client's
	// time to live (default DefaultPinnedTTL).
	AckWait   time.Duration
	PinnedTTL time.Duration
	// Merchants is set in a deployment of several merchants (FRONTPAY_MERCHANTS_FILE): a
	// command's or result's subject then has the merchant as its first token after Prefix, and
	// each merchant has a consumer of its own (CONTRACT.md section 9).
	Merchants bool
	// CommandRetention, ResultRetention and DeadLetterRetention are the streams' MaxAge, StateTTL
	// the bucket's TTL: how long each keeps what it holds, personal data included (README,
	// "Personal data"). 0 means the constant of the same name.
	CommandRetention    time.Duration
	ResultRetention     time.Duration
	DeadLetterRetention time.Duration
	StateTTL            time.Duration
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

// ConsumerName is the durable pull consumer of every command in a one-merchant deployment.
const ConsumerName = "frontpay-commands"

// UnknownMerchantsConsumer is the durable pull consumer, in a deployment of several merchants, that
// answers the commands of merchants that have no consumer (unknown.go).
const UnknownMerchantsConsumer = "frontpay-unknown-merchants"

// ConsumerFor is the durable consumer of a merchant's commands: ConsumerName for "" (a
// one-merchant deployment), frontpay-<merchant> otherwise.
func ConsumerFor(merchant string) string {
	if merchant == "" {
		return ConsumerName
	}
	return "frontpay-" + merchant
}

// SubjectPrefix is the prefix of a merchant's subjects: Prefix in a one-merchant deployment,
// Prefix and the merchant's id and a dot otherwise.
func (t Topology) SubjectPrefix(merchant string) string {
	if merchant == "" {
		return t.Prefix
	}
	return t.Prefix + merchant + "."
}

// commandOf returns the merchant ("" in a one-merchant deployment) and the operation of a command
// subject, and false when subject is no command subject of the topology.
func (t Topology) commandOf(subject string) (merchant string, op frontpay.Operation, ok bool) {
	if t.Merchants {
		rest, _ := strings.CutPrefix(subject, t.Prefix)
		merchant, _, _ = strings.Cut(rest, ".")
	}
	op, ok = schemas.OpFromSubject(t.SubjectPrefix(merchant), subject)
	return merchant, op, ok && (!t.Merchants || merchant != "")
}

// streamPrefix is the prefix of the streams' subjects: every merchant's (a wildcard token) with
// Merchants.
func (t Topology) streamPrefix() string {
	if t.Merchants {
		return t.Prefix + "*."
	}
	return t.Prefix
}

// legacyConsumers are the consumers of the worker before one owner took every command: one per
// operation and the sequencer. Ensure starts ConsumerName where they had got to and deletes them.
func legacyConsumers() []string {
	var names []string
	for _, op := range frontpay.Operations() {
		names = append(names, "frontpay-"+strings.ReplaceAll(string(op), ".", "-"))
	}
	return append(names, "frontpay-sequencer")
}

func (t Topology) pinnedTTL() time.Duration { return cmp.Or(t.PinnedTTL, DefaultPinnedTTL) }

func (t Topology) ackWait() time.Duration { return cmp.Or(t.AckWait, DefaultAckWait) }

func (t Topology) replicas() int { return max(t.Replicas, 1) }

// Streams returns the configurations of the three streams.
func (t Topology) Streams() []jetstream.StreamConfig {
	var cmds, results []string
	p := t.streamPrefix()
	for _, op := range frontpay.Operations() {
		cmds = append(cmds, schemas.CommandSubject(p, op))
		results = append(results, schemas.ResultSubject(p, op, true), schemas.ResultSubject(p, op, false))
	}
	results = append(results, schemas.StatusSubject(p, "reservation"), schemas.StatusSubject(p, "order"))
	return []jetstream.StreamConfig{
		{
			Name:        t.CommandStream(),
			Description: "Front Payment commands, one subject per operation",
			Subjects:    cmds,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      cmp.Or(t.CommandRetention, CommandRetention),
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
			MaxAge:      cmp.Or(t.ResultRetention, ResultRetention),
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
			MaxAge:      cmp.Or(t.DeadLetterRetention, DeadLetterRetention),
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
		Description: "idempotency records, owner reports and status checkpoints of frontpay-worker",
		History:     1,
		TTL:         cmp.Or(t.StateTTL, StateTTL),
		Storage:     jetstream.FileStorage,
		Replicas:    t.replicas(),
	}
}

// Consumer returns the configuration of the durable consumer of a merchant's commands ("": a
// one-merchant deployment's, of every command).
//
// It has one priority group with the pinned-client policy: every worker pulls, the server
// delivers to one of them, the owner, until it stops pulling for PinnedTTL (or is unpinned, or
// the consumer's leader changes); see owner.go. MaxDeliver is unlimited on purpose: the worker
// itself ends every command with a result, and a limit would silently drop a command that only
// waited its turn. BackOff is unset: retries wait in the owner's memory, in their reservation's
// order.
func (t Topology) Consumer(merchant string) jetstream.ConsumerConfig {
	c := t.pinned(ConsumerFor(merchant), "frontpay-worker: every command, worked by one pinned owner at a time")
	if merchant != "" {
		c.Description = "frontpay-worker: the commands of merchant " + merchant + ", worked by one pinned owner at a time"
		c.FilterSubject = t.SubjectPrefix(merchant) + ">"
	}
	return c
}

// UnknownMerchants returns the configuration of the consumer that answers the commands of
// unknown merchants, in a deployment of several: a plain durable consumer that every replica
// pulls from (the answers need no order, and the same answer twice is one event).
func (t Topology) UnknownMerchants() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       UnknownMerchantsConsumer,
		Description:   "frontpay-worker: answers the commands of merchants without a consumer",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: MaxAckPending,
		Replicas:      t.replicas(),
	}
}

// pinned is a durable consumer with the pinned-client priority policy.
func (t Topology) pinned(name, description string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        name,
		Description:    description,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        t.ackWait(),
		MaxDeliver:     -1,
		MaxAckPending:  MaxAckPending,
		Replicas:       t.replicas(),
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{PriorityGroup},
		PinnedTTL:      t.pinnedTTL(),
	}
}

// Ensure creates or updates the streams, the bucket and the consumer. Each is created first and
// updated only when it exists with another configuration: replicas that start together leave an
// unchanged stream alone (an update while another replica creates a consumer races inside
// nats-server 2.15.2).
func (t Topology) Ensure(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	for _, cfg := range t.Streams() {
		_, err := js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			_, err = js.UpdateStream(ctx, cfg)
		}
		if err != nil {
			return nil, fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
	}
	kv, err := js.CreateKeyValue(ctx, t.Bucket())
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.UpdateKeyValue(ctx, t.Bucket())
	}
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", t.StateBucket(), err)
	}
	stream, err := js.Stream(ctx, t.CommandStream())
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", t.CommandStream(), err)
	}
	if t.Merchants {
		if _, err := stream.CreateOrUpdateConsumer(ctx, t.UnknownMerchants()); err != nil {
			return nil, fmt.Errorf("create consumer %s: %w", UnknownMerchantsConsumer, err)
		}
		return kv, nil
	}
	if err := t.ensureConsumer(ctx, stream); err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", ConsumerName, err)
	}
	return kv, nil
}

// ensureConsumer creates or updates the consumer. A consumer cannot be switched to a priority
// policy by an update, and a new one must not deliver again what was answered long ago, so a
// consumer that is not pinned (made by hand) and the legacy consumers are replaced by a pinned
// consumer that starts after the lowest of their ack floors.
func (t Topology) ensureConsumer(ctx context.Context, stream jetstream.Stream) error {
	cfg := t.Consumer("")
	var start uint64 // the first sequence not acknowledged by what is replaced; 0: none replaced
	replaced := func(info *jetstream.ConsumerInfo) {
		if s := info.AckFloor.Stream + 1; start == 0 || s < start {
			start = s
		}
	}
	var old []string
	c, err := stream.Consumer(ctx, ConsumerName)
	switch {
	case err == nil && c.CachedInfo().Config.PriorityPolicy != jetstream.PriorityPolicyPinned:
		replaced(c.CachedInfo())
		old = append(old, ConsumerName)
	case err == nil:
		// Where it starts cannot change.
		cfg.DeliverPolicy, cfg.OptStartSeq = c.CachedInfo().Config.DeliverPolicy, c.CachedInfo().Config.OptStartSeq
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return err
	}
	for _, name := range legacyConsumers() {
		lc, err := stream.Consumer(ctx, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		} else if err != nil {
			return err
		}
		replaced(lc.CachedInfo())
		old = append(old, name)
	}
	for _, name := range old {
		if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("replace consumer %s: %w", name, err)
		}
	}
	if start > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	_, err = stream.CreateOrUpdateConsumer(ctx, cfg)
	return err
}
