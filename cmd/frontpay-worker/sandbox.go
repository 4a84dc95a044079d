package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
)

// sandboxToken is the bearer token of a local sandbox unless one is given.
const sandboxToken = "sandbox-token"

// sandboxServer is a sandbox listening on loopback.
type sandboxServer struct {
	*sandbox.Sandbox
	URL  string
	http *http.Server
}

// startSandbox serves a sandbox on addr ("127.0.0.1:0" for any free port).
func startSandbox(addr string, opts sandbox.Options) (*sandboxServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sandbox listen: %w", err)
	}
	url := "http://" + ln.Addr().String()
	if opts.PublicURL == "" {
		opts.PublicURL = url
	}
	s := &sandboxServer{Sandbox: sandbox.New(opts), URL: url}
	s.http = &http.Server{Handler: s.Sandbox, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	go func() { _ = s.http.Serve(ln) }()
	return s, nil
}

// Close stops serving and waits for callbacks in flight.
func (s *sandboxServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
	s.Sandbox.Close()
}

// runSandbox serves the sandbox until ctx ends.
func runSandbox(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8099", "address to listen on")
	token := fs.String("token", envOr("FRONTPAY_API_TOKEN", sandboxToken), "bearer token the sandbox accepts")
	rate := fs.Int("rate", sandbox.DefaultRateLimit, "requests a minute per token; -1 turns the limit off")
	seed := fs.Int64("seed", time.Now().UnixNano(), "seed of fault draws and identifiers")
	secret := fs.String("callback-secret", os.Getenv("FRONTPAY_CALLBACK_SECRET"), "key of the callbacks' checksum")
	if err := fs.Parse(args); err != nil {
		return errors.Join(err, errUsage)
	}
	log := newLogger(os.Stderr, envOr("FRONTPAY_LOG_FORMAT", "text"), envOr("FRONTPAY_LOG_LEVEL", "info"))
	s, err := startSandbox(*addr, sandbox.Options{
		Token: *token, RateLimit: *rate, Seed: *seed, CallbackSecret: *secret, Logger: log,
	})
	if err != nil {
		return err
	}
	log.Info("sandbox serving", "url", s.URL, "rate", *rate,
		"controls", s.URL+"/sandbox/ledger, PUT /sandbox/faults/{operation}, POST /sandbox/reservations/{uuid}/pay")
	<-ctx.Done()
	s.Close()
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// discardLogger is for components whose logs would drown the demo's output.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
