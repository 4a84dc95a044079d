// Package fleet runs the worker for the merchants a deployment serves (CONTRACT.md section 9):
// one lane per merchant, each with its own Front Payment client (token, URL, rate budget), its
// own consumer.Worker over its own consumer, and its own status service. Without
// FRONTPAY_MERCHANTS_FILE there is one lane, of the one merchant of the environment, run by every
// replica (the server's pin picks its owner). With it, the merchants are spread over the replicas
// (members.go) and each replica runs the lanes assigned to it; the file is read again every few
// seconds, and merchants added, changed (a new token) or removed take effect without a restart.
//
// Everything that spends a merchant's API budget happens at the owner of its commands, the
// worker holding its consumer's pin: the commands' calls, the callbacks' read-backs (a callback
// is checked where it arrives and forwarded to the owner over NATS) and the history poll. So the
// budget is one client's rate limit, whatever the number of replicas.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/status"
)

// Observers are what is told of one merchant's work, for metrics.
type Observers struct {
	Consumer consumer.Observer
	Status   status.Observer
	Client   frontpay.Hooks
}

// Config configures a Fleet.
type Config struct {
	Topology consumer.Topology
	// Worker and Status are the templates of every lane's worker and status service; the fleet
	// sets what is the merchant's own (merchant, subjects, API, secret, observers, logger).
	Worker consumer.Config
	Status status.Config
	// Client are the options of every merchant's Front Payment client besides its rate limit and
	// hooks (WithTimeout, WithRetryAfterMax, WithHTTPClient).
	Client []frontpay.Option
	// File is FRONTPAY_MERCHANTS_FILE; "" runs Single alone.
	File string
	// Single is the one merchant (ID "") of a deployment without File; DefaultURL and DefaultRate
	// are a file merchant's apiUrl and rate when it names none.
	Single      Merchant
	DefaultURL  string
	DefaultRate int
	// Reload is how often File is read again (default DefaultReload).
	Reload time.Duration
	// Observe returns what is told of a merchant's work; nil: nothing.
	Observe func(merchant string) Observers
	Logger  *slog.Logger
}

// DefaultReload is how often the merchants file is read again: a change takes effect within it
// and the time to start or stop the lanes, well within the 30 s of CONTRACT.md section 9.
const DefaultReload = 10 * time.Second

// Fleet runs the lanes of a replica. Its methods are safe for concurrent use.
type Fleet struct {
	cfg Config
	js  jetstream.JetStream
	nc  *nats.Conn
	kv  jetstream.KeyValue
	pub consumer.Publisher
	log *slog.Logger
	ms  *members // nil without File

	mu       sync.Mutex
	known    map[string]Merchant // the merchants of the file as last read (or Single)
	lanes    map[string]*lane    // every known merchant's, running or not
	ensured  map[string]bool     // merchants whose consumer exists
	stopping bool
	wg       sync.WaitGroup
}

// lane is one merchant's: its client and status service always (a replica checks and forwards
// callbacks of every merchant), its worker while the replica runs the merchant.
type lane struct {
	m      Merchant
	api    *frontpay.Client
	status *status.Service
	cancel context.CancelFunc // nil: the worker is not running
	done   chan struct{}
}

// New returns a Fleet; with Config.File it reads the file, and refuses to start on any fault of it.
func New(cfg Config, js jetstream.JetStream, kv jetstream.KeyValue, pub consumer.Publisher) (*Fleet, error) {
	if cfg.Reload <= 0 {
		cfg.Reload = DefaultReload
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Observe == nil {
		cfg.Observe = func(string) Observers { return Observers{} }
	}
	f := &Fleet{cfg: cfg, js: js, nc: js.Conn(), kv: kv, pub: pub, log: cfg.Logger,
		known: map[string]Merchant{}, lanes: map[string]*lane{}, ensured: map[string]bool{}}
	ms := []Merchant{cfg.Single}
	if cfg.File != "" {
		var err error
		if ms, err = Load(cfg.File, cfg.DefaultURL, cfg.DefaultRate); err != nil {
			return nil, err
		}
		f.ms = newMembers(kv, cfg.Worker.Instance, cfg.Logger.With("component", "members"))
	}
	for _, m := range ms {
		if err := f.addLane(m); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Merchants returns the ids of the merchants known now, sorted ("" alone without a file).
func (f *Fleet) Merchants() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.known))
}

// addLane makes a known merchant's client and status service. Caller holds mu, or is New.
func (f *Fleet) addLane(m Merchant) error {
	obs := f.cfg.Observe(m.ID)
	opts := append(slices.Clone(f.cfg.Client), frontpay.WithRateLimit(m.Rate), frontpay.WithHooks(obs.Client))
	api, err := frontpay.New(m.APIURL, m.Token, opts...)
	if err != nil {
		return fmt.Errorf("%s: %w", m, err)
	}
	sc := f.cfg.Status
	sc.Prefix, sc.Merchant, sc.Secret, sc.APIRate = f.cfg.Topology.SubjectPrefix(m.ID), m.ID, m.CallbackSecret, m.Rate
	sc.Observer = obs.Status
	sc.Logger = f.log.With("merchant", m.ID)
	sc.Conn, sc.CallbackSubject = f.nc, f.cfg.Topology.Prefix+"frontpay.callback"
	if m.ID != "" {
		sc.CallbackSubject += "." + m.ID
	}
	f.known[m.ID] = m
	f.lanes[m.ID] = &lane{m: m, api: api, status: status.New(sc, api, f.pub, f.kv)}
	return nil
}

// Run runs the lanes until ctx ends, then stops them (each hands its commands over) and returns.
// ready is called once the first lanes consume.
func (f *Fleet) Run(ctx context.Context, ready func()) error {
	if f.cfg.File == "" {
		f.mu.Lock()
		err := f.start(ctx, f.lanes[""])
		f.mu.Unlock()
		if err != nil {
			return err
		}
		if ready != nil {
			ready()
		}
		<-ctx.Done()
		f.stopAll()
		return nil
	}

	u := consumer.NewUnknownMerchants(f.cfg.Topology, f.cfg.Worker.Source, f.js, f.kv, f.pub, f.cfg.Observe("").Consumer,
		f.log.With("component", "unknown-merchants"))
	var bg sync.WaitGroup
	bctx, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	bg.Go(func() {
		if err := u.Run(bctx); err != nil {
			f.log.Error("unknown merchants", "err", err)
		}
	})
	bg.Go(func() {
		if err := f.ms.run(bctx); err != nil {
			f.log.Error("membership", "err", err)
		}
	})
	defer func() { stopBG(); bg.Wait() }()

	// Assigning before the others' heartbeats are in would start every merchant's lane here
	// only to hand most of them back a moment later.
	select {
	case <-f.ms.synced:
	case <-time.After(aliveFor):
	case <-ctx.Done():
		f.stopAll()
		return nil
	}
	if err := f.assign(ctx); err != nil {
		return err
	}
	if ready != nil {
		ready()
	}
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	reload := time.NewTicker(f.cfg.Reload)
	defer reload.Stop()
	for {
		select {
		case <-ctx.Done():
			f.stopAll()
			return nil
		case <-reload.C:
			f.reload()
		case <-tick.C:
		case <-f.ms.changed:
		}
		if err := f.assign(ctx); err != nil {
			f.log.Warn("assigning merchants", "err", err)
		}
	}
}

// assign starts the lanes of the merchants assigned to this replica and stops the others.
func (f *Fleet) assign(ctx context.Context) error {
	members := f.ms.alive()
	f.mu.Lock()
	defer f.mu.Unlock()
	owners := assign(slices.Collect(maps.Keys(f.lanes)), members)
	var errs []error
	for id, l := range f.lanes {
		mine := owners[id] == f.cfg.Worker.Instance
		switch {
		case mine && l.cancel == nil:
			errs = append(errs, f.start(ctx, l))
		case !mine && l.cancel != nil:
			f.log.Info("handing a merchant over", "merchant", id)
			f.stopLane(l)
		}
	}
	return errors.Join(errs...)
}

// reload reads the file again: merchants added get lanes, changed ones (token, URL, rate,
// secret) new ones, removed ones none (their commands wait in the stream).
func (f *Fleet) reload() {
	ms, err := Load(f.cfg.File, f.cfg.DefaultURL, f.cfg.DefaultRate)
	if err != nil {
		f.log.Error("merchants file not reloaded: the merchants of before go on", "err", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := map[string]Merchant{}
	for _, m := range ms {
		now[m.ID] = m
	}
	for id, l := range f.lanes {
		if m, ok := now[id]; ok && m == l.m {
			continue
		}
		f.log.Info("merchant removed or changed", "merchant", id)
		f.stopLane(l)
		f.wg.Go(func() { // its callbacks still being checked end before stopAll returns
			if l.done != nil {
				<-l.done
			}
			l.status.Close()
		})
		delete(f.lanes, id)
		delete(f.known, id)
	}
	for id, m := range now {
		if _, ok := f.lanes[id]; ok {
			continue
		}
		f.log.Info("merchant added or changed", "merchant", m)
		if err := f.addLane(m); err != nil {
			f.log.Error("merchant not added", "merchant", id, "err", err)
		}
	}
}

// start runs a lane's worker. Caller holds mu.
func (f *Fleet) start(ctx context.Context, l *lane) error {
	if f.stopping {
		return nil
	}
	id := l.m.ID
	if id != "" && !f.ensured[id] {
		if err := f.cfg.Topology.EnsureMerchant(ctx, f.js, f.kv, id); err != nil {
			return fmt.Errorf("merchant %s: %w", id, err)
		}
		f.ensured[id] = true
	}
	wc := f.cfg.Worker
	wc.Merchant = id
	wc.Observer = f.cfg.Observe(id).Consumer
	wc.Logger = f.log.With("merchant", id)
	wc.WhileOwner = func(ctx context.Context) {
		if err := l.status.Own(ctx); err != nil {
			f.log.Error("status service", "merchant", id, "err", err)
		}
	}
	w := consumer.New(wc, f.js, f.kv, l.api, f.pub)
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	started, done := make(chan error, 1), make(chan struct{})
	l.cancel, l.done = cancel, done
	f.wg.Go(func() {
		defer close(done)
		err := w.Run(wctx, func() { started <- nil })
		if err != nil {
			f.log.Error("worker stopped", "merchant", id, "err", err)
			select {
			case started <- err: // it never consumed
			default:
			}
		}
	})
	select {
	case err := <-started:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stopLane stops a lane's worker (it hands its commands over) without waiting for it. Caller
// holds mu.
func (f *Fleet) stopLane(l *lane) {
	if l.cancel != nil {
		l.cancel()
		l.cancel = nil
	}
}

// stopAll stops every lane's worker and waits for them; the status services stop taking callbacks.
func (f *Fleet) stopAll() {
	f.mu.Lock()
	f.stopping = true
	for _, l := range f.lanes {
		f.stopLane(l)
	}
	lanes := slices.Collect(maps.Values(f.lanes))
	f.mu.Unlock()
	f.wg.Wait()
	for _, l := range lanes {
		l.status.Close()
	}
}

// CallbackHandler serves the callbacks: GET /callbacks/frontpay without a file, GET
// /callbacks/frontpay/<merchant> with one (404 for a merchant not known).
func (f *Fleet) CallbackHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("merchant")
		f.mu.Lock()
		l := f.lanes[id]
		f.mu.Unlock()
		if l == nil || (id == "") != (f.cfg.File == "") {
			http.NotFound(w, r)
			return
		}
		l.status.ServeCallback(w, r)
	})
}

// Lag reads the lag of every known merchant's consumer (consumer.Topology.Lag); a merchant
// whose consumer no replica has made yet has none.
func (f *Fleet) Lag(ctx context.Context) ([]consumer.ConsumerLag, error) {
	var out []consumer.ConsumerLag
	for _, id := range f.Merchants() {
		l, err := f.cfg.Topology.Lag(ctx, f.js, id)
		if id != "" && errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, l...)
	}
	return out, nil
}
