package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/schemas"
)

// idle publishes commands one at a time to an idle worker, each once the one before has its
// result: the time from publish to result less the API's time is what the worker itself adds, with
// no queue. It runs captures, then charges and completes of the same reservations, and cancels of
// others, and counts the API calls each operation makes.
func idle(ctx context.Context, cfg *config) ([]Row, error) {
	const sc = "idle"
	w, err := newWorld(sandbox.Options{RateLimit: -1, Seed: 5})
	if err != nil {
		return nil, err
	}
	defer w.close()
	n := cfg.idleN
	res, err := setupReservations(ctx, w.api, w.sb, 2*n, true)
	if err != nil {
		return nil, err
	}
	wk, err := w.startWorker(ctx, workerOptions{Concurrency: cfg.concurrency, APITimeout: cfg.apiTimeout, DrainTimeout: drainTimeout})
	if err != nil {
		return nil, err
	}
	defer wk.Close()

	type opRun struct {
		op    frontpay.Operation
		data  func(r reservation) map[string]any
		on    []reservation
		over  []time.Duration
		calls float64
	}
	runs := []*opRun{
		{op: frontpay.ReservationCapture, on: res[:n], data: func(r reservation) map[string]any {
			return map[string]any{"reservationUuid": r.UUID, "grandTotal": 40,
				"products": []any{map[string]any{"id": r.Line, "amount": 40}}, "additionalText": "idle"}
		}},
		{op: frontpay.ReservationCharge, on: res[:n], data: func(r reservation) map[string]any {
			return map[string]any{"reservationUuid": r.UUID, "grandTotal": 10, "additionalText": "idle",
				"products": map[string]any{"0": map[string]any{"name": "Extra", "productId": nil, "rate": 10, "tax": "25", "amount": 10}}}
		}},
		{op: frontpay.ReservationComplete, on: res[:n], data: func(r reservation) map[string]any {
			return map[string]any{"reservationUuid": r.UUID, "note": "idle"}
		}},
		{op: frontpay.ReservationCancel, on: res[n:], data: func(r reservation) map[string]any {
			return map[string]any{"reservationUuid": r.UUID, "note": "idle"}
		}},
	}
	for _, run := range runs {
		for _, r := range run.on {
			c, err := newCommand(run.op, schemas.CommandSubject("", run.op), run.data(r))
			if err != nil {
				return nil, err
			}
			c.UUID = r.UUID
			p, err := runPhase(ctx, w, []command{c}, 0, cfg.phaseTimeout, workerResults...)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", run.op, err)
			}
			if p.failed > 0 {
				return nil, fmt.Errorf("%s of %s failed: %s", run.op, r.UUID, p.reasons)
			}
			run.over = append(run.over, p.p50)
			run.calls += w.rec.perCommand(1)
		}
		run.calls /= float64(len(run.on))
		log.Printf("idle: %d %s one at a time: overhead p50 %s, p99 %s, %.2f API calls each", len(run.on), run.op,
			ms(percentile(run.over, 50)), ms(percentile(run.over, 99)), run.calls)
	}

	capture := runs[0]
	p50, p99 := percentile(capture.over, 50), percentile(capture.over, 99)
	rows := []Row{
		below(sc, "publish → result of one capture, less the API call, p50", msValue(p50), "ms", ms(p50), 3.0001, "≤ 3 ms"),
		below(sc, "publish → result of one capture, less the API call, p99", msValue(p99), "ms", ms(p99), 15.0001, "≤ 15 ms"),
	}
	rows[0].Note = fmt.Sprintf("%d captures, each published once the one before had its result", len(capture.over))
	for _, run := range runs {
		rows = append(rows, atMost(sc, "API calls per "+string(run.op), run.calls, "calls", fmt.Sprintf("%.2f", run.calls), 1, "1"))
	}
	return rows, nil
}
