package client_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/publisher"
)

// The world of the tests and examples: an embedded NATS server, the sandbox over real HTTP, and a
// real worker (package consumer) for the empty prefix. Tests start workers for other prefixes.
var (
	// natsURL is the NATS server of the examples; a shop connects to its deployment's servers.
	natsURL string
	server  *testworld.NATS
	api     *testworld.API
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
	if server, err = testworld.StartJetStream(dir); err != nil {
		return 0, err
	}
	defer server.Close()
	natsURL = server.URL
	api = testworld.StartSandbox(sandbox.Options{Token: token, RateLimit: -1})
	defer api.Close()
	apiURL = api.URL
	stop, err := startWorker("", true)
	if err != nil {
		return 0, err
	}
	defer stop()
	return m.Run(), nil
}

// startWorker sets up the topology of prefix on the test server and, with run, starts a worker
// on it. stop stops the worker and returns what its Run returned.
func startWorker(prefix string, run bool) (stop func() error, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), testworld.Patience)
	defer cancel()
	topo := consumer.Topology{Prefix: prefix, AckWait: time.Second}
	kv, err := topo.Ensure(ctx, server.JS)
	if err != nil || !run {
		return func() error { return nil }, err
	}
	fp, err := frontpay.New(apiURL, token, frontpay.WithTimeout(2*time.Second))
	if err != nil {
		return nil, err
	}
	w := consumer.New(consumer.Config{
		Topology: topo, Source: "client-test", MaxAttempts: 2, RetryInitial: time.Millisecond, RetryMax: 10 * time.Millisecond,
		APITimeout: 2 * time.Second, Concurrency: 8, DrainTimeout: time.Second, LeaseMargin: 100 * time.Millisecond,
	}, server.JS, kv, fp, publisher.New(server.JS, nil, 0))
	r, err := testworld.Go(w.Run)
	if err != nil {
		return nil, fmt.Errorf("worker of %q: %w", prefix, err)
	}
	return r.Stop, nil
}

// startTestWorker is startWorker for one test.
func startTestWorker(t *testing.T, prefix string) {
	t.Helper()
	stop, err := startWorker(prefix, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("worker of %q: %v", prefix, err)
		}
	})
}

// connect connects to the test server for one test.
func connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, _ := testworld.Connect(t, natsURL)
	return nc
}
