package main

import (
	"context"
	"errors"
	"flag"
	"os"

	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
)

// runDev runs the worker on an embedded NATS server against a sandbox in the same process: the
// README's quick start, with nothing to install or configure.
func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	addr := fs.String("sandbox-addr", "127.0.0.1:8099", "address of the in-process sandbox")
	if err := fs.Parse(args); err != nil {
		return errors.Join(err, errUsage)
	}
	setDefault("FRONTPAY_API_TOKEN", sandboxToken)
	cfg, err := LoadConfig()
	if err != nil {
		return err
	}
	log := newLogger(os.Stderr, cfg.LogFormat, cfg.LogLevel)
	sb, err := startSandbox(*addr, sandbox.Options{Token: string(cfg.APIToken), Logger: log.With("component", "sandbox")})
	if err != nil {
		return err
	}
	defer sb.Close()
	if os.Getenv("FRONTPAY_API_URL") == "" {
		cfg.APIURL = sb.URL
	}
	log.Info("sandbox serving", "url", sb.URL, "token", "see FRONTPAY_API_TOKEN (default "+sandboxToken+")")
	m := NewMain(cfg, log)
	if err := m.Run(ctx); err != nil {
		_ = m.Close()
		return err
	}
	<-ctx.Done()
	return m.Close()
}

// setDefault sets an environment variable that is not set, for dev runs only.
func setDefault(name, value string) {
	if os.Getenv(name) == "" && os.Getenv(name+"_FILE") == "" {
		_ = os.Setenv(name, value)
	}
}
