package testworld

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/internal/embedded"
	"github.com/nordpay/frontpay-worker/schemas"
)

// Topology sets up the worker's streams, bucket and consumers: consumer.Topology.
type Topology interface {
	Ensure(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error)
}

// NATS is an embedded JetStream server on a random loopback port with its store in a directory
// of its own, and a connection to it.
type NATS struct {
	URL  string     // the server's, the same across Restart
	Conn *nats.Conn // reconnects for ever, so that it outlives a Restart
	JS   jetstream.JetStream
	KV   jetstream.KeyValue // the state bucket, with WithTopology

	dir  string
	port int
	srv  *embedded.Server
}

// Option changes what JetStream sets up.
type Option func(*natsOptions)

type natsOptions struct {
	topo Topology
}

// WithTopology sets up topo on the server (what the worker does at every start); the state
// bucket is NATS.KV.
func WithTopology(topo Topology) Option { return func(o *natsOptions) { o.topo = topo } }

// JetStream starts a server with its store in a directory of the test, and connects to it; both
// are closed when the test ends.
func JetStream(tb testing.TB, opts ...Option) *NATS {
	tb.Helper()
	n, err := StartJetStream(tb.TempDir(), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(n.Close)
	return n
}

// StartJetStream is JetStream where there is no test, as in a TestMain: the store is dir, and
// the caller closes it.
func StartJetStream(dir string, opts ...Option) (*NATS, error) {
	var o natsOptions
	for _, f := range opts {
		f(&o)
	}
	n := &NATS{dir: dir}
	if err := n.start(); err != nil {
		return nil, err
	}
	n.URL = n.srv.ClientURL()
	var err error
	if n.Conn, n.JS, err = connect(n.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond)); err != nil {
		n.Close()
		return nil, err
	}
	if o.topo != nil {
		ctx, cancel := context.WithTimeout(context.Background(), Patience)
		defer cancel()
		if n.KV, err = o.topo.Ensure(ctx, n.JS); err != nil {
			n.Close()
			return nil, fmt.Errorf("ensure topology: %w", err)
		}
	}
	return n, nil
}

// start starts the server on n.port (any free port at first) over n.dir, and keeps its port.
func (n *NATS) start() error {
	srv, err := embedded.Start(embedded.Options{StoreDir: n.dir, Port: n.port})
	if err != nil {
		return err
	}
	addr, ok := srv.Server().Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		return errors.New("testworld: the server listens on no TCP port")
	}
	n.srv, n.port = srv, addr.Port
	return nil
}

func (n *NATS) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv = nil
	}
}

// Restart shuts the server down, runs down while it is down, and starts it again on the same
// port and store; the connection reconnects by itself.
func (n *NATS) Restart(tb testing.TB, down func()) {
	tb.Helper()
	n.stop()
	down()
	if err := n.start(); err != nil {
		tb.Fatal(err)
	}
}

// Server is the nats-server, e.g. for its statistics (Varz).
func (n *NATS) Server() *server.Server { return n.srv.Server() }

// Close closes the connection, then stops the server.
func (n *NATS) Close() {
	if n.Conn != nil {
		n.Conn.Close()
	}
	n.stop()
}

// ReadStream returns every event stored on a stream; none where the stream does not exist.
func ReadStream(tb testing.TB, js jetstream.JetStream, stream string) []schemas.Event {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	} else if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	batch, err := c.Fetch(int(info.State.Msgs), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	var out []schemas.Event
	for m := range batch.Messages() {
		var ev schemas.Event
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			tb.Fatalf("%s holds %q: %v", stream, m.Data(), err)
		}
		out = append(out, ev)
	}
	return out
}

// Server starts a nats-server of the test's own, configured by opts (TLS, accounts, no
// JetStream: what JetStream does not set up), and waits until it accepts connections; it is shut
// down when the test ends. With FRONTPAY_TEST_NATS_LOG set, it logs to the test's output.
func Server(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
	opts.NoLog, opts.NoSigs = os.Getenv("FRONTPAY_TEST_NATS_LOG") == "", true
	ns, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	if !opts.NoLog {
		ns.ConfigureLogger()
	}
	ns.Start()
	tb.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(Patience) {
		tb.Fatalf("nats-server not ready within %s", Patience)
	}
	return ns
}

// Connect opens a connection of the test's own to the server at url (a worker's, a cluster's);
// it is closed when the test ends.
func Connect(tb testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, js, err := connect(url, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc, js
}

func connect(url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}
