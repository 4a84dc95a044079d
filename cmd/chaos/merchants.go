package main

// The merchants scenario: one deployment for several merchants (CONTRACT.md section 9) on three
// worker replicas, one of which is SIGKILLed.
//
// Each merchant has a sandbox token of its own (an account), whose rate limit at the sandbox and
// whose rate in the merchants file are both MerchantRate requests a minute. The engine scenario's
// workload (workload.go) is spread over the merchants, reservations round-robin, without API
// faults and without NATS restarts. Who owns which merchant is read as an operator reads it:
// from the owners' reports in the state bucket (owner.frontpay-<merchant>, consumer/lag.go: the
// owner that `frontpay-worker lag` shows), whose instance names the worker process
// (<host>-<pid>-<n>). The scenario
//
//  1. waits until every merchant's consumer exists and every replica's heartbeat is in the state
//     bucket, so that the replicas agree on the spreading before the first command, and
//     publishes the submits (an owner reports only once commands came to it);
//  2. waits until the ownership is stable (every merchant reported by the same replica in two
//     rounds of reports) with each replica owning M/R ± 20% of the merchants: 8–12 of 30 on 3;
//  3. publishes part of the captures and charges, SIGKILLs the replica owning the most
//     merchants, publishes the rest (so that each merchant has commands after the kill) and
//     waits, within FRONTPAY_PIN_TTL plus takeoverMargin of the kill, until the survivors report
//     owning every merchant: each of the dead replica's in a report since the kill, each other
//     one in its last report. (An owner reports only after commands came to it. The spreading
//     may also move a merchant from one survivor to the other; if it has no commands left, its
//     new owner reports it only once the next ones come: its last report then names the
//     survivor it came from.)
//  4. runs the rest of the workload; Verify's checks hold, each merchant's results and effects
//     are its own, and the sandbox counted no token over MerchantRate requests in any minute.
//
// The full form's workload asks each token for about 330 requests, so that every token works at
// its limit for over a minute (the busiest minute shows the worker's limiter: 238 of 240); the
// short form's asks for about 17, far below the limit, so there the budget check cannot fail.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/internal/proc"
)

const (
	// merchantsPrefix is FRONTPAY_SUBJECT_PREFIX of the merchants scenario.
	merchantsPrefix = "chaos."
	// merchantReplicas is the number of worker replicas of the merchants scenario.
	merchantReplicas = 3
	// commandsPerReservation is the merchants scenario's workload: the submit and six more.
	commandsPerReservation = 7
	// takeoverMargin is the time beyond FRONTPAY_PIN_TTL in which the survivors must report
	// owning a dead replica's merchants: its heartbeat is stale after 3s (internal/fleet), an
	// owner reports every 5s (consumer.Config.ReportEvery), and the rest is room for a loaded
	// two-core machine.
	takeoverMargin = 15 * time.Second
	// settleTimeout bounds the wait for the spreading to settle: two rounds of reports.
	settleTimeout = 45 * time.Second
)

// forMerchants is the merchants scenario's configuration: Merchants × MerchantReservations
// reservations, one kill, no faults, no NATS restart.
func (c config) forMerchants() config {
	c.Scenario = scenarioMerchants
	c.Replicas = merchantReplicas
	c.Reservations = c.Merchants * c.MerchantReservations
	c.Commands = c.Reservations * commandsPerReservation
	c.Kills, c.NATSRestarts, c.Faults = 1, 0, false
	return c
}

// merchantIDs are the ids of n merchants.
func merchantIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("shop%02d", i)
	}
	return ids
}

// merchantToken is a merchant's token: the worker's, in the merchants file.
func merchantToken(merchant string) string { return "chaos-" + merchant }

// readerToken is a second token of a merchant's account, for the workload's own reads.
func readerToken(merchant string) string { return "chaos-" + merchant + "-reader" }

// writeMerchantsFile writes each merchant's token file and the merchants file into dir and
// returns the file's path.
func writeMerchantsFile(dir string, merchants []string, rate int) (string, error) {
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("merchants:\n")
	for _, m := range merchants {
		path := filepath.Join(tokens, m)
		if err := os.WriteFile(path, []byte(merchantToken(m)+"\n"), 0o600); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "  - id: %s\n    tokenFile: %s\n    rate: %d\n", m, strconv.Quote(path), rate)
	}
	path := filepath.Join(dir, "merchants.yaml")
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

// merchantFigures is what the merchants scenario saw of the spreading, the kill and the tokens.
type merchantFigures struct {
	Merchants, Replicas, Rate int
	Settled                   map[int]int // replica → merchants it owned once settled (-1: a process of no replica)
	Victim                    int         // the replica SIGKILLed, -1 before the kill
	Lost                      int         // merchants it owned
	KilledAfter, Moves        int         // phase-2 commands published before the kill, of
	Survivors                 map[int]int // replica → merchants it owned once the survivors owned all
	TakeoverIn                time.Duration
	Tokens                    int    // the merchants' tokens the sandbox counted
	Requests, Limited         int    // their requests, and those refused by the sandbox's rate limit
	Busiest                   int    // the most requests of one token in one minute
	BusiestToken              string // whose
}

// merchantsRun runs the merchants scenario's steps beside the driver and keeps their checks.
type merchantsRun struct {
	cl       *cluster
	js       jetstream.JetStream
	topo     consumer.Topology
	kv       jetstream.KeyValue
	progress func(format string, args ...any)

	spread, takeover *Check
	settled          map[string]int // merchant → replica, once the spreading settled
	killedAt         time.Time
	fig              merchantFigures
}

func newMerchantsRun(cl *cluster, js jetstream.JetStream, progress func(string, ...any)) *merchantsRun {
	m, r := len(cl.merchants), cl.cfg.Replicas
	lo, hi := spreadBounds(m, r)
	run := &merchantsRun{
		cl: cl, js: js, topo: consumer.Topology{Prefix: merchantsPrefix, Merchants: true}, progress: progress,
		spread: &Check{Name: fmt.Sprintf("each of the %d replicas owns %d–%d of the %d merchants once settled (owners' reports)", r, lo, hi, m)},
		takeover: &Check{Name: fmt.Sprintf("the survivors own all %d merchants within FRONTPAY_PIN_TTL (%s) + %s of the SIGKILL",
			m, cl.pinTTL(), takeoverMargin)},
		fig: merchantFigures{Merchants: m, Replicas: r, Rate: cl.cfg.MerchantRate, Victim: -1},
	}
	// Each step replaces this with what it found.
	run.spread.addf("not reached: the workload stopped before")
	run.takeover.addf("not reached: the workload stopped before")
	return run
}

// spreadBounds are the fewest and most merchants a replica may own: M/R ± 20%.
func spreadBounds(merchants, replicas int) (lo, hi int) {
	return merchants * 8 / (10 * replicas), (merchants*12 + 10*replicas - 1) / (10 * replicas)
}

// workload runs the driver's phases with the scenario's steps between them.
func (r *merchantsRun) workload(ctx context.Context, d *driver, deadline time.Time) error {
	kv, err := r.js.KeyValue(ctx, r.topo.StateBucket())
	if err != nil {
		return fmt.Errorf("open the state bucket: %w", err)
	}
	r.kv = kv
	if err := r.awaitSpreading(ctx); err != nil {
		return err
	}
	since := time.Now()
	rs, err := d.phaseSubmit(ctx, d.cfg.Reservations, deadline)
	if err != nil {
		return err
	}
	r.checkSpread(ctx, since)

	movable, cmds, owner := d.planMoves(rs, (d.cfg.Commands-len(d.cmds))*45/100)
	cut := killPoint(cmds)
	if err := d.publish(ctx, cmds[:cut]); err != nil {
		return err
	}
	r.kill(cut, len(cmds))
	if err := d.publish(ctx, cmds[cut:]); err != nil {
		return err
	}
	d.progress("phase 2: published %d captures and charges on %d reservations", len(cmds), len(movable))
	r.checkTakeover(ctx)
	if err := d.awaitMoves(ctx, movable, cmds, owner, deadline); err != nil {
		return err
	}
	return d.phaseSettle(ctx, rs, d.cfg.Commands-len(d.cmds), deadline)
}

// awaitSpreading waits until every merchant's consumer exists and the state bucket holds a
// heartbeat of every replica written a heartbeat period after all were ready: by then each
// replica has seen the others and runs the merchants the spreading gives it.
func (r *merchantsRun) awaitSpreading(ctx context.Context) error {
	after := time.Now().Add(time.Second)
	return proc.WaitFor(ctx, 30*time.Second, "every merchant's consumer and every replica's heartbeat", func() bool {
		have, err := r.topo.MerchantsOf(ctx, r.js)
		if err != nil || len(have) < len(r.cl.merchants) {
			return false
		}
		keys, err := r.kv.ListKeysFiltered(ctx, consumer.KeyPrefixMember+">")
		if err != nil {
			return false
		}
		beats := map[int]bool{}
		for k := range keys.Keys() {
			e, err := r.kv.Get(ctx, k)
			if err != nil || !e.Created().After(after) {
				continue
			}
			if replica, live := r.replicaOf(strings.TrimPrefix(k, consumer.KeyPrefixMember)); live {
				beats[replica] = true
			}
		}
		return len(beats) == len(r.cl.live())
	})
}

// replicaOf finds the replica whose worker process an instance name (<host>-<pid>-<n>) names,
// and whether that process lives; -1 for none.
func (r *merchantsRun) replicaOf(instance string) (int, bool) {
	parts := strings.Split(instance, "-")
	if len(parts) < 3 {
		return -1, false
	}
	pid, err := strconv.Atoi(parts[len(parts)-2])
	if err != nil {
		return -1, false
	}
	return r.cl.replicaOf(pid)
}

// ownerReport is the part of an owner's report in the state bucket (consumer/lag.go) that says
// who owns a merchant's consumer, and since when it says so.
type ownerReport struct {
	Instance string    `json:"instance"`
	At       time.Time `json:"at"`
}

// owners returns the replica that reports owning each merchant, from the reports written after
// since(merchant); a merchant without one is left out.
func (r *merchantsRun) owners(ctx context.Context, since func(merchant string) time.Time) (map[string]int, error) {
	out := map[string]int{}
	for _, m := range r.cl.merchants {
		e, err := r.kv.Get(ctx, consumer.KeyPrefixOwner+consumer.ConsumerFor(m))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var rep ownerReport
		if json.Unmarshal(e.Value(), &rep) != nil || !rep.At.After(since(m)) {
			continue
		}
		out[m], _ = r.replicaOf(rep.Instance)
	}
	return out, nil
}

// awaitOwners polls the owners' reports written after since(merchant) until every merchant has
// one and ok holds of them; with stable, also the same owners in two rounds of reports (the
// second written after the first was read). On timeout it returns the last owners seen of every
// merchant (else the last seen at all) and an error.
func (r *merchantsRun) awaitOwners(ctx context.Context, since func(string) time.Time, timeout time.Duration, stable bool, ok func(map[string]int) bool) (map[string]int, error) {
	deadline := time.Now().Add(timeout)
	var prev, last map[string]int
	complete := false
	for {
		at := time.Now()
		own, err := r.owners(ctx, since)
		if err == nil && (!complete || len(own) == len(r.cl.merchants)) {
			last = own
		}
		if err == nil && len(own) == len(r.cl.merchants) {
			complete = true
			switch {
			case !stable && ok(own), stable && prev != nil && maps.Equal(prev, own) && ok(own):
				return own, nil
			case stable:
				prev, since = own, func(string) time.Time { return at }
			}
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("not so within %s", timeout.Round(100*time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ownedBy reports whether every merchant of own is owned by one of replicas, each of which owns
// lo to hi merchants.
func ownedBy(own map[string]int, replicas []int, lo, hi int) bool {
	loads := loadsOf(own)
	for _, replica := range own {
		if !slices.Contains(replicas, replica) {
			return false
		}
	}
	for _, replica := range replicas {
		if loads[replica] < lo || loads[replica] > hi {
			return false
		}
	}
	return true
}

// loadsOf counts the merchants of each replica.
func loadsOf(own map[string]int) map[int]int {
	loads := map[int]int{}
	for _, replica := range own {
		loads[replica]++
	}
	return loads
}

// describeOwners says how many merchants each replica owns, and which merchants have no owner.
func describeOwners(own map[string]int, merchants []string) string {
	var none []string
	for _, m := range merchants {
		if _, ok := own[m]; !ok {
			none = append(none, m)
		}
	}
	if len(none) == 0 {
		return loads(loadsOf(own))
	}
	return fmt.Sprintf("%s; no report of %d merchants (%s)", loads(loadsOf(own)), len(none), strings.Join(none, " "))
}

// liveReplicas are the replicas with a live worker.
func (r *merchantsRun) liveReplicas() []int {
	var out []int
	for _, w := range r.cl.live() {
		out = append(out, w.replica)
	}
	return out
}

// checkSpread waits for the spreading to settle, from the reports written after since, and
// checks each replica's share.
func (r *merchantsRun) checkSpread(ctx context.Context, since time.Time) {
	lo, hi := spreadBounds(r.fig.Merchants, r.fig.Replicas)
	live := r.liveReplicas()
	own, err := r.awaitOwners(ctx, func(string) time.Time { return since }, settleTimeout, true, func(own map[string]int) bool {
		return ownedBy(own, live, lo, hi)
	})
	r.spread.Problems = nil
	if err != nil {
		r.spread.addf("%v: the owners last reported %s", err, describeOwners(own, r.cl.merchants))
	}
	r.settled, r.fig.Settled = own, loadsOf(own)
	r.progress("spreading: %s (owners' reports)", describeOwners(own, r.cl.merchants))
}

// killPoint is where phase 2's publication stops for the kill: at most half way, and before the
// last command of every merchant, so that each merchant has commands for its next owner.
func killPoint(cmds []*planned) int {
	cut := len(cmds) / 2
	last := map[string]int{}
	for i, p := range cmds {
		last[p.Merchant] = i
	}
	for _, i := range last {
		cut = min(cut, i)
	}
	return cut
}

// kill SIGKILLs the replica that owns the most merchants (the first of those), without a restart.
func (r *merchantsRun) kill(published, of int) {
	victim, most := 0, -1
	for replica, n := range r.fig.Settled {
		if replica >= 0 && (n > most || n == most && replica < victim) {
			victim, most = replica, n
		}
	}
	r.fig.Victim, r.fig.Lost, r.fig.KilledAfter, r.fig.Moves = victim, max(most, 0), published, of
	r.killedAt = r.cl.killOnly(victim)
	r.progress("replica %d owned %d merchants; SIGKILLed after %d of %d phase-2 commands were published", victim, r.fig.Lost, published, of)
}

// checkTakeover waits until the survivors report owning every merchant, within FRONTPAY_PIN_TTL
// plus takeoverMargin of the kill.
func (r *merchantsRun) checkTakeover(ctx context.Context) {
	survivors := r.liveReplicas()
	limit := r.killedAt.Add(r.cl.pinTTL() + takeoverMargin)
	since := func(m string) time.Time {
		if owner, ok := r.settled[m]; ok && owner != r.fig.Victim {
			return time.Time{} // a survivor's: its last report
		}
		return r.killedAt
	}
	own, err := r.awaitOwners(ctx, since, time.Until(limit), false, func(own map[string]int) bool {
		return ownedBy(own, survivors, 0, len(own))
	})
	r.takeover.Problems = nil
	if err != nil {
		r.takeover.addf("%v: the owners reported %s", err, describeOwners(own, r.cl.merchants))
	} else {
		r.fig.TakeoverIn = time.Since(r.killedAt)
	}
	r.fig.Survivors = loadsOf(own)
	r.progress("after the kill: %s (owners' reports)", describeOwners(own, r.cl.merchants))
}

// finish checks the tokens' traffic and adds the scenario's checks to v.
func (r *merchantsRun) finish(v *Verification) error {
	traffic, err := r.cl.traffic()
	if err != nil {
		return err
	}
	budget := &Check{Name: fmt.Sprintf("no merchant's token over its budget: at most %d requests in any minute, as the sandbox counted", r.fig.Rate)}
	seen := map[string]bool{}
	for _, t := range traffic {
		seen[t.Token] = true
		if !slices.ContainsFunc(r.cl.merchants, func(m string) bool { return merchantToken(m) == t.Token }) {
			continue // the workload's readers
		}
		r.fig.Tokens++
		r.fig.Requests += t.Requests
		r.fig.Limited += t.Limited
		if t.MaxPerMinute > r.fig.Busiest {
			r.fig.Busiest, r.fig.BusiestToken = t.MaxPerMinute, t.Token
		}
		if t.MaxPerMinute > r.fig.Rate || t.Limited > 0 {
			budget.addf("token %s: %d requests in one minute, %d refused 429 by the sandbox's limit (of %d requests)", t.Token, t.MaxPerMinute, t.Limited, t.Requests)
		}
	}
	for _, m := range r.cl.merchants {
		if !seen[merchantToken(m)] {
			budget.addf("the sandbox has no traffic of %s's token", m)
		}
	}
	v.Checks = append(v.Checks, r.spread, r.takeover, budget)
	return nil
}
