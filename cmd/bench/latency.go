package main

import (
	"context"
	"fmt"
	"log"
	"sort"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/schemas"
)

// latency runs the worker against a backlog of captures that each take cfg.latency at the API and
// compares its throughput with the bound its concurrency sets: Concurrency / latency.
func latency(ctx context.Context, cfg *config) ([]Row, error) {
	const sc = "latency"
	w, err := newWorld(sandbox.Options{RateLimit: -1, Seed: 2})
	if err != nil {
		return nil, err
	}
	defer w.close()
	t := time.Now()
	res, err := setupReservations(ctx, w.api, w.sb, cfg.latencyN, true)
	if err != nil {
		return nil, err
	}
	log.Printf("latency: set up %d paid reservations in %s", cfg.latencyN, time.Since(t).Round(time.Millisecond))
	cmds, err := captureCommands(res, schemas.CommandSubject("", frontpay.ReservationCapture))
	if err != nil {
		return nil, err
	}
	w.sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{Latency: cfg.latency})

	wk, err := w.startWorker(ctx, workerOptions{Concurrency: cfg.concurrency, APITimeout: cfg.apiTimeout, DrainTimeout: drainTimeout})
	if err != nil {
		return nil, err
	}
	defer wk.Close()
	p, err := runPhase(ctx, w, cmds, 0, cfg.phaseTimeout, workerResults...)
	if err != nil {
		return nil, err
	}
	log.Printf("latency: %d captures in %s: %.0f/s", p.answered, p.elapsed.Round(time.Millisecond), p.rate)

	bound := float64(cfg.concurrency) / cfg.latency.Seconds()
	share := p.rate / bound * 100
	rows := []Row{
		info(sc, "worker throughput", p.rate, "commands/s", fmt.Sprintf("%.0f/s", p.rate)),
		info(sc, "concurrency bound", bound, "commands/s", fmt.Sprintf("%.0f/s", bound)),
		atLeast(sc, "throughput / bound", share, "%", fmt.Sprintf("%.1f%%", share), 90, "≥ 90%"),
		info(sc, "worker overhead p50 / p99", msValue(p.p50), "ms", ms(p.p50)+" / "+ms(p.p99)),
		atMost(sc, "failed results", float64(p.failed), "results", fmt.Sprint(p.failed), 0, "0"),
	}
	rows[0].Note = fmt.Sprintf("%d captures, capture latency %s, first publish to last result %s",
		p.answered, cfg.latency, p.elapsed.Round(time.Millisecond))
	rows[1].Note = fmt.Sprintf("concurrency %d / %s", cfg.concurrency, cfg.latency)
	rows[3].Note = "a backlog: includes the wait in the stream"
	if p.failed > 0 {
		rows[4].Note = p.reasons
	}
	return rows, nil
}

// ratelimit runs the worker with its rate limiter at cfg.apiRate a minute against the sandbox's own
// limit of sandbox.DefaultRateLimit a minute, on a backlog larger than the run can answer, and
// counts the requests that reach the API and the 429 answers.
func ratelimit(ctx context.Context, cfg *config) ([]Row, error) {
	const sc = "ratelimit"
	w, err := newWorld(sandbox.Options{RateLimit: -1, Seed: 3})
	if err != nil {
		return nil, err
	}
	defer w.close()
	// A backlog the run cannot finish: 25% more than the limit allows in the run.
	n := max(cfg.ratelimitN, int(float64(cfg.apiRate)*cfg.ratelimitDuration.Minutes()*1.25)+1)
	t := time.Now()
	res, err := setupReservations(ctx, w.api, w.sb, n, false) // the sandbox's limit is off for the setup
	if err != nil {
		return nil, err
	}
	log.Printf("ratelimit: set up %d reservations in %s", n, time.Since(t).Round(time.Millisecond))
	cmds, err := detailsCommands(res, detailsSubject)
	if err != nil {
		return nil, err
	}
	published := make([]int64, len(cmds))
	if err := publishAll(ctx, w.js, cmds, published); err != nil {
		return nil, err
	}
	c, err := collect(w.nc, cmds, workerResults...)
	if err != nil {
		return nil, err
	}
	defer c.stop()

	w.sb.SetRateLimit(0) // the default, 240 a minute, with a fresh window
	w.rec.reset()
	start := now()
	wk, err := w.startWorker(ctx, workerOptions{Concurrency: cfg.concurrency, APITimeout: cfg.ratelimitAPITimeout, DrainTimeout: drainTimeout, APIRate: cfg.apiRate})
	if err != nil {
		return nil, err
	}
	log.Printf("ratelimit: worker started on a backlog of %d details commands; running %s", n, cfg.ratelimitDuration)
	select {
	case <-time.After(cfg.ratelimitDuration):
	case <-ctx.Done():
		_ = wk.Close()
		return nil, ctx.Err()
	}
	end := now()
	arrivals, statuses := w.rec.counts()
	answered := int(c.got.Load())
	_ = wk.Close()
	_, statusesAfter := w.rec.counts() // 429s during the drain count too

	in := 0
	for _, a := range arrivals {
		if a >= start && a < end {
			in++
		}
	}
	window := time.Duration(end - start)
	perMin := float64(in) / window.Minutes()
	want := 0.95 * float64(cfg.apiRate)
	tooMany := statusesAfter[429]
	failed, reasons := c.failed()
	rows := []Row{
		atLeast(sc, "API requests per minute", perMin, "requests/min", fmt.Sprintf("%.1f/min", perMin), want,
			fmt.Sprintf("≥ %.0f/min (95%% of %d)", want, cfg.apiRate)),
		atMost(sc, "429 answers", float64(tooMany), "answers", fmt.Sprint(tooMany), 0, "0"),
		info(sc, "commands answered", float64(answered), "commands", fmt.Sprintf("%d of %d", answered, n)),
		atMost(sc, "failed results", float64(failed), "results", fmt.Sprint(failed), 0, "0"),
	}
	rows[0].Note = fmt.Sprintf("%d requests in %s; answers %s", in, window.Round(time.Millisecond), statusText(statuses))
	if failed > 0 {
		rows[3].Note = reasons
	}
	log.Printf("ratelimit: %d requests in %s (%.1f/min), %d answered 429", in, window.Round(time.Millisecond), perMin, tooMany)
	return rows, nil
}

// statusText renders counts by status, e.g. "200 ×480, 429 ×1".
func statusText(m map[int]int) string {
	codes := make([]int, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	s := ""
	for i, c := range codes {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%d ×%d", c, m[c])
	}
	if s == "" {
		s = "none"
	}
	return s
}
