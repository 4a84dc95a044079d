package main

import (
	"context"
	"fmt"
	"log"

	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
)

// tracingCost compares the worker as production runs it without OTEL_* variables (the no-op
// tracer provider: spans made and dropped, traceparents carried) with a worker without a tracer
// at all: details commands at zero API latency, runs of each alternating, medians compared.
func tracingCost(ctx context.Context, cfg *config) ([]Row, error) {
	const sc = "tracing"
	w, err := newWorld(sandbox.Options{RateLimit: -1, Seed: 7})
	if err != nil {
		return nil, err
	}
	defer w.close()
	res, err := setupReservations(ctx, w.api, w.sb, cfg.tracingN, false)
	if err != nil {
		return nil, err
	}
	rates := map[bool][]float64{} // untraced → rates
	// The first pair warms the process up (its heap, the server's caches) and is not counted.
	for i := range 2 * (cfg.tracingRuns + 1) {
		untraced := i%2 == 1
		cmds, err := detailsCommands(res, detailsSubject)
		if err != nil {
			return nil, err
		}
		wk, err := w.startWorker(ctx, workerOptions{Concurrency: cfg.concurrency, APITimeout: cfg.apiTimeout, DrainTimeout: drainTimeout, Untraced: untraced})
		if err != nil {
			return nil, err
		}
		p, err := runPhase(ctx, w, cmds, 0, cfg.phaseTimeout, workerResults...)
		_ = wk.Close()
		if err != nil {
			return nil, err
		}
		what := map[bool]string{false: "no-op tracer", true: "no tracer"}[untraced]
		if i < 2 {
			log.Printf("tracing: warm-up (%s): %.0f/s", what, p.rate)
			continue
		}
		rates[untraced] = append(rates[untraced], p.rate)
		log.Printf("tracing: run %d (%s): %.0f/s", i-1, what, p.rate)
	}
	on, off := median(rates[false]), median(rates[true])
	share := on / off * 100
	rows := []Row{
		info(sc, "no-op tracer (OTEL_* unset), median", on, "commands/s", fmt.Sprintf("%.0f/s", on)),
		info(sc, "no tracer, median", off, "commands/s", fmt.Sprintf("%.0f/s", off)),
		atLeast(sc, "no-op tracer / no tracer", share, "%", fmt.Sprintf("%.1f%%", share), 97, "≥ 97%"),
	}
	rows[0].Note = fmt.Sprintf("%d runs of %d details commands each, alternating with the runs without a tracer, after a warm-up pair", cfg.tracingRuns, cfg.tracingN)
	return rows, nil
}
