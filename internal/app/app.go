// Package app is the worker as a whole: its configuration from the environment (Config,
// LoadConfig) and Main, which wires it: NATS (embedded or remote), the streams, the Front Payment
// clients, the merchants' consumers and status services (internal/fleet), metrics, tracing and
// the HTTP server. cmd/frontpay-worker is its command line; cmd/bench runs it in-process.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/embedded"
	"github.com/nordpay/frontpay-worker/internal/fleet"
	"github.com/nordpay/frontpay-worker/internal/metrics"
	"github.com/nordpay/frontpay-worker/internal/tracing"
	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/status"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"
)

// Main is the whole worker: NATS (embedded or remote), the streams, the Front Payment client,
// the consumer and the HTTP server. Run starts it and returns once it is consuming; Close stops
// it, losing nothing.
type Main struct {
	Config *Config
	Logger *slog.Logger
	// EmbeddedAddr is where an embedded NATS server listens when NATS_URL is empty.
	EmbeddedAddr string
	// Untraced leaves the worker without a tracer: no spans at all, where production without
	// OTEL_* variables has the no-op provider's. For cmd/bench, which measures what those cost.
	Untraced bool
	// TookOver, where set, is told each time this replica becomes the owner of a merchant's
	// commands (as frontpay_takeovers_total is). For cmd/bench, which waits for ownership to settle.
	TookOver func(merchant string)
	// MerchantsReload, where set, is how often the merchants file is read again instead of
	// fleet.DefaultReload. For tests, which check a change within seconds rather than wait it out.
	MerchantsReload time.Duration

	// HTTPAddr is the address the HTTP server listens on, known once Run returned.
	HTTPAddr string
	// NATSURL is the NATS server connected to, known once Run returned.
	NATSURL string

	// readHeaderTimeout, where set, replaces the HTTP server's ReadHeaderTimeout (5 s): the tests
	// lower it to see slow clients cut off sooner.
	readHeaderTimeout time.Duration

	server   *embedded.Server
	nc       *nats.Conn
	http     *http.Server
	metrics  *metrics.Metrics
	fleet    *fleet.Fleet
	traces   func(context.Context) error // flushes the spans
	cancel   context.CancelFunc
	done     chan error
	ready    atomic.Bool
	draining atomic.Bool
	closed   sync.Once
	closeErr error
}

// NewMain returns a Main for cfg.
func NewMain(cfg *Config, log *slog.Logger) *Main {
	return &Main{Config: cfg, Logger: log, EmbeddedAddr: "127.0.0.1:4222"}
}

// Run starts the worker and returns once it consumes, or with the first error, having then
// released what it started (Close returns at once).
func (m *Main) Run(ctx context.Context) error {
	if err := m.run(ctx); err != nil {
		_ = m.Close()
		return err
	}
	return nil
}

func (m *Main) run(ctx context.Context) error {
	cfg, log := m.Config, m.Logger
	url := cfg.NATSURL
	if url == "" {
		host, port, err := splitAddr(m.EmbeddedAddr)
		if err != nil {
			return fmt.Errorf("embedded NATS address: %w", err)
		}
		dir := filepath.Join(cfg.DataDir, "nats")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("FRONTPAY_DATA_DIR: %w", err)
		}
		if m.server, err = embedded.Start(embedded.Options{StoreDir: dir, Host: host, Port: port}); err != nil {
			return err
		}
		url = m.server.ClientURL()
		log.Info("embedded NATS server started", "url", url, "store", dir)
	}
	m.NATSURL = url
	nc, js, err := Connect(&cfg.NATSConfig, url, log)
	if err != nil {
		return err
	}
	m.nc = nc
	topo := cfg.topology()
	kv, err := ensure(ctx, topo, js, log)
	if err != nil {
		return err
	}
	pub := publisher.New(js, log, 5*time.Second)
	var tp trace.TracerProvider
	exporting := false
	if !m.Untraced {
		var shutdown func(context.Context) error
		if tp, exporting, shutdown, err = tracing.Setup(ctx, cfg.WorkerName); err != nil {
			return err
		}
		m.traces = shutdown
	}
	clientOpts := []frontpay.Option{frontpay.WithTimeout(cfg.APITimeout), frontpay.WithRetryAfterMax(cfg.RetryMax)}
	if exporting {
		// The API calls as HTTP client spans, children of their command's.
		clientOpts = append(clientOpts, frontpay.WithHTTPClient(&http.Client{
			Transport: otelhttp.NewTransport(frontpay.DefaultTransport(), otelhttp.WithTracerProvider(tp))}))
	}
	var f *fleet.Fleet
	if m.metrics, err = metrics.New(nil, func(ctx context.Context) ([]consumer.ConsumerLag, error) {
		return f.Lag(ctx)
	}); err != nil {
		return err
	}
	f, err = fleet.New(fleet.Config{
		Topology: topo,
		Worker: consumer.Config{
			Topology: topo, Source: cfg.WorkerName, Instance: instanceName(),
			MaxAttempts: cfg.MaxAttempts, RetryInitial: cfg.RetryInitial, RetryMax: cfg.RetryMax,
			APITimeout: cfg.APITimeout, Concurrency: cfg.Concurrency, DrainTimeout: cfg.DrainTimeout, LeaseMargin: cfg.LeaseMargin,
			NoMarker: cfg.ReadbackMarker == "off", Tracer: tp,
		},
		Status: status.Config{
			Source: cfg.WorkerName, Poll: cfg.HistoryPoll, VerifyTimeout: cfg.DrainTimeout, CallbackShare: cfg.CallbackShare,
			Tracer: tp,
		},
		Client:      clientOpts,
		File:        cfg.MerchantsFile,
		Reload:      m.MerchantsReload,
		Single:      fleet.Merchant{APIURL: cfg.APIURL, Rate: cfg.APIRate, Token: string(cfg.APIToken), CallbackSecret: string(cfg.CallbackSecret)},
		DefaultURL:  cfg.APIURL,
		DefaultRate: cfg.APIRate,
		Observe: func(merchant string) fleet.Observers {
			o := m.metrics.For(merchant)
			var c consumer.Observer = o
			if m.TookOver != nil {
				c = takeOvers{Observer: o, note: func() { m.TookOver(merchant) }}
			}
			return fleet.Observers{Consumer: c, Status: o, Client: o.ClientHooks()}
		},
		Logger: log,
	}, js, kv, pub)
	if err != nil {
		return err
	}
	m.fleet = f

	if err := m.serveHTTP(); err != nil {
		return err
	}

	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel, m.done = cancel, make(chan error, 1)
	started := make(chan struct{})
	go func() { m.done <- f.Run(work, func() { close(started) }) }()
	select {
	case <-started:
		m.ready.Store(true)
		log.Info("worker ready", "http", m.HTTPAddr, "prefix", cfg.SubjectPrefix, "merchants", len(f.Merchants()))
		return nil
	case err := <-m.done:
		m.done <- err
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops consuming, finishes or hands back commands in flight within FRONTPAY_DRAIN_TIMEOUT,
// drains the NATS connection (flushing acks and publishes) and stops the embedded server. Calling
// it again returns the first call's result.
func (m *Main) Close() error {
	m.closed.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Main) close() error {
	m.draining.Store(true)
	var errs []error
	if m.cancel != nil {
		m.cancel()
		if err := <-m.done; err != nil {
			errs = append(errs, err)
		}
	}
	if m.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, m.http.Shutdown(ctx))
		cancel()
	}
	if m.traces != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, m.traces(ctx))
		cancel()
	}
	if m.nc != nil {
		closed := make(chan struct{})
		m.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := m.nc.Drain(); err != nil {
			m.nc.Close()
		} else {
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				m.nc.Close()
			}
		}
	}
	if m.server != nil {
		m.server.Shutdown()
	}
	m.Logger.Info("stopped")
	return errors.Join(errs...)
}

// serveHTTP starts the HTTP server: probes, metrics and the callback receiver.
func (m *Main) serveHTTP() error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.metrics.Handler())
	mux.Handle("GET "+status.CallbackPath, m.fleet.CallbackHandler())
	mux.Handle("GET "+status.CallbackPath+"/{merchant}", m.fleet.CallbackHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case m.draining.Load():
			http.Error(w, "draining", http.StatusServiceUnavailable)
		case !m.ready.Load() || m.nc == nil || !m.nc.IsConnected():
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ready\n"))
		}
	})
	ln, err := net.Listen("tcp", m.Config.HTTPAddr)
	if err != nil {
		return fmt.Errorf("FRONTPAY_HTTP_ADDR: %w", err)
	}
	m.HTTPAddr = ln.Addr().String()
	m.http = m.httpServer(mux)
	go func() {
		if err := m.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("http server", "err", err)
		}
	}()
	return nil
}

// httpServer returns the HTTP server serving h, with its limits.
func (m *Main) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cmp.Or(m.readHeaderTimeout, 5*time.Second),
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
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

// Connect opens the NATS connection (credentials or an nkey, TLS, and reconnects for ever) and
// its JetStream context. extra options come last and so override those (the tools give up at
// once instead).
func Connect(cfg *NATSConfig, url string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name("frontpay-worker"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		// A refused TLS handshake or authorization shows here, while the connection retries.
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("NATS connect failed", "err", err) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("NATS error", "err", err) }),
	}
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	if cfg.NATSNKey != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NATSNKey)
		if err != nil {
			return nil, nil, fmt.Errorf("NATS_NKEY: %w", err)
		}
		opts = append(opts, o)
	}
	if cfg.NATSTLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.NATSTLSCA))
	}
	if cfg.NATSTLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.NATSTLSCert, cfg.NATSTLSKey))
	}
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// ensure sets up the topology, retrying while the server (or a cluster electing its leaders) is
// not ready yet.
func ensure(ctx context.Context, topo consumer.Topology, js jetstream.JetStream, log *slog.Logger) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for wait := 100 * time.Millisecond; ; wait = min(wait*2, 5*time.Second) {
		kv, err := topo.Ensure(ctx, js)
		if err == nil {
			return kv, nil
		}
		if nc := js.Conn(); nc.IsClosed() {
			// Closed for good (authorization refused): say why rather than wait.
			return nil, fmt.Errorf("set up streams: NATS connection closed: %w", errors.Join(nc.LastError(), err))
		}
		log.Warn("setting up streams", "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("set up streams: %w", err)
		case <-time.After(wait):
		}
	}
}

func instanceName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%d", host, os.Getpid(), time.Now().UnixNano()%1e6)
}

func splitAddr(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil {
		return "", 0, fmt.Errorf("port %q: %w", port, err)
	}
	return host, p, nil
}
