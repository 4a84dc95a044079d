package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/schemas"
)

// The bare pipeline's stream, subjects and consumer: apart from the worker's.
const (
	bareCommands       = "BENCH_BARE_COMMANDS"
	bareResults        = "BENCH_BARE_RESULTS"
	bareCommandSubject = "bench.bare.capture.requested"
	bareConsumer       = "bench-bare"
)

// phase is the measurement of one batch of commands: when each was published and answered and
// what the API spent on it.
type phase struct {
	n         int
	answered  int
	elapsed   time.Duration // first publish to last result
	rate      float64       // answered / elapsed, per second
	p50, p99  time.Duration // overhead
	api50     time.Duration // API time per command, p50
	failed    int
	reasons   string
	published []int64
	result    []int64
}

// measure computes a phase from its times.
func measure(cmds []command, published, result []int64, rec *recorder, c *collector) phase {
	api := apiTimes(rec, cmds)
	over, missing := overheads(published, result, api)
	first, last, n := span(published, result)
	p := phase{n: len(cmds), answered: len(cmds) - missing, published: published, result: result}
	p.elapsed = time.Duration(last - first)
	p.rate = rate(n, p.elapsed)
	p.p50, p.p99 = percentile(over, 50), percentile(over, 99)
	p.api50 = percentile(api, 50)
	p.failed, p.reasons = c.failed()
	return p
}

// runPhase publishes cmds (paced at perSecond, 0: all at once), waits for their results on
// subjects and measures.
func runPhase(ctx context.Context, w *world, cmds []command, perSecond float64, timeout time.Duration, subjects ...string) (phase, error) {
	w.rec.reset()
	c, err := collect(w.nc, cmds, subjects...)
	if err != nil {
		return phase{}, err
	}
	defer c.stop()
	published := make([]int64, len(cmds))
	if err := publishPaced(ctx, w.js, cmds, published, perSecond); err != nil {
		return phase{}, err
	}
	err = c.wait(ctx, timeout)
	return measure(cmds, published, c.results(), w.rec, c), err
}

var workerResults = []string{"*.*.succeeded", "*.*.failed"}

// throughput runs the worker against a backlog of captures at zero API latency and the bare
// pipeline against the same, alternating, cfg.throughputRuns times each (medians, and the median
// of each pair's ratio), then the worker at half its median rate.
func throughput(ctx context.Context, cfg *config) ([]Row, error) {
	const sc = "throughput"
	w, err := newWorld(sandbox.Options{RateLimit: -1, Seed: 1})
	if err != nil {
		return nil, err
	}
	defer w.close()

	runs := cfg.throughputRuns
	t := time.Now()
	workerRes, err := setupReservations(ctx, w.api, w.sb, runs*cfg.n, true)
	if err != nil {
		return nil, err
	}
	bareRes, err := setupReservations(ctx, w.api, w.sb, runs*cfg.n, true)
	if err != nil {
		return nil, err
	}
	log.Printf("throughput: set up %d paid reservations in %s", 2*runs*cfg.n, time.Since(t).Round(time.Millisecond))
	workerCmds, err := captureCommands(workerRes, schemas.CommandSubject("", frontpay.ReservationCapture))
	if err != nil {
		return nil, err
	}
	bareCmds, err := captureCommands(bareRes, bareCommandSubject)
	if err != nil {
		return nil, err
	}

	wk, err := w.startWorker(ctx, workerOptions{Concurrency: cfg.concurrency, APITimeout: cfg.apiTimeout, DrainTimeout: drainTimeout})
	if err != nil {
		return nil, err
	}
	defer func() {
		if wk != nil {
			_ = wk.Close()
		}
	}()

	// 1. The worker, full load (every command published at once), then the bare pipeline, same
	// load, while the worker idles; runs times, alternating.
	var (
		fulls, bares           []phase
		ratios                 []float64
		workerOps, bareOps     float64
		workerCalls            float64
		workerRates, bareRates []float64
	)
	for i := range runs {
		cmds := workerCmds[i*cfg.n : (i+1)*cfg.n]
		if i == 0 && cfg.cpuprofile != "" {
			f, err := os.Create(cfg.cpuprofile)
			if err != nil {
				return nil, err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return nil, err
			}
			log.Printf("throughput: CPU profile of the worker's first full-load run to %s", cfg.cpuprofile)
			defer f.Close()
		}
		inBefore := w.inMsgs()
		full, err := runPhase(ctx, w, cmds, 0, cfg.phaseTimeout, workerResults...)
		if i == 0 {
			workerOps = opsPerCommand(w.inMsgs()-inBefore, len(cmds))
			workerCalls = w.rec.perCommand(len(cmds))
			if cfg.cpuprofile != "" {
				pprof.StopCPUProfile()
			}
		}
		if err != nil {
			return nil, fmt.Errorf("worker, full load: %w", err)
		}
		inBefore = w.inMsgs()
		bare, err := runBare(ctx, w, cfg, bareCmds[i*cfg.n:(i+1)*cfg.n])
		if i == 0 {
			bareOps = opsPerCommand(w.inMsgs()-inBefore, cfg.n)
		}
		if err != nil {
			return nil, fmt.Errorf("bare pipeline: %w", err)
		}
		log.Printf("throughput: run %d: worker %d commands in %s: %.0f/s; bare %d in %s: %.0f/s", i+1,
			full.answered, full.elapsed.Round(time.Millisecond), full.rate, bare.answered, bare.elapsed.Round(time.Millisecond), bare.rate)
		fulls, bares = append(fulls, full), append(bares, bare)
		workerRates, bareRates = append(workerRates, full.rate), append(bareRates, bare.rate)
		if bare.rate > 0 {
			ratios = append(ratios, full.rate/bare.rate*100)
		}
	}
	full, bare := medianPhase(fulls), medianPhase(bares)

	// 2. The worker at half its median rate, paced.
	half := full.rate / 2
	halfN := max(int(half*cfg.halfDuration.Seconds()), 1)
	t = time.Now()
	halfRes, err := setupReservations(ctx, w.api, w.sb, halfN, true)
	if err != nil {
		return nil, err
	}
	log.Printf("throughput: set up %d paid reservations in %s", halfN, time.Since(t).Round(time.Millisecond))
	halfCmds, err := captureCommands(halfRes, schemas.CommandSubject("", frontpay.ReservationCapture))
	if err != nil {
		return nil, err
	}
	hl, err := runPhase(ctx, w, halfCmds, half, cfg.phaseTimeout, workerResults...)
	if err != nil {
		return nil, fmt.Errorf("worker, half load: %w", err)
	}
	pubSpan := time.Duration(hl.published[len(hl.published)-1] - hl.published[0])
	// How far the worker was behind when the publisher stopped: well above the overhead means the
	// half-load rate was more than it sustains, and the overhead figures include queueing.
	_, lastResult, _ := span(hl.published, hl.result)
	lag := time.Duration(lastResult - hl.published[len(hl.published)-1])
	log.Printf("throughput: half load %d commands at %.0f/s over %s", hl.answered, half, pubSpan.Round(time.Millisecond))
	_ = wk.Close()
	wk = nil

	share := median(ratios)
	failed := 0
	for i := range fulls {
		failed += fulls[i].failed + bares[i].failed
	}
	rows := []Row{
		atLeast(sc, "worker throughput (full load), median", full.rate, "commands/s", fmt.Sprintf("%.0f/s", full.rate), 5000, "≥ 5000/s"),
		info(sc, "bare pipeline throughput, median", bare.rate, "commands/s", fmt.Sprintf("%.0f/s", bare.rate)),
		atLeast(sc, "worker / bare, median of the pairs", share, "%", fmt.Sprintf("%.1f%%", share), 70, "≥ 70%"),
		info(sc, "worker overhead p50 (full load)", msValue(full.p50), "ms", ms(full.p50)),
		info(sc, "worker overhead p99 (full load)", msValue(full.p99), "ms", ms(full.p99)),
		info(sc, "bare overhead p50 (full load)", msValue(bare.p50), "ms", ms(bare.p50)),
		info(sc, "bare overhead p99 (full load)", msValue(bare.p99), "ms", ms(bare.p99)),
		info(sc, "API time per command p50 (worker / bare)", msValue(full.api50), "ms", ms(full.api50)+" / "+ms(bare.api50)),
		info(sc, "half-load rate", rate(len(halfCmds)-1, pubSpan), "commands/s", fmt.Sprintf("%.0f/s for %s", rate(len(halfCmds)-1, pubSpan), pubSpan.Round(100*time.Millisecond))),
		info(sc, "last result after last publish (half load)", msValue(lag), "ms", ms(lag)),
		info(sc, "worker overhead p50 (half load)", msValue(hl.p50), "ms", ms(hl.p50)),
		below(sc, "worker overhead p99 (half load)", msValue(hl.p99), "ms", ms(hl.p99), 5, "< 5 ms"),
		atMost(sc, "failed results (all runs and the half load)", float64(failed+hl.failed), "results",
			fmt.Sprintf("%d", failed+hl.failed), 0, "0"),
		atMost(sc, "JetStream operations per command (worker / bare)", workerOps, "operations",
			fmt.Sprintf("%.2f / %.2f", workerOps, bareOps), 5, "≤ 5"),
		atMost(sc, "API calls per capture", workerCalls, "calls", fmt.Sprintf("%.2f", workerCalls), 1, "1"),
	}
	rows[0].Note = fmt.Sprintf("%d runs of %d captures, alternating with the bare pipeline's; worker %s/s, bare %s/s, worker/bare %s%%; the overheads are the median run's",
		runs, cfg.n, joinFloats(workerRates, "%.0f"), joinFloats(bareRates, "%.0f"), joinFloats(ratios, "%.1f"))
	rows[1].Note = "the same captures through a plain pull consumer, the same client and a result publish: no record, no ordering"
	rows[3].Note = "a backlog: includes the wait in the stream"
	if lag > 100*time.Millisecond {
		rows[9].Note = "the worker fell behind the half-load publisher: the half-load overheads include queueing (a short -n overestimates the sustained rate)"
	}
	if r := full.reasons + " " + hl.reasons + " " + bare.reasons; failed+hl.failed > 0 {
		rows[len(rows)-3].Note = r
	}
	rows[len(rows)-2].Note = "messages clients sent the server in the first full-load run (server varz in_msgs), per command, less the command's own publish: record writes and reads, result publishes, acks, pull requests"
	return rows, nil
}

// medianPhase is the phase of median rate.
func medianPhase(ps []phase) phase {
	s := slices.SortedFunc(slices.Values(ps), func(a, b phase) int { return cmp.Compare(a.rate, b.rate) })
	return s[len(s)/2]
}

// joinFloats formats v with format, comma-separated.
func joinFloats(v []float64, format string) string {
	out := make([]string, len(v))
	for i, f := range v {
		out[i] = fmt.Sprintf(format, f)
	}
	return strings.Join(out, ", ")
}

// runBare runs the bare pipeline over cmds: a plain pull consumer on a stream of its own, the
// capture through a frontpay.Client, a result published with Nats-Msg-Id, then the ack; no
// idempotency record, no ordering. cfg.concurrency goroutines, like the worker's limit.
func runBare(ctx context.Context, w *world, cfg *config, cmds []command) (phase, error) {
	for _, sc := range []jetstream.StreamConfig{
		{Name: bareCommands, Subjects: []string{"bench.bare.*.requested"}, Storage: jetstream.FileStorage,
			Retention: jetstream.LimitsPolicy, Duplicates: consumer.DuplicateWindow},
		{Name: bareResults, Subjects: []string{"bench.bare.*.succeeded", "bench.bare.*.failed"}, Storage: jetstream.FileStorage,
			Retention: jetstream.LimitsPolicy, Duplicates: consumer.DuplicateWindow},
	} {
		if _, err := w.js.CreateOrUpdateStream(ctx, sc); err != nil {
			return phase{}, err
		}
	}
	cons, err := w.js.CreateOrUpdateConsumer(ctx, bareCommands, jetstream.ConsumerConfig{
		Durable: bareConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
		MaxDeliver: -1, MaxAckPending: consumer.MaxAckPending, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return phase{}, err
	}
	nc, err := nats.Connect(w.ns.URL, nats.Name("bench-bare"))
	if err != nil {
		return phase{}, err
	}
	defer drain(nc)
	js, err := jetstream.New(nc)
	if err != nil {
		return phase{}, err
	}
	api, err := frontpay.New(w.sb.URL, token, frontpay.WithTimeout(cfg.apiTimeout))
	if err != nil {
		return phase{}, err
	}

	work := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	for range cfg.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range work {
				bareHandle(ctx, js, api, cfg.apiTimeout, m)
			}
		}()
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { work <- m }, jetstream.PullMaxMessages(max(cfg.concurrency/2, 8)))
	if err != nil {
		close(work)
		wg.Wait()
		return phase{}, err
	}
	p, perr := runPhase(ctx, w, cmds, 0, cfg.phaseTimeout, "bench.bare.*.succeeded", "bench.bare.*.failed")
	cc.Drain()
	<-cc.Closed()
	close(work)
	wg.Wait()
	return p, perr
}

// bareHandle is the whole of the bare pipeline for one message.
func bareHandle(ctx context.Context, js jetstream.JetStream, api *frontpay.Client, timeout time.Duration, m jetstream.Msg) {
	var ev schemas.Event
	var data struct {
		ReservationUUID string `json:"reservationUuid"`
		frontpay.CaptureRequest
	}
	if json.Unmarshal(m.Data(), &ev) != nil || json.Unmarshal(ev.Data, &data) != nil {
		_ = m.Term()
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	res, err := api.Capture(callCtx, data.ReservationUUID, &data.CaptureRequest)
	cancel()
	o := schemas.Origin{Op: frontpay.ReservationCapture, CommandID: ev.ID, Key: ev.ID, Resource: data.ReservationUUID}
	var result schemas.Event
	subject := "bench.bare.capture.succeeded"
	if err == nil {
		result, err = schemas.NewSuccess("bench-bare", o, schemas.Success{HTTPStatus: res.HTTPStatus, Message: res.Message, Response: res.Raw}, time.Now())
	} else {
		subject = "bench.bare.capture.failed"
		result, err = schemas.NewFailure("bench-bare", o, schemas.Failure{Reason: schemas.UpstreamUnavailable, Message: err.Error(), Command: m.Data()}, time.Now())
	}
	if err != nil {
		_ = m.Nak()
		return
	}
	b, err := json.Marshal(result)
	if err != nil {
		_ = m.Nak()
		return
	}
	out := nats.NewMsg(subject)
	out.Data = b
	out.Header.Set(jetstream.MsgIDHeader, result.ID)
	if _, err := js.PublishMsg(ctx, out); err != nil {
		_ = m.Nak()
		return
	}
	_ = m.Ack()
}
