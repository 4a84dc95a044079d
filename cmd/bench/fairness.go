package main

import (
	"context"
	"fmt"
	"log"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/app"
	"github.com/nordpay/frontpay-worker/internal/proc"
	"github.com/nordpay/frontpay-worker/schemas"
)

// The fairness scenario's merchants and settings (issue 10, Proof: Fairness).
const (
	fairRate     = sandbox.DefaultRateLimit // every merchant's rate, and the sandbox's limit per token
	fairSupply   = 250                      // details commands a minute published to each steady merchant: above its budget
	fairReplicas = 3
	// Reservations per merchant: its commands go round them (commands of one reservation run one
	// after the other).
	fairReservations        = 32
	fairBacklogReservations = 100

	backlogMerchant = "backlog"    // has cfg.fairnessBacklog commands waiting when the replicas start
	downMerchant    = "down503"    // its API answers 503 throughout
	limitedMerchant = "limited429" // its API answers 429 throughout
	aloneMerchant   = "alone"      // a steady merchant on its own: the figures it is compared with
)

// fairnessPrefix is FRONTPAY_SUBJECT_PREFIX of the scenario.
const fairnessPrefix = "shops."

// fairness runs the merchants of issue 10's proof on fairnessReplicas replicas (app.Main in this
// process, as cmd/frontpay-worker runs it, each on a connection of its own) against the
// sandbox, which limits every token to 240 requests a minute: one merchant with a backlog
// waiting, one whose API answers 503, one whose API answers 429, and the others each given
// details commands at 250 a minute, above their budget of rate 240, so that each can use it all.
// Before them, the same workload of one merchant runs alone (the only merchant of the file, the
// same replicas). Each run measures in a steady window: once every merchant has an owner and no
// ownership moved for cfg.fairnessSettle, the steady supply starts; the window opens
// cfg.fairnessSettle later and lasts cfg.fairnessWindow. In it: each token's requests, as the
// sandbox counts them, and the median publish → result of each merchant's commands published in
// it. Over the whole run: the most requests any token had in a sliding minute.
func fairness(ctx context.Context, cfg *config) ([]Row, error) {
	const sc = "fairness"
	w, err := newWorld(sandbox.Options{Seed: 8}) // the sandbox's limit: 240 a minute per token
	if err != nil {
		return nil, err
	}
	defer w.close()
	topo := consumer.Topology{Prefix: fairnessPrefix, Merchants: true}
	kv, err := topo.Ensure(ctx, w.js)
	if err != nil {
		return nil, err
	}

	t := time.Now()
	ids := []string{backlogMerchant, downMerchant, limitedMerchant}
	for i := range cfg.fairnessMerchants - len(ids) {
		ids = append(ids, fmt.Sprintf("shop%02d", i+1))
	}
	accounts := map[string]*fairAccount{}
	for _, id := range append(slices.Clone(ids), aloneMerchant) {
		n := fairReservations
		if id == backlogMerchant {
			n = fairBacklogReservations
		}
		if accounts[id], err = newFairAccount(ctx, w, id, n); err != nil {
			return nil, err
		}
	}
	if err := w.sb.SetTokenFault(accounts[downMerchant].token, frontpay.ReservationDetails,
		sandbox.Fault{ErrorShare: 1, ErrorStatus: 503}); err != nil {
		return nil, err
	}
	if err := w.sb.SetTokenFault(accounts[limitedMerchant].token, frontpay.ReservationDetails,
		sandbox.Fault{TooManyShare: 1}); err != nil {
		return nil, err
	}
	log.Printf("%s: %d merchants and %s set up in %s", sc, len(ids), aloneMerchant, time.Since(t).Round(time.Millisecond))

	alone, err := fairRun(ctx, w, cfg, topo, kv, "alone", []*fairAccount{accounts[aloneMerchant]}, nil)
	if err != nil {
		return nil, fmt.Errorf("%s alone: %w", aloneMerchant, err)
	}
	var fleet []*fairAccount
	for _, id := range ids {
		fleet = append(fleet, accounts[id])
	}
	backlog, err := detailsCommands(cycle(accounts[backlogMerchant].res, cfg.fairnessBacklog),
		schemas.CommandSubject(topo.SubjectPrefix(backlogMerchant), frontpay.ReservationDetails))
	if err != nil {
		return nil, err
	}
	all, err := fairRun(ctx, w, cfg, topo, kv, "fleet", fleet, backlog)
	if err != nil {
		return nil, err
	}

	// The merchants the targets are about: every other.
	var others []string
	for _, id := range ids {
		if id != backlogMerchant && id != downMerchant && id != limitedMerchant {
			others = append(others, id)
		}
	}
	perMin := func(r *runResult, id string) float64 { return float64(r.calls[id]) / r.window.Minutes() }
	var rates, ratios []float64
	var medians []time.Duration
	failed, missing := alone.failed[aloneMerchant], alone.missing[aloneMerchant]
	for _, id := range others {
		rates = append(rates, perMin(all, id))
		medians = append(medians, all.median[id])
		ratios = append(ratios, float64(all.median[id])/float64(alone.median[aloneMerchant]))
		failed += all.failed[id]
		missing += all.missing[id]
	}
	worstRate, worstRatio := slices.Min(rates), slices.Max(ratios)
	want := 0.95 * fairRate
	mostToken, most := "", 0
	for _, r := range []*runResult{alone, all} {
		for id, n := range r.maxPerMinute {
			if n > most {
				mostToken, most = id, n
			}
		}
	}
	limited := 0
	for _, r := range []*runResult{alone, all} {
		for _, n := range r.limited {
			limited += n
		}
	}
	aloneMedian := alone.median[aloneMerchant]
	rows := []Row{
		info(sc, fmt.Sprintf("merchants per replica (of %d)", len(ids)), float64(len(ids)), "merchants", all.spread),
		atLeast(sc, fmt.Sprintf("API calls a minute, fewest of the %d other merchants", len(others)), worstRate, "calls/min",
			fmt.Sprintf("%.1f/min", worstRate), want, fmt.Sprintf("≥ %.0f/min (95%% of %d)", want, fairRate)),
		info(sc, "API calls a minute alone", perMin(alone, aloneMerchant), "calls/min", fmt.Sprintf("%.1f/min", perMin(alone, aloneMerchant))),
		atMost(sc, fmt.Sprintf("publish → result median, worst of the %d other merchants / alone", len(others)), worstRatio, "×",
			fmt.Sprintf("%.2f× (%s / %s)", worstRatio, seconds(percentile(medians, 100)), seconds(aloneMedian)), 2, "≤ 2×"),
		atMost(sc, fmt.Sprintf("most API calls to one token in any minute (%d replicas)", fairReplicas), float64(most), "calls",
			fmt.Sprintf("%d (%s)", most, mostToken), fairRate, fmt.Sprintf("≤ %d", fairRate)),
		info(sc, backlogMerchant+": API calls a minute; commands answered", perMin(all, backlogMerchant), "calls/min",
			fmt.Sprintf("%.1f/min; %d of %d", perMin(all, backlogMerchant), all.answered[backlogMerchant], len(backlog))),
		info(sc, downMerchant+" (503 throughout): API calls a minute", perMin(all, downMerchant), "calls/min",
			fmt.Sprintf("%.1f/min", perMin(all, downMerchant))),
		info(sc, limitedMerchant+" (429 throughout): API calls a minute", perMin(all, limitedMerchant), "calls/min",
			fmt.Sprintf("%.1f/min", perMin(all, limitedMerchant))),
		atMost(sc, "failed or missing results of the other merchants' window commands (and alone's)", float64(failed+missing), "results",
			fmt.Sprintf("%d failed, %d missing", failed, missing), 0, "0"),
		info(sc, "ownership moves in the steady window (alone / all)", float64(all.moves), "take-overs",
			fmt.Sprintf("%d / %d", alone.moves, all.moves)),
	}
	slices.Sort(rates)
	rows[1].Note = fmt.Sprintf("each merchant's requests in the steady window as the sandbox counts them (%s with all, %s alone: "+
		"opened %s after the steady supply of %d commands a minute started, itself once every merchant had an owner and no ownership "+
		"had moved for %s); the limiter spaces calls at 240 less 1%%, at most 237.6/min; median %.1f/min, most %.1f/min",
		all.window.Round(time.Second), alone.window.Round(time.Second), cfg.fairnessSettle, fairSupply, cfg.fairnessSettle,
		rates[len(rates)/2], rates[len(rates)-1])
	rows[3].Note = fmt.Sprintf("each merchant's median over its commands published in the window, a command without result counting as "+
		"infinitely late; merchants' medians: lowest %s, median %s, highest %s; merchant %q alone: the same workload (%d commands a minute, %d reservations), "+
		"the only merchant of the file, on %d replicas, in the same run",
		seconds(percentile(medians, 0)), seconds(percentile(medians, 50)), seconds(percentile(medians, 100)),
		aloneMerchant, fairSupply, fairReservations, fairReplicas)
	rows[4].Note = fmt.Sprintf("the most requests any merchant's token had in a sliding minute, as the sandbox counts them "+
		"(Traffic.MaxPerMinute: every request, answered or refused), over both runs from the first replica's start to the last one's stop; "+
		"requests the sandbox's own limit refused 429: %d", limited)
	rows[5].Note = "its commands were waiting in the stream when the replicas started; answered by the end of the run"
	return rows, nil
}

// fairAccount is a merchant of the scenario: its token at the sandbox and its reservations.
type fairAccount struct {
	id, token string
	res       []reservation
}

// newFairAccount opens a merchant's account at the sandbox with n reservations, made with a token
// of its own and no rate limit, then rotated to the merchant's token: the merchant's token starts
// with no requests counted.
func newFairAccount(ctx context.Context, w *world, id string, n int) (*fairAccount, error) {
	setup := "setup-" + id
	if err := w.sb.AddToken(setup); err != nil {
		return nil, err
	}
	if err := w.sb.SetTokenRateLimit(setup, -1); err != nil {
		return nil, err
	}
	api, err := frontpay.New(w.sb.URL, setup, frontpay.WithTimeout(30*time.Second))
	if err != nil {
		return nil, err
	}
	a := &fairAccount{id: id, token: "token-" + id}
	if a.res, err = setupReservations(ctx, api, w.sb, n, false); err != nil {
		return nil, err
	}
	return a, w.sb.RotateToken(setup, a.token)
}

// cycle returns n reservations going round rs.
func cycle(rs []reservation, n int) []reservation {
	out := make([]reservation, n)
	for i := range out {
		out[i] = rs[i%len(rs)]
	}
	return out
}

// runResult is what one run of the fairness scenario measured, by merchant.
type runResult struct {
	window       time.Duration
	calls        map[string]int           // requests in the window
	median       map[string]time.Duration // publish → result of the steady commands published in the window
	missing      map[string]int           // of those, without result
	failed       map[string]int           // of those, answered with a failure
	answered     map[string]int           // every command of the run with a result by its end
	maxPerMinute map[string]int           // the most requests in a sliding minute, over the whole run so far
	limited      map[string]int           // requests refused by the sandbox's limit, over the whole run so far
	moves        int                      // take-overs in the window
	spread       string                   // merchants per replica at the end of the window
}

// fairRun runs the replicas on a merchants file of ms: backlog published before they start, one
// command per merchant once they run, and when every merchant has an owner and none moved for
// cfg.fairnessSettle, fairSupply details commands a minute to every merchant of ms but the
// backlog merchant, for cfg.fairnessSettle and the window.
func fairRun(ctx context.Context, w *world, cfg *config, topo consumer.Topology, kv jetstream.KeyValue, name string,
	ms []*fairAccount, backlog []command) (*runResult, error) {
	var fm []fileMerchant
	for _, a := range ms {
		fm = append(fm, fileMerchant{ID: a.id, Token: a.token, Rate: fairRate})
		// The merchants' consumers exist, as a deployment that ran before leaves them: the
		// backlog is waiting on its merchant's consumer.
		if err := topo.EnsureMerchant(ctx, w.js, kv, a.id); err != nil {
			return nil, err
		}
	}
	file, err := writeMerchantsFile(w.dir, name, fm)
	if err != nil {
		return nil, err
	}
	subject := func(a *fairAccount) string {
		return schemas.CommandSubject(topo.SubjectPrefix(a.id), frontpay.ReservationDetails)
	}

	// The commands: the backlog, one first command per merchant, the steady supply.
	var steady []*fairAccount
	var first []command
	for _, a := range ms {
		if a.id == backlogMerchant {
			continue
		}
		steady = append(steady, a)
		c, err := detailsCommands(a.res[:1], subject(a))
		if err != nil {
			return nil, err
		}
		first = append(first, c...)
	}
	perMerchant := int(fairSupply*(cfg.fairnessSettle+cfg.fairnessWindow).Minutes()) + 1
	supply := make([]command, 0, perMerchant*len(steady))
	of := make([]string, 0, cap(supply)) // the merchant of each supply command
	for k := range perMerchant {
		for _, a := range steady {
			c, err := detailsCommands([]reservation{a.res[k%len(a.res)]}, subject(a))
			if err != nil {
				return nil, err
			}
			supply, of = append(supply, c...), append(of, a.id)
		}
	}
	every := slices.Concat(backlog, first, supply)
	c, err := collect(w.nc, every, fairnessPrefix+"*.*.*.succeeded", fairnessPrefix+"*.*.*.failed")
	if err != nil {
		return nil, err
	}
	defer c.stop()
	if err := publishAll(ctx, w.js, backlog, make([]int64, len(backlog))); err != nil {
		return nil, err
	}

	own := newOwners()
	var replicas []*app.Main
	defer func() { stopAll(replicas) }()
	for i := range fairReplicas {
		instance := fmt.Sprintf("replica-%d", i+1)
		rw, err := w.startWorker(ctx, workerOptions{Topology: topo, File: file, Name: instance,
			Concurrency: cfg.concurrency, APIRate: fairRate, TookOver: own.tookOver(instance)})
		if err != nil {
			return nil, err
		}
		replicas = append(replicas, rw)
	}
	if err := publishAll(ctx, w.js, first, make([]int64, len(first))); err != nil {
		return nil, err
	}
	ids := make([]string, len(ms))
	for i, a := range ms {
		ids[i] = a.id
	}
	if err := proc.WaitFor(ctx, 2*time.Minute+cfg.fairnessSettle, "every merchant owned, no ownership moving", func() bool {
		return own.settled(ids, cfg.fairnessSettle)
	}); err != nil {
		return nil, err
	}
	log.Printf("fairness %s: %d merchants owned (%s); the steady supply starts", name, len(ids), own.spread())

	published := make([]int64, len(supply))
	pubDone := make(chan error, 1)
	pubCtx, stopPub := context.WithCancel(ctx)
	defer stopPub()
	go func() {
		pubDone <- publishPaced(pubCtx, w.js, supply, published, float64(len(steady)*fairSupply)/60)
	}()
	traffic := func() map[string]sandbox.Traffic {
		out := map[string]sandbox.Traffic{}
		for _, tr := range w.sb.Traffic() {
			out[tr.Token] = tr
		}
		return out
	}
	if err := sleep(ctx, cfg.fairnessSettle); err != nil {
		return nil, err
	}
	start, before, movesBefore := now(), traffic(), own.count()
	if err := sleep(ctx, cfg.fairnessWindow); err != nil {
		return nil, err
	}
	end, after, movesAfter := now(), traffic(), own.count()
	spread := own.spread()
	if err := <-pubDone; err != nil {
		return nil, fmt.Errorf("steady supply: %w", err)
	}

	// The answers to the steady commands published in the window.
	window := map[string][]int{} // merchant → indexes in supply
	for i, p := range published {
		if p >= start && p < end {
			window[of[i]] = append(window[of[i]], i)
		}
	}
	measured := func(id string) bool { return id != downMerchant && id != limitedMerchant }
	off := len(backlog) + len(first) // supply's offset in every
	// Those still without an answer after the wait count as missing.
	_ = proc.WaitFor(ctx, 2*time.Minute, "", func() bool {
		for id, idx := range window {
			for _, i := range idx {
				if measured(id) && c.result[off+i].Load() == 0 {
					return false
				}
			}
		}
		return true
	})
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res := c.results()
	r := &runResult{window: time.Duration(end - start), calls: map[string]int{}, median: map[string]time.Duration{},
		missing: map[string]int{}, failed: map[string]int{}, answered: map[string]int{}, maxPerMinute: map[string]int{},
		limited: map[string]int{}, moves: movesAfter - movesBefore, spread: spread}
	for id, idx := range window {
		var ds []time.Duration
		for _, i := range idx {
			switch {
			case res[off+i] == 0:
				r.missing[id]++
				ds = append(ds, math.MaxInt64)
			default:
				ds = append(ds, time.Duration(res[off+i]-published[i]))
				if c.isFail[off+i].Load() {
					r.failed[id]++
				}
			}
		}
		r.median[id] = percentile(ds, 50)
	}
	for _, a := range ms {
		r.calls[a.id] = after[a.token].Requests - before[a.token].Requests
	}
	for i, cmd := range every {
		if res[i] != 0 {
			id, _, _ := strings.Cut(strings.TrimPrefix(cmd.Subject, fairnessPrefix), ".")
			r.answered[id]++
		}
	}
	stopAll(replicas)
	replicas = nil
	final := traffic()
	for _, a := range ms {
		r.maxPerMinute[a.id] = final[a.token].MaxPerMinute
		r.limited[a.id] = final[a.token].Limited
	}
	for _, a := range ms {
		latency := "-"
		if n := len(window[a.id]); n > 0 {
			latency = fmt.Sprintf("%s over %d (%d without result)", seconds(r.median[a.id]), n, r.missing[a.id])
		}
		log.Printf("fairness %s: %-10s %6.1f calls/min in the window, at most %d in a minute; publish → result median %s",
			name, a.id, float64(r.calls[a.id])/r.window.Minutes(), r.maxPerMinute[a.id], latency)
	}
	return r, nil
}

// owners follows who owns each merchant's commands, from the replicas' take-overs.
type owners struct {
	mu    sync.Mutex
	by    map[string]string // merchant → the replica that took its commands over last
	moves int
	last  time.Time // of the last take-over
}

func newOwners() *owners { return &owners{by: map[string]string{}} }

// tookOver is a replica's workerOptions.TookOver.
func (o *owners) tookOver(replica string) func(merchant string) {
	return func(merchant string) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.by[merchant], o.last = replica, time.Now()
		o.moves++
	}
}

// settled reports whether every merchant of ids has an owner and no take-over happened for quiet.
func (o *owners) settled(ids []string, quiet time.Duration) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range ids {
		if o.by[id] == "" {
			return false
		}
	}
	return time.Since(o.last) >= quiet
}

// count is the take-overs so far.
func (o *owners) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.moves
}

// spread renders the merchants each replica owns, e.g. "replica-1 17, replica-2 17, replica-3 16".
func (o *owners) spread() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := map[string]int{}
	for _, r := range o.by {
		n[r]++
	}
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%s %d", r, n[r]))
	}
	return strings.Join(parts, ", ")
}

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// seconds renders a duration in seconds, "∞" for a command never answered.
func seconds(d time.Duration) string {
	if d == math.MaxInt64 {
		return "∞"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}
