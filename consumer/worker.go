package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// API is what the worker needs of the Front Payment client.
type API interface {
	Do(ctx context.Context, op frontpay.Operation, params []string, body frontpay.Validator) (*frontpay.Response, error)
	Details(ctx context.Context, reservationUUID string) (*frontpay.Result[frontpay.Reservation], error)
	// Wait waits for the client's rate limiter; a call made with frontpay.AfterWait then goes at once.
	Wait(ctx context.Context) error
}

// Publisher is what the worker needs to put events on JetStream.
type Publisher interface {
	// Publish stores data on subject with Nats-Msg-Id msgID; nil once the stream has it.
	Publish(ctx context.Context, subject, msgID string, data []byte) error
	// DeadLetter copies orig unchanged to subject, with headers saying why.
	DeadLetter(ctx context.Context, subject string, orig jetstream.Msg, reason string) error
}

// Config is the worker's configuration.
type Config struct {
	Topology
	// Source is the `source` of the events the worker publishes.
	Source string
	// Instance names this worker process in the records it owns; unique per process.
	Instance       string
	MaxAttempts    int           // HTTP attempts of a command before upstream_unavailable
	RetryInitial   time.Duration // first backoff
	RetryMax       time.Duration // longest backoff
	APITimeout     time.Duration // one HTTP attempt's limit, also the basis of a record's lease
	Concurrency    int           // commands worked on at once, over all operations
	InProcessRetry time.Duration // a retry wait up to this long is slept in-process; longer ones NakWithDelay
	// DrainTimeout bounds how long Run waits for commands in flight after its context ends.
	DrainTimeout time.Duration
	// LeaseMargin is added to a record's lease beyond the longest time its owner may still send
	// (APITimeout): it covers clock differences between replicas (default 10s).
	LeaseMargin time.Duration
	Limiter     *RateLimiter // where set, told of a 429's Retry-After
	Observer    Observer     // where set, told of what happens
	Logger      *slog.Logger
	Now         func() time.Time
}

func (c *Config) defaults() {
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	if c.RetryInitial <= 0 {
		c.RetryInitial = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Minute
	}
	if c.APITimeout <= 0 {
		c.APITimeout = 30 * time.Second
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.InProcessRetry <= 0 {
		c.InProcessRetry = 5 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 20 * time.Second
	}
	if c.LeaseMargin <= 0 {
		c.LeaseMargin = 10 * time.Second
	}
	if c.Source == "" {
		c.Source = "frontpay-worker"
	}
	if c.Instance == "" {
		c.Instance = fmt.Sprintf("worker-%016x", rand.Uint64())
	}
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
// their results. See the package documentation for the state machine.
type Worker struct {
	cfg    Config
	js     jetstream.JetStream
	stream jetstream.Stream
	store  *store
	seq    *sequencer
	api    API
	pub    Publisher
	obs    Observer
	log    *slog.Logger

	mu       sync.Mutex
	inflight map[string]bool     // idempotency keys being run in this process
	turns    map[string]*waiters // per resource: the commands waiting here for their turn
	sem      chan struct{}       // slots of the commands
	parked   chan struct{}       // commands waiting here for their turn, without a slot
	seqSem   chan struct{}       // slots of the sequencer, so that queueing never waits behind commands
	wg       sync.WaitGroup
	stopping chan struct{}
}

// New returns a worker over a topology that Topology.Ensure has set up.
func New(cfg Config, js jetstream.JetStream, kv jetstream.KeyValue, api API, pub Publisher) *Worker {
	cfg.defaults()
	return &Worker{
		cfg:      cfg,
		js:       js,
		store:    &store{kv: kv},
		seq:      &sequencer{queues: &queues{kv: kv}, prefix: cfg.Prefix},
		api:      api,
		pub:      pub,
		obs:      cfg.Observer,
		log:      cfg.Logger,
		inflight: map[string]bool{},
		turns:    map[string]*waiters{},
		sem:      make(chan struct{}, cfg.Concurrency),
		parked:   make(chan struct{}, max(4*cfg.Concurrency, 1024)),
		seqSem:   make(chan struct{}, cfg.Concurrency),
		stopping: make(chan struct{}),
	}
}

func (w *Worker) now() time.Time { return w.cfg.Now() }

// lease is how long a record stays its owner's from now: its request's deadline and the margin.
func (w *Worker) lease() time.Duration { return w.cfg.APITimeout + w.cfg.LeaseMargin }

// Run consumes until ctx ends, then stops fetching, hands back what it has not started, waits up
// to DrainTimeout for commands in flight (cancelling them after that, which hands them back
// too) and returns. The caller drains the NATS connection afterwards, which flushes acks.
func (w *Worker) Run(ctx context.Context, ready func()) error {
	stream, err := w.js.Stream(ctx, w.cfg.CommandStream())
	if err != nil {
		return fmt.Errorf("open stream %s: %w", w.cfg.CommandStream(), err)
	}
	w.stream = stream
	if w.seq.consumer, err = stream.Consumer(ctx, SequencerName); err != nil {
		return fmt.Errorf("open consumer %s: %w", SequencerName, err)
	}
	// Work goes on under its own context: ctx ending starts the drain, not an abort.
	work, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()

	var consumes []jetstream.ConsumeContext
	defer func() {
		for _, cc := range consumes {
			cc.Stop()
		}
	}()
	start := func(name string, sem chan struct{}, handle func(context.Context, jetstream.Msg, *slot)) error {
		c, err := stream.Consumer(ctx, name)
		if err != nil {
			return fmt.Errorf("open consumer %s: %w", name, err)
		}
		cc, err := c.Consume(func(m jetstream.Msg) { w.dispatch(work, m, sem, handle) },
			jetstream.PullMaxMessages(max(w.cfg.Concurrency/2, 8)),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				w.log.Debug("consume", "consumer", name, "err", err)
			}))
		if err != nil {
			return fmt.Errorf("consume %s: %w", name, err)
		}
		consumes = append(consumes, cc)
		return nil
	}
	if err := start(SequencerName, w.seqSem, w.handleSequencer); err != nil {
		return err
	}
	for _, op := range frontpay.Operations() {
		if err := start(ConsumerName(op), w.sem, w.handleCommand); err != nil {
			return err
		}
	}
	if ready != nil {
		ready()
	}
	w.log.Info("consuming", "stream", w.cfg.CommandStream(), "concurrency", w.cfg.Concurrency)
	<-ctx.Done()

	w.log.Info("draining", "timeout", w.cfg.DrainTimeout)
	close(w.stopping)
	for _, cc := range consumes {
		cc.Drain()
	}
	for _, cc := range consumes {
		<-cc.Closed()
	}
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(w.cfg.DrainTimeout):
		w.log.Warn("drain timeout: handing back commands in flight")
		abort()
		<-done
	}
	return nil
}

// slot is one of the worker's Concurrency places, held by a message while it is worked on.
type slot struct {
	sem  chan struct{}
	held bool
}

// release gives the place back (a command waiting for its turn does not need one).
func (s *slot) release() {
	if s.held {
		<-s.sem
		s.held = false
	}
}

// acquire takes a place again.
func (s *slot) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		s.held = true
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dispatch runs handle for m on a goroutine of its own, within the limit of sem's slots. Once
// stopping, messages still arriving are handed back at once.
func (w *Worker) dispatch(ctx context.Context, m jetstream.Msg, sem chan struct{}, handle func(context.Context, jetstream.Msg, *slot)) {
	select {
	case sem <- struct{}{}:
	case <-w.stopping:
		_ = m.Nak()
		return
	}
	s := &slot{sem: sem, held: true}
	w.wg.Add(1)
	go func() {
		defer func() { s.release(); w.wg.Done() }()
		// Tell JetStream the message is being worked on, so AckWait does not run out.
		done := make(chan struct{})
		defer close(done)
		go func() {
			t := time.NewTicker(w.cfg.AckWait / 3)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					_ = m.InProgress()
				}
			}
		}()
		handle(ctx, m, s)
	}()
}

// handleSequencer queues a command on its reservation or order.
func (w *Worker) handleSequencer(ctx context.Context, m jetstream.Msg, _ *slot) {
	md, err := m.Metadata()
	if err == nil {
		op, _ := schemas.OpFromSubject(w.cfg.Prefix, m.Subject())
		err = w.seq.index(ctx, op, schemas.Structured(m.Headers(), m.Data()), md.Sequence.Stream)
	}
	if err == nil {
		// Acked with confirmation: the workers wait for the ack floor to pass this command.
		err = m.DoubleAck(ctx)
	}
	if err != nil {
		w.log.Warn("sequencer", "subject", m.Subject(), "err", err)
		_ = m.NakWithDelay(100 * time.Millisecond)
	}
}

// handleCommand processes one command delivery and settles it.
func (w *Worker) handleCommand(ctx context.Context, m jetstream.Msg, s *slot) {
	err := w.process(ctx, m, s)
	w.settle(ctx, m, err)
}

// retryLater is the control error of a command that must come back after delay.
type retryLater struct {
	delay time.Duration
	why   string
}

func (r *retryLater) Error() string { return fmt.Sprintf("retry in %s: %s", r.delay, r.why) }

// settle is the one place that turns a command's outcome into Ack or NakWithDelay. Commands
// are never terminated: every one ends with a result event.
func (w *Worker) settle(ctx context.Context, m jetstream.Msg, err error) {
	var later *retryLater
	switch {
	case err == nil:
		_ = m.Ack()
	case errors.As(err, &later):
		_ = m.NakWithDelay(later.delay)
	case ctx.Err() != nil:
		// Shutting down: hand the command back for another worker now.
		_ = m.Nak()
	case errors.Is(err, errLost):
		_ = m.NakWithDelay(time.Second)
	default:
		w.log.Error("command not settled, will be redelivered", "subject", m.Subject(), "err", err)
		n := uint64(1)
		if md, e := m.Metadata(); e == nil {
			n = md.NumDelivered
		}
		_ = m.NakWithDelay(deliveryDelay(n))
	}
}

// deliveryDelay grows with a message's delivery count: 100ms, 200ms, … up to 10s.
func deliveryDelay(n uint64) time.Duration {
	d := 100 * time.Millisecond << min(n-1, 7)
	return min(d, 10*time.Second)
}

// process decodes a command, waits for its turn on its reservation, runs it and dequeues it.
func (w *Worker) process(ctx context.Context, m jetstream.Msg, s *slot) error {
	md, err := m.Metadata()
	if err != nil {
		return err
	}
	op, ok := schemas.OpFromSubject(w.cfg.Prefix, m.Subject())
	raw := schemas.Structured(m.Headers(), m.Data())
	cmd, err := schemas.ParseCommand(op, raw, w.now())
	if !ok || errors.Is(err, schemas.ErrNotObject) {
		w.obs.DeadLetter()
		reason := "not a JSON object"
		if !ok {
			reason = "not a command subject"
		}
		w.log.Warn("dead letter", "subject", m.Subject(), "reason", reason, "seq", md.Sequence.Stream)
		return w.pub.DeadLetter(ctx, schemas.DeadLetterSubject(w.cfg.Prefix, m.Subject()), m, reason)
	}

	resource := queueOf(op, cmd, raw)
	if resource != "" {
		if err := w.waitTurn(ctx, resource, md, s); err != nil {
			return err
		}
	}
	var invalid *schemas.InvalidError
	if errors.As(err, &invalid) {
		err = w.invalid(ctx, m, op, invalid)
	} else if err != nil {
		return err
	} else {
		j := &job{cmd: cmd, raw: raw, resource: resource, log: w.log.With(
			"op", op, "id", cmd.ID, "key", cmd.Key, "correlationid", cmd.CorrelationID, "resource", cmd.Resource)}
		err = w.execute(ctx, j)
	}
	// The result is out: what is left (dequeue, ack) calls no API, so the slot goes to the next
	// command now.
	s.release()
	if err == nil && resource != "" {
		if err = w.seq.queues.remove(ctx, resource, md.Sequence.Stream); err == nil {
			w.turnTaken(resource)
		}
	}
	return err
}

// parkLimit bounds how long a command waits in-process for its turn before it is handed back.
const parkLimit = 30 * time.Second

// waitTurn returns once the command is first in its reservation's queue. While it waits it gives
// its slot back, so commands waiting behind a long one never hold the worker's places. It looks
// again whenever a command of the reservation finishes in this process, and every 100ms for those
// finished by other replicas.
func (w *Worker) waitTurn(ctx context.Context, resource string, md *jetstream.MsgMetadata, s *slot) error {
	// A queue entry whose message has left the stream is looked for once the command has waited
	// a second (or come back a few times): it cannot be removed by its own command.
	staleAt := time.Now().Add(time.Second)
	look := func() (bool, error) {
		stale := md.NumDelivered > 3 || time.Now().After(staleAt)
		if stale {
			staleAt = time.Now().Add(time.Second)
		}
		return w.seq.turn(ctx, w.stream, resource, md.Sequence.Stream, stale)
	}
	if ok, err := look(); err != nil || ok {
		return err
	}
	// Waiting places are limited (4 × Concurrency, at least 1024); when they are taken, the command is handed
	// back rather than held, so that waiting commands never keep out the ones they wait for.
	select {
	case w.parked <- struct{}{}:
		defer func() { <-w.parked }()
	default:
		return &retryLater{delay: min(deliveryDelay(md.NumDelivered), time.Second), why: "waiting for earlier commands of " + resource}
	}
	s.release()
	changed, done := w.wait(resource)
	defer done()
	limit := time.NewTimer(parkLimit)
	defer limit.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.stopping:
			return &retryLater{delay: 0, why: "stopping"}
		case <-limit.C:
			return &retryLater{delay: time.Second, why: "waiting for earlier commands of " + resource}
		case <-changed():
		case <-tick.C:
		}
		ok, err := look()
		if err != nil {
			return err
		}
		if ok {
			return s.acquire(ctx)
		}
	}
}

// waiters are the commands of one resource waiting in this process for their turn.
type waiters struct {
	n       int
	changed chan struct{} // closed when a command of the resource finishes here
}

// wait registers a waiter of resource; it returns the channel to watch (a function, since the
// channel is replaced after each close) and the function that unregisters.
func (w *Worker) wait(resource string) (changed func() <-chan struct{}, done func()) {
	w.mu.Lock()
	ws, ok := w.turns[resource]
	if !ok {
		ws = &waiters{changed: make(chan struct{})}
		w.turns[resource] = ws
	}
	ws.n++
	w.mu.Unlock()
	changed = func() <-chan struct{} {
		w.mu.Lock()
		defer w.mu.Unlock()
		return ws.changed
	}
	done = func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if ws.n--; ws.n == 0 {
			delete(w.turns, resource)
		}
	}
	return changed, done
}

// turnTaken wakes the commands of resource waiting in this process.
func (w *Worker) turnTaken(resource string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ws, ok := w.turns[resource]; ok {
		close(ws.changed)
		ws.changed = make(chan struct{})
	}
}

// invalid publishes the invalid_command failure of a JSON object that is not a valid command.
// Nothing is recorded: no call is made, and a redelivery produces the very same event. A command
// too large for a failure event to carry is copied to the dead-letter stream, and its failure
// carries "command": null.
func (w *Worker) invalid(ctx context.Context, m jetstream.Msg, op frontpay.Operation, e *schemas.InvalidError) error {
	raw := schemas.Structured(m.Headers(), m.Data())
	o := schemas.OriginOf(op, raw)
	f := e.Failure(raw)
	if len(raw) > schemas.MaxCommandBytes {
		w.obs.DeadLetter()
		if err := w.pub.DeadLetter(ctx, schemas.DeadLetterSubject(w.cfg.Prefix, m.Subject()), m, "command too large"); err != nil {
			return err
		}
		f.Command = json.RawMessage("null")
	}
	ev, err := schemas.NewFailure(w.cfg.Source, o, f, w.now())
	if err != nil {
		return err
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	w.obs.Outcome(op, false, schemas.InvalidCommand)
	w.log.Warn("invalid command", "op", op, "id", o.CommandID, "key", o.Key, "correlationid", o.CorrelationID,
		"resource", o.Resource, "problems", len(e.Fields))
	return w.pub.Publish(ctx, schemas.ResultSubject(w.cfg.Prefix, op, false), ev.ID, b)
}

// hold marks a key as run by this process; release unmarks it.
func (w *Worker) hold(key string) {
	w.mu.Lock()
	w.inflight[key] = true
	w.mu.Unlock()
}

func (w *Worker) release(key string) {
	w.mu.Lock()
	delete(w.inflight, key)
	w.mu.Unlock()
}

func (w *Worker) inFlight(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.inflight[key]
}

// backoff is the wait before attempt n+1: exponential from RetryInitial, doubling per attempt
// with ±50% jitter, at most RetryMax; never shorter than a 429's Retry-After, which also pauses
// every call of this process through the rate limiter.
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
		if w.cfg.Limiter != nil {
			w.cfg.Limiter.Pause(fe.RetryAfter)
		}
		d = max(d, fe.RetryAfter)
	}
	return d
}

// sleep waits d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
