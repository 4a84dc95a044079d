package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/frontpay"
	"go.opentelemetry.io/otel/trace"
)

// API is what the worker needs of the Front Payment client.
type API interface {
	Do(ctx context.Context, op frontpay.Operation, params []string, body frontpay.Validator) (*frontpay.Response, error)
	Details(ctx context.Context, reservationUUID string) (*frontpay.Result[frontpay.Reservation], error)
	// Wait waits for the client's rate limit; a call made with frontpay.AfterWait then goes at once.
	Wait(ctx context.Context) error
	// RateLimited reports whether calls wait for a rate limit: then a command's record is read
	// before it waits, so that a duplicate spends none of the budget.
	RateLimited() bool
}

var _ API = (*frontpay.Client)(nil)

// Publisher is what the worker needs to put events on JetStream.
type Publisher interface {
	// Publish stores data on subject with Nats-Msg-Id msgID; nil once the stream has it.
	Publish(ctx context.Context, subject, msgID string, data []byte) error
	// DeadLetter copies orig to subject, with headers saying why.
	DeadLetter(ctx context.Context, subject string, orig jetstream.Msg, reason string) error
}

// Config is the worker's configuration.
type Config struct {
	Topology
	// Merchant is the merchant whose commands the worker works on, in a deployment of several
	// (Topology.Merchants): its consumer, its subjects, its key space and its read-back markers.
	// "" in a one-merchant deployment.
	Merchant string
	// Source is the `source` of the events the worker publishes.
	Source string
	// Instance names this worker process in the records it owns; unique per process.
	Instance     string
	MaxAttempts  int           // HTTP attempts of a command before upstream_unavailable
	RetryInitial time.Duration // first backoff
	RetryMax     time.Duration // longest backoff
	APITimeout   time.Duration // one HTTP attempt's limit, also the basis of a record's lease
	Concurrency  int           // API calls at once, over all operations (commands worked on: twice as many)
	// NoMarker turns the read-back marker off (FRONTPAY_READBACK_MARKER=off): captures and
	// charges read a baseline before their first request instead.
	NoMarker bool
	// DrainTimeout bounds how long Run waits for commands in flight after its context ends.
	DrainTimeout time.Duration
	// LeaseMargin is added to a record's lease beyond the longest time its owner may still send
	// (APITimeout): it covers clock differences between replicas (default 10s).
	LeaseMargin time.Duration
	// ReportEvery is how often the owner writes what it holds to the state bucket, for `lag`
	// (default 5s).
	ReportEvery time.Duration
	// Tracer, where set, makes a span of each delivery and of its work (tracing.go); nil: no
	// spans, and results carry the command's own traceparent.
	Tracer trace.TracerProvider
	// WhileOwner, where set, runs in a goroutine of its own each time this worker becomes the
	// owner of the commands, with a context that ends when it stops being the owner (it lost the
	// pin, or it stops): what must happen at the owner alone, e.g. the merchant's status service.
	// Run waits for it to return.
	WhileOwner func(ctx context.Context)
	Observer   Observer // where set, told of what happens
	Logger     *slog.Logger
	Now        func() time.Time
}

func (c *Config) defaults() {
	c.MaxAttempts = cmp.Or(max(c.MaxAttempts, 0), 8)
	c.RetryInitial = cmp.Or(max(c.RetryInitial, 0), time.Second)
	c.RetryMax = cmp.Or(max(c.RetryMax, 0), 5*time.Minute)
	c.APITimeout = cmp.Or(max(c.APITimeout, 0), 30*time.Second)
	c.Concurrency = cmp.Or(max(c.Concurrency, 0), 64)
	c.DrainTimeout = cmp.Or(max(c.DrainTimeout, 0), 20*time.Second)
	c.LeaseMargin = cmp.Or(max(c.LeaseMargin, 0), 10*time.Second)
	c.ReportEvery = cmp.Or(max(c.ReportEvery, 0), 5*time.Second)
	c.Source = cmp.Or(c.Source, "frontpay-worker")
	c.Instance = cmp.Or(c.Instance, fmt.Sprintf("worker-%016x", rand.Uint64()))
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Worker consumes commands, calls Front Payment at most once per idempotency key and publishes
// their results. See the package documentation for the state machine, and owner.go for how one
// worker at a time owns the commands.
type Worker struct {
	cfg   Config
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	store *store
	api   API
	pub   Publisher
	obs   Observer
	log   *slog.Logger

	stream   jetstream.Stream
	consumer jetstream.Consumer
	runq     *runQueue
	calls    chan struct{} // a place for each API call at the API: Concurrency in all

	consumeMu sync.Mutex // held while pulls start or stop: a resync never races a start
	mu        sync.Mutex
	own       ownership          // the pin this worker works under; see owner.go
	held      map[uint64]*task   // deliveries held, by stream sequence
	fifos     map[string][]*task // per reservation or order: its commands in stream order, head first
	waiting   map[*task]*time.Timer
	stopping  bool
	active    sync.WaitGroup // tasks started and not settled, dropped or handed back
	reporting sync.WaitGroup // report, watch and WhileOwner
}

// New returns a worker over a topology that Topology.Ensure has set up.
func New(cfg Config, js jetstream.JetStream, kv jetstream.KeyValue, api API, pub Publisher) *Worker {
	cfg.defaults()
	return &Worker{
		cfg: cfg, js: js, kv: kv, store: &store{kv: kv, merchant: cfg.Merchant}, api: api, pub: pub, obs: cfg.Observer, log: cfg.Logger,
		runq:    newRunQueue(),
		calls:   make(chan struct{}, cfg.Concurrency),
		held:    map[uint64]*task{},
		fifos:   map[string][]*task{},
		waiting: map[*task]*time.Timer{},
	}
}

func (w *Worker) now() time.Time { return w.cfg.Now() }

// consumerName is the durable consumer of the worker's merchant.
func (w *Worker) consumerName() string { return ConsumerFor(w.cfg.Merchant) }

// subjects is the prefix of the worker's merchant's command and result subjects.
func (w *Worker) subjects() string { return w.cfg.SubjectPrefix(w.cfg.Merchant) }

// slot waits for one of the Concurrency places at the API, held from a command's first call of a
// step until its request's answer (not while its record is written and its result published).
// release gives the place back; calling it again does nothing.
func (w *Worker) slot(ctx context.Context) (release func(), err error) {
	select {
	case w.calls <- struct{}{}:
		return sync.OnceFunc(func() { <-w.calls }), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// lease is how long a record stays its owner's from now: its request's deadline and the margin.
func (w *Worker) lease() time.Duration { return w.cfg.APITimeout + w.cfg.LeaseMargin }

// Run consumes until ctx ends. Then it stops fetching, hands its ownership over (unpins), drops
// what it has not started, hands back commands waiting for a retry, waits up to DrainTimeout for
// commands in flight (cancelling them after that, which hands them back too) and returns. The
// caller drains the NATS connection afterwards, which flushes acks.
func (w *Worker) Run(ctx context.Context, ready func()) error {
	var err error
	if w.stream, err = w.js.Stream(ctx, w.cfg.CommandStream()); err != nil {
		return fmt.Errorf("open stream %s: %w", w.cfg.CommandStream(), err)
	}
	if w.consumer, err = w.stream.Consumer(ctx, w.consumerName()); err != nil {
		return fmt.Errorf("open consumer %s: %w", w.consumerName(), err)
	}
	// Work goes on under its own context: ctx ending starts the drain, not an abort.
	work, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()

	// Twice as many workers as API calls at once: while Concurrency commands are at the API, as
	// many more write their records and publish their results, so that a slow API is used to
	// its bound.
	var workers sync.WaitGroup
	for range 2 * w.cfg.Concurrency {
		workers.Go(func() {
			for t := w.runq.pop(); t != nil; t = w.runq.pop() {
				w.work(work, t)
			}
		})
	}
	defer func() { w.runq.close(); workers.Wait() }()

	if err := w.consume(ctx); err != nil {
		return err
	}
	w.reporting.Go(func() { w.report(ctx) })
	w.reporting.Go(func() { w.watch(ctx) })
	if ready != nil {
		ready()
	}
	w.log.Info("consuming", "stream", w.cfg.CommandStream(), "consumer", w.consumerName(), "concurrency", w.cfg.Concurrency)
	<-ctx.Done()

	w.log.Info("draining", "timeout", w.cfg.DrainTimeout)
	w.stop()
	w.reporting.Wait()
	done := make(chan struct{})
	go func() { w.active.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(w.cfg.DrainTimeout):
		w.log.Warn("drain timeout: handing back commands in flight")
		abort()
		<-done
	}
	return nil
}

// backoff is the wait before attempt n+1: exponential from RetryInitial, doubling per attempt
// with ±50% jitter, at most RetryMax; never shorter than a 429's Retry-After (which the client
// caps at RetryMax and applies to every call of its own). It is drawn once per wait.
func (w *Worker) backoff(n int, cause error) time.Duration {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = w.cfg.RetryInitial, w.cfg.RetryMax, 0
	b.Multiplier, b.RandomizationFactor = 2, 0.5
	b.Reset()
	d := b.NextBackOff()
	for i := 1; i < n; i++ {
		d = b.NextBackOff()
	}
	var fe *frontpay.Error
	if errors.As(cause, &fe) && fe.RetryAfter > 0 {
		d = max(d, fe.RetryAfter)
	}
	return d
}

// infraDelay is the wait before a command whose record or result could not be written (NATS
// unreachable) is worked on again: 100ms, 200ms, … up to 5s.
func infraDelay(n int) time.Duration {
	return min(100*time.Millisecond<<min(max(n-1, 0), 6), 5*time.Second)
}
