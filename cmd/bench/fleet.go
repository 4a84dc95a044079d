package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/fleet"
	"github.com/nordpay/frontpay-worker/internal/metrics"
	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/status"
	"go.opentelemetry.io/otel/trace/noop"
)

// fleetOptions are what a scenario sets of a replica run in this process by internal/fleet, as
// cmd/frontpay-worker wires it; the rest is production's defaults.
type fleetOptions struct {
	Topology consumer.Topology // ensured by the scenario
	// File is FRONTPAY_MERCHANTS_FILE; "": the one merchant of the benchmark's token.
	File string
	// Instance names the replica: its instance, and the source of its events.
	Instance     string
	Concurrency  int           // per merchant
	APITimeout   time.Duration // 0: production's 30s
	DrainTimeout time.Duration // 0: production's 20s
	Rate         int           // FRONTPAY_API_RATE: the one merchant's, and a file merchant's without rate
	// TookOver, where set, is told each time the replica becomes the owner of a merchant's
	// commands.
	TookOver func(merchant string)
}

// startFleet starts a replica on a connection of its own: the lanes of internal/fleet, each a
// consumer.Worker with its client (rate limiter, metrics hooks) and status service (history
// poll off), a JSON logger at info level writing to io.Discard and the no-op tracer. It returns
// once the replica's first lanes consume.
func (w *world) startFleet(ctx context.Context, o fleetOptions) (*runningWorker, error) {
	nc, err := nats.Connect(w.srv.ClientURL(), nats.Name("frontpay-worker "+o.Instance))
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*runningWorker, error) { nc.Close(); return nil, err }
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(err)
	}
	kv, err := js.KeyValue(ctx, o.Topology.StateBucket())
	if err != nil {
		return fail(err)
	}
	obs, err := metrics.New(nil, nil)
	if err != nil {
		return fail(err)
	}
	apiTimeout := o.APITimeout
	if apiTimeout == 0 {
		apiTimeout = 30 * time.Second
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f, err := fleet.New(fleet.Config{
		Topology: o.Topology,
		Worker: consumer.Config{
			Topology: o.Topology, Source: o.Instance, Instance: o.Instance,
			APITimeout: apiTimeout, Concurrency: o.Concurrency, DrainTimeout: o.DrainTimeout,
			Tracer: noop.NewTracerProvider(),
		},
		Status: status.Config{Source: o.Instance, VerifyTimeout: 20 * time.Second, Tracer: noop.NewTracerProvider()},
		Client: []frontpay.Option{frontpay.WithTimeout(apiTimeout), frontpay.WithRetryAfterMax(5 * time.Minute)},
		File:   o.File,
		Single: fleet.Merchant{APIURL: w.http.URL, Rate: o.Rate, Token: token},
		// As cmd/frontpay-worker sets them: the API's URL and the rate of the environment.
		DefaultURL: w.http.URL, DefaultRate: o.Rate,
		Observe: func(merchant string) fleet.Observers {
			m := obs.For(merchant)
			var c consumer.Observer = m
			if o.TookOver != nil {
				c = takeOvers{Observer: m, note: func() { o.TookOver(merchant) }}
			}
			return fleet.Observers{Consumer: c, Status: m, Client: m.ClientHooks()}
		},
		Logger: log,
	}, js, kv, publisher.New(js, log, 5*time.Second))
	if err != nil {
		return fail(err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rw := &runningWorker{nc: nc, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() { rw.done <- f.Run(runCtx, func() { close(ready) }) }()
	select {
	case <-ready:
		return rw, nil
	case err := <-rw.done:
		cancel()
		nc.Close()
		return nil, fmt.Errorf("replica %s: %w", o.Instance, err)
	case <-ctx.Done():
		rw.stop()
		return nil, ctx.Err()
	}
}

// takeOvers passes everything to the metrics and tells note of each take-over too.
type takeOvers struct {
	consumer.Observer
	note func()
}

func (t takeOvers) TakeOver() {
	t.Observer.TakeOver()
	t.note()
}

// stopAll stops replicas at once, each handing its merchants over, and waits for them.
func stopAll(rws []*runningWorker) {
	var wg sync.WaitGroup
	for _, rw := range rws {
		wg.Go(rw.stop)
	}
	wg.Wait()
}

// fileMerchant is a merchant of a merchants file the benchmark writes.
type fileMerchant struct {
	ID    string
	Token string
	Rate  int
}

// writeMerchantsFile writes a FRONTPAY_MERCHANTS_FILE named name into dir, each token in a file
// of its own beside it, and returns its path.
func writeMerchantsFile(dir, name string, ms []fileMerchant) (string, error) {
	var b strings.Builder
	b.WriteString("merchants:\n")
	for _, m := range ms {
		tf := filepath.Join(dir, name+"-"+m.ID+".token")
		if err := os.WriteFile(tf, []byte(m.Token+"\n"), 0o600); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "  - id: %s\n    tokenFile: %q\n    rate: %d\n", m.ID, tf, m.Rate)
	}
	path := filepath.Join(dir, name+".yaml")
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}
