package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/embedded"
	"github.com/nordpay/frontpay-worker/publisher"
)

// The world of the tests and examples: an embedded NATS server, the sandbox over real HTTP, and a
// real worker (package consumer) for the empty prefix. Tests start workers for other prefixes.
var (
	// natsURL is the NATS server of the examples; a shop connects to its deployment's servers.
	natsURL string
	api     *sandbox.Sandbox
	apiURL  string
)

const token = "client-test-token"

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "frontpay-client-test-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(embedded.Options{StoreDir: dir})
	if err != nil {
		return 0, err
	}
	defer srv.Shutdown()
	natsURL = srv.ClientURL()
	api = sandbox.New(sandbox.Options{Token: token, RateLimit: -1})
	hs := httptest.NewServer(api)
	defer hs.Close()
	apiURL = hs.URL
	stop, err := startWorker("", true)
	if err != nil {
		return 0, err
	}
	defer stop()
	return m.Run(), nil
}

// startWorker sets up the topology of prefix on the test server and, with run, starts a worker
// on it. stop stops the worker.
func startWorker(prefix string, run bool) (stop func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	topo := consumer.Topology{Prefix: prefix, AckWait: time.Second}
	kv, err := topo.Ensure(ctx, js)
	if err != nil || !run {
		nc.Close()
		return func() {}, err
	}
	fp, err := frontpay.New(apiURL, token, frontpay.WithTimeout(2*time.Second))
	if err != nil {
		nc.Close()
		return nil, err
	}
	w := consumer.New(consumer.Config{
		Topology: topo, Source: "client-test", MaxAttempts: 2, RetryInitial: time.Millisecond, RetryMax: 10 * time.Millisecond,
		APITimeout: 2 * time.Second, Concurrency: 8, DrainTimeout: time.Second, LeaseMargin: 100 * time.Millisecond,
	}, js, kv, fp, publisher.New(js, nil, 0))
	work, stopWork := context.WithCancel(context.Background())
	started, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- w.Run(work, func() { close(started) }) }()
	select {
	case <-started:
	case err := <-done:
		stopWork()
		nc.Close()
		return nil, errors.Join(errors.New("worker did not start"), err)
	}
	return func() {
		stopWork()
		<-done
		nc.Close()
	}, nil
}

// startTestWorker is startWorker for one test.
func startTestWorker(t *testing.T, prefix string) {
	t.Helper()
	stop, err := startWorker(prefix, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
}

// connect connects to the test server for one test.
func connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
