// Command chaos runs frontpay-worker as real processes under faults and checks that no command
// is lost and no money effect is doubled. It has two scenarios, run one after the other unless
// -scenario names one:
//
//	engine      one merchant, two replicas: worker kills, a NATS restart, API faults
//	merchants   30 merchants on three replicas, one replica SIGKILLed (merchants.go)
//
//	go run ./cmd/chaos            the full form: engine 2000 commands on 300 reservations, 10 worker
//	                              kills; merchants 40 reservations (280 commands) a merchant
//	go run ./cmd/chaos -short     the short form CI runs: engine 300 commands, 60 reservations, 2
//	                              kills; merchants 2 reservations (14 commands) a merchant
//
// Each scenario builds nats-server and frontpay-worker into a temporary directory and starts a
// nats-server with JetStream, a sandbox process and the worker replicas. It publishes the
// workload in three phases (submits, whose reservations the customer then pays; captures and
// charges; resends, refunds, cancels and completes), with a share of the commands published
// twice. In the engine scenario it SIGKILLs a worker replica every few seconds and restarts it,
// restarts the nats-server once, and has the sandbox answer the money operations with 5xx, 429
// and dropped connections, some of them after the effect; the merchants scenario is described in
// merchants.go. Once every command has its result it stops the workers, reads the result stream
// and the sandbox's ledger and checks them against each other (verify.go).
//
// It prints the figures and the checks of each scenario, then the closing line "chaos: N passed,
// M failed", and exits 1 when a check fails (2 when a run itself could not be made). The
// temporary directory, with every process's log, the ledger, the results and the commands, is
// kept when a check fails or with -keep.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/proc"
)

// The scenarios.
const (
	scenarioEngine    = "engine"
	scenarioMerchants = "merchants"
)

// config is the scenario.
type config struct {
	Scenario     string        // scenarioEngine or scenarioMerchants
	Commands     int           // idempotency keys published
	Reservations int           // submits of phase 1
	Replicas     int           // worker replicas
	Kills        int           // SIGKILLs of a worker replica
	KillEvery    time.Duration // between kills
	NATSRestarts int           // 0 or 1: restart the nats-server midway through the kills
	NATSSignal   string        // "term" or "kill"
	NATSDown     time.Duration // how long the nats-server stays down before it starts again
	Faults       bool          // sandbox faults on the money operations
	FaultScale   float64       // multiplies the fault plan's shares
	DupShare     float64       // share of commands published a second time
	Seed         int64
	Timeout      time.Duration // the whole run, builds included
	Dir          string        // work directory; "" for a temporary one
	Keep         bool          // keep the work directory even when every check passes
	LogLevel     string        // of the workers and the sandbox
	WorkerEnv    []string      // KEY=VALUE added to the workers' environment, overriding the scenario's

	// The merchants scenario (merchants.go) sets Commands, Reservations, Replicas and the chaos
	// from these.
	Merchants            int // merchants in the file, each with a sandbox token of its own
	MerchantReservations int // reservations a merchant
	MerchantRate         int // requests a minute per token: the sandbox's limit and the file's rate
}

func fullConfig() config {
	return config{
		Commands: 2000, Reservations: 300, Replicas: 2, Kills: 10, KillEvery: 3 * time.Second,
		NATSRestarts: 1, NATSSignal: "kill", NATSDown: 2 * time.Second, Faults: true, FaultScale: 1, DupShare: 0.03, Seed: time.Now().UnixNano(), Timeout: 10 * time.Minute,
		LogLevel: "info", Scenario: scenarioEngine, Merchants: 30, MerchantReservations: 40, MerchantRate: 240,
	}
}

// shortConfig is the form CI runs: well under two minutes on two cores.
func shortConfig() config {
	c := fullConfig()
	c.Commands, c.Reservations, c.Kills, c.KillEvery, c.Timeout = 300, 60, 2, 2*time.Second, 100*time.Second
	c.MerchantReservations = 2
	return c
}

// scenarios returns the configurations of the scenarios named: engine, merchants or all. With
// both, each gets a subdirectory of Dir.
func (c config) scenarios(which string) ([]config, error) {
	var out []config
	switch which {
	case scenarioEngine:
		out = []config{c}
	case scenarioMerchants:
		out = []config{c.forMerchants()}
	case "all":
		out = []config{c, c.forMerchants()}
	default:
		return nil, fmt.Errorf("-scenario: engine, merchants or all, not %q", which)
	}
	for i := range out {
		if len(out) > 1 && out[i].Dir != "" {
			out[i].Dir = filepath.Join(out[i].Dir, out[i].Scenario)
		}
	}
	return out, nil
}

func main() {
	cfgs, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	passed, failed, runFailed := 0, 0, false
	for i, cfg := range cfgs {
		if i > 0 {
			fmt.Println()
		}
		sum, err := run(ctx, cfg, os.Stdout)
		if err != nil {
			fmt.Fprintf(os.Stderr, "chaos: scenario %s: %v\n", cfg.Scenario, err)
			os.Exit(2)
		}
		p, f := sum.Verification.counts()
		passed, failed = passed+p, failed+f
		runFailed = runFailed || sum.failed()
	}
	// The plain closing line that CI reads in any language.
	fmt.Printf("\nchaos: %d passed, %d failed\n", passed, failed)
	if runFailed {
		os.Exit(1)
	}
}

func parseFlags(args []string) ([]config, error) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	full := fullConfig()
	short := fs.Bool("short", false, "the short form for CI: engine 300 commands, 60 reservations, 2 kills every 2s; merchants 2 reservations a merchant; 100s deadline each (other flags still apply)")
	scenario := fs.String("scenario", "all", "the scenario to run: engine (one merchant, two replicas: kills, a NATS restart, API faults), merchants (several merchants on three replicas, one SIGKILLed), or all")
	commands := fs.Int("commands", full.Commands, "engine scenario: commands (idempotency keys) to publish")
	reservations := fs.Int("reservations", full.Reservations, "engine scenario: reservations submitted in phase 1 (part of -commands)")
	replicas := fs.Int("replicas", full.Replicas, "engine scenario: worker replicas")
	kills := fs.Int("kills", full.Kills, "engine scenario: SIGKILLs of a worker replica, each followed by a restart")
	killEvery := fs.Duration("kill-every", full.KillEvery, "engine scenario: time between kills")
	natsRestarts := fs.Int("nats-restarts", full.NATSRestarts, "engine scenario: restarts of the nats-server (0 or 1), midway through the kills")
	natsSignal := fs.String("nats-signal", full.NATSSignal, "engine scenario: how the nats-server is stopped for its restart: term or kill")
	natsDown := fs.Duration("nats-down", full.NATSDown, "engine scenario: how long the nats-server stays down before its restart")
	faults := fs.Bool("faults", full.Faults, "engine scenario: inject sandbox faults (5xx, 429, dropped connections) on the money operations")
	faultScale := fs.Float64("fault-scale", full.FaultScale, "engine scenario: multiply the shares of the fault plan (their sum per operation stays at most 1)")
	dupShare := fs.Float64("dup-share", full.DupShare, "share of commands published a second time")
	seed := fs.Int64("seed", full.Seed, "seed of the workload and the sandbox's fault draws")
	timeout := fs.Duration("timeout", full.Timeout, "deadline of the whole run")
	dir := fs.String("dir", "", "work directory (default a new temporary one)")
	keep := fs.Bool("keep", false, "keep the work directory (logs, ledger, results) even when every check passes")
	logLevel := fs.String("log-level", full.LogLevel, "log level of the workers and the sandbox: debug logs every API call")
	var workerEnv envList
	fs.Var(&workerEnv, "worker-env", "KEY=VALUE for the workers' environment, overriding the scenario's (repeatable), e.g. FRONTPAY_API_RATE=240")
	merchants := fs.Int("merchants", full.Merchants, "merchants scenario: merchants in the file, each with a sandbox token of its own")
	merchantRes := fs.Int("merchant-reservations", full.MerchantReservations, fmt.Sprintf("merchants scenario: reservations a merchant, %d commands each", commandsPerReservation))
	merchantRate := fs.Int("merchant-rate", full.MerchantRate, "merchants scenario: requests a minute per token, the sandbox's limit and the merchants file's rate")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	cfg := config{
		Scenario: scenarioEngine, Commands: *commands, Reservations: *reservations, Replicas: *replicas, Kills: *kills, KillEvery: *killEvery,
		NATSRestarts: *natsRestarts, NATSSignal: *natsSignal, NATSDown: *natsDown, Faults: *faults, FaultScale: *faultScale, DupShare: *dupShare, Seed: *seed,
		Timeout: *timeout, Dir: *dir, Keep: *keep, LogLevel: *logLevel, WorkerEnv: workerEnv,
		Merchants: *merchants, MerchantReservations: *merchantRes, MerchantRate: *merchantRate,
	}
	if *short {
		s := shortConfig()
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, apply := range map[string]func(){
			"commands": func() { cfg.Commands = s.Commands }, "reservations": func() { cfg.Reservations = s.Reservations },
			"kills": func() { cfg.Kills = s.Kills }, "kill-every": func() { cfg.KillEvery = s.KillEvery },
			"timeout": func() { cfg.Timeout = s.Timeout }, "merchant-reservations": func() { cfg.MerchantReservations = s.MerchantReservations },
		} {
			if !set[name] {
				apply()
			}
		}
	}
	switch {
	case cfg.Commands < 1 || cfg.Reservations < 1:
		return nil, errors.New("-commands and -reservations must be at least 1")
	case cfg.Replicas < 1:
		return nil, errors.New("-replicas must be at least 1")
	case cfg.NATSSignal != "term" && cfg.NATSSignal != "kill":
		return nil, fmt.Errorf("-nats-signal: term or kill, not %q", cfg.NATSSignal)
	case cfg.NATSRestarts < 0 || cfg.NATSRestarts > 1:
		return nil, errors.New("-nats-restarts: 0 or 1")
	case cfg.FaultScale < 0:
		return nil, errors.New("-fault-scale must not be negative")
	case cfg.DupShare < 0 || cfg.DupShare > 1:
		return nil, errors.New("-dup-share: between 0 and 1")
	case cfg.Merchants < merchantReplicas || cfg.MerchantReservations < 1 || cfg.MerchantRate < 1:
		return nil, fmt.Errorf("-merchants must be at least %d, -merchant-reservations and -merchant-rate at least 1", merchantReplicas)
	}
	cfg.Reservations = min(cfg.Reservations, cfg.Commands)
	return cfg.scenarios(*scenario)
}

// envList is a repeatable KEY=VALUE flag.
type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }

func (e *envList) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	*e = append(*e, v)
	return nil
}

// faultPlan is what the sandbox does wrong, per operation. Submit gets only what a submit
// survives (429, and a few drops whose outcome_unknown is the contract's answer); the money
// movements get 5xx, 429, drops before and after the effect, and hangs past the API timeout.
func faultPlan(scale float64) map[frontpay.Operation]sandbox.Fault {
	plan := map[frontpay.Operation]sandbox.Fault{
		frontpay.ReservationSubmit:   {TooManyShare: 0.03, DropShare: 0.02},
		frontpay.ReservationCapture:  {Latency: 5 * time.Millisecond, ErrorShare: 0.08, TooManyShare: 0.03, DropShare: 0.06, DropBeforeShare: 0.02},
		frontpay.ReservationCharge:   {ErrorShare: 0.08, ErrorStatus: 500, TooManyShare: 0.03, DropShare: 0.06, DropBeforeShare: 0.02},
		frontpay.ReservationRefund:   {ErrorShare: 0.06, ErrorStatus: 502, TooManyShare: 0.03, DropShare: 0.06, HangAfterEffect: 4 * time.Second},
		frontpay.ReservationCancel:   {ErrorShare: 0.1, DropShare: 0.1, HangAfterEffect: time.Second},
		frontpay.ReservationComplete: {ErrorShare: 0.08, TooManyShare: 0.03, DropShare: 0.06, DropBeforeShare: 0.02},
	}
	for op, f := range plan {
		total := (f.ErrorShare + f.TooManyShare + f.DropShare + f.DropBeforeShare) * scale
		k := scale
		if total > 1 {
			k = scale / total
		}
		f.ErrorShare, f.TooManyShare, f.DropShare, f.DropBeforeShare = f.ErrorShare*k, f.TooManyShare*k, f.DropShare*k, f.DropBeforeShare*k
		plan[op] = f
	}
	return plan
}

// summary is what a run found.
type summary struct {
	Config       config
	Verification *Verification
	Dir          string
	Duration     time.Duration
	Build        time.Duration
	Commands     int
	Duplicates   int
	Kills        int
	Incarnations int
	NATSRestarts int
	NATSDown     time.Duration
	Metrics      map[string]float64 // summed over every worker incarnation's last scrape
	Logs         map[string]int     // messages counted over every worker log
	Dropped      map[string]int     // ledger effects whose answer the sandbox dropped, by operation
	Problems     []string           // of the run itself: deadlines, chaos steps that failed
	Faults       map[frontpay.Operation]sandbox.Fault
	Latency      []latency  // publish to result, per operation
	Slowest      []*planned // the commands that waited longest for their result
	Merchants    *merchantFigures
}

// failed reports whether a check failed or a step of the run went wrong.
func (s *summary) failed() bool { return s.Verification.Failed() || len(s.Problems) > 0 }

// run runs the scenario, prints what it found to out and returns it; the error is for a run
// that could not be made at all.
func run(ctx context.Context, cfg config, out io.Writer) (*summary, error) {
	start := time.Now()
	deadline := start.Add(cfg.Timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(time.Minute)) // room to stop and verify
	defer cancel()
	var outMu sync.Mutex // the chaos goroutine reports too
	progress := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	sum := &summary{Config: cfg, Metrics: map[string]float64{}, Logs: map[string]int{}, Dropped: map[string]int{}}

	var err error
	dir := cfg.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "frontpay-chaos-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	sum.Dir = dir
	keep := cfg.Keep || cfg.Dir != "" // a directory of the caller's is never removed
	defer func() {
		if !keep {
			_ = os.RemoveAll(dir)
		}
	}()
	if cfg.Scenario == scenarioMerchants {
		progress("scenario merchants: seed %d, %d merchants on %d replicas (%d requests a minute per token), %d commands on %d reservations, one replica SIGKILLed; work dir %s",
			cfg.Seed, cfg.Merchants, cfg.Replicas, cfg.MerchantRate, cfg.Commands, cfg.Reservations, dir)
	} else {
		progress("scenario engine: seed %d, %d commands on %d reservations, %d replicas, %d kills every %s, %d NATS restart(s) (SIG%s, down %s), faults %t; work dir %s",
			cfg.Seed, cfg.Commands, cfg.Reservations, cfg.Replicas, cfg.Kills, cfg.KillEvery, cfg.NATSRestarts,
			strings.ToUpper(cfg.NATSSignal), cfg.NATSDown, cfg.Faults, dir)
	}
	if len(cfg.WorkerEnv) > 0 {
		progress("worker environment overrides: %s", strings.Join(cfg.WorkerEnv, " "))
	}

	natsBin, workerBin, err := proc.Build(ctx, dir)
	if err != nil {
		keep = true
		return nil, err
	}
	sum.Build = time.Since(start)
	progress("built nats-server and frontpay-worker in %s", sum.Build.Round(100*time.Millisecond))

	port, err := proc.FreePort()
	if err != nil {
		return nil, err
	}
	cl := &cluster{cfg: cfg, dir: dir, natsBin: natsBin, workerBin: workerBin, natsPort: port,
		natsURL: fmt.Sprintf("nats://127.0.0.1:%d", port), progress: progress, extraEnv: cfg.WorkerEnv}
	defer cl.close()
	fail := func(err error) (*summary, error) { keep = true; return nil, err }
	if cfg.Scenario == scenarioMerchants {
		cl.merchants = merchantIDs(cfg.Merchants)
		if cl.merchantsFile, err = writeMerchantsFile(dir, cl.merchants, cfg.MerchantRate); err != nil {
			return fail(err)
		}
	}
	if err := cl.startNATS(); err != nil {
		return fail(err)
	}
	if err := cl.startSandbox(); err != nil {
		return fail(err)
	}
	for i := range cfg.Replicas {
		if _, err := cl.startWorker(i); err != nil {
			return fail(err)
		}
	}
	cl.scrapeLoop()
	progress("nats-server %s, sandbox %s, %d workers ready", cl.natsURL, cl.sandboxURL, cfg.Replicas)

	nc, err := nats.Connect(cl.natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond), nats.Name("chaos"))
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(err)
	}
	// The workload reads reservations back with a token of each merchant's own: one of the
	// merchant's account (in the merchants scenario a second token, whose requests the sandbox
	// counts apart from the worker's).
	apis := map[string]*frontpay.Client{}
	ids := cl.merchants
	if len(ids) == 0 {
		ids = []string{""}
	}
	for _, m := range ids {
		token := sandboxToken
		if m != "" {
			token = readerToken(m)
		}
		if apis[m], err = frontpay.New(cl.sandboxURL, token, frontpay.WithTimeout(5*time.Second)); err != nil {
			return fail(err)
		}
	}
	if cfg.Faults {
		for op, f := range faultPlan(cfg.FaultScale) {
			if err := cl.setFault(op, f); err != nil {
				return fail(err)
			}
		}
		sum.Faults = cl.faults
	}

	d := newDriver(cfg, cl, js, apis, progress)
	var ms *merchantsRun
	var workErr error
	if cfg.Scenario == scenarioMerchants {
		ms = newMerchantsRun(cl, js, progress)
		workErr = ms.workload(ctx, d, deadline)
	} else {
		// The chaos runs from the first publish until every command is answered.
		chaosCtx, stopChaos := context.WithCancel(ctx)
		chaosDone := make(chan []string)
		go func() { chaosDone <- chaos(chaosCtx, cfg, cl) }()
		workErr = d.workload(ctx, deadline)
		stopChaos()
		sum.Problems = append(sum.Problems, <-chaosDone...)
	}
	if workErr != nil {
		sum.Problems = append(sum.Problems, workErr.Error())
		progress("workload: %v", workErr)
	}

	// Stop the workers before reading the ledger: a late call would show there.
	cl.stopWorkers()
	progress("workers stopped; reading the result stream and the ledger")
	d.mu.Lock()
	d.next, d.results, d.stream = 1, nil, nil
	d.mu.Unlock()
	if err := d.poll(ctx); err != nil {
		return fail(fmt.Errorf("read the result stream: %w", err))
	}
	ledger, rawLedger, err := cl.ledger()
	if err != nil {
		return fail(err)
	}
	cmds := make([]Command, len(d.cmds))
	for i, p := range d.cmds {
		cmds[i] = p.Command
	}
	writeArtefacts(dir, cmds, d.results, rawLedger)

	sum.Verification = Verify(cmds, d.results, ledger)
	if ms != nil {
		if err := ms.finish(sum.Verification); err != nil {
			return fail(err)
		}
		sum.Merchants = &ms.fig
	}
	sum.Commands, sum.Duplicates = len(cmds), d.dupes
	sum.Kills, sum.NATSRestarts, sum.NATSDown, sum.Incarnations = cl.kills, cl.natsRestarts, cl.natsDown, cl.incarnations
	for _, e := range ledger {
		if e.Dropped {
			sum.Dropped[e.Op]++
		}
	}
	for _, w := range cl.retired {
		m := w.lastMetrics()
		for name, fam := range metricFigures {
			sum.Metrics[name] += metricSum(m, fam.family, fam.match)
		}
		logCounts(w.proc.Log, sum.Logs)
	}
	sum.Latency, sum.Slowest = latencies(d.cmds)
	sum.Duration = time.Since(start)
	if sum.failed() {
		keep = true
	}
	printSummary(out, sum, keep)
	return sum, nil
}

// workload runs the three phases.
func (d *driver) workload(ctx context.Context, deadline time.Time) error {
	rs, err := d.phaseSubmit(ctx, d.cfg.Reservations, deadline)
	if err != nil {
		return err
	}
	rest := d.cfg.Commands - len(d.cmds)
	if err := d.phaseMove(ctx, rs, rest*45/100, deadline); err != nil {
		return err
	}
	return d.phaseSettle(ctx, rs, d.cfg.Commands-len(d.cmds), deadline)
}

// chaos kills a worker replica every KillEvery, the replicas in turn, and restarts the
// nats-server once midway; it returns the steps that failed.
func chaos(ctx context.Context, cfg config, cl *cluster) []string {
	var problems []string
	sig := syscall.SIGTERM
	if cfg.NATSSignal == "kill" {
		sig = syscall.SIGKILL
	}
	restartAfter := max(cfg.Kills/2, 1)
	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	for i := 1; i <= max(cfg.Kills, cfg.NATSRestarts); i++ {
		if !sleep(cfg.KillEvery) {
			return problems
		}
		if i <= cfg.Kills {
			if err := cl.kill((i - 1) % cfg.Replicas); err != nil {
				problems = append(problems, err.Error())
			}
		}
		if cfg.NATSRestarts > 0 && i == restartAfter {
			if !sleep(cfg.KillEvery / 2) {
				return problems
			}
			if err := cl.restartNATS(sig, cfg.NATSDown); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	return problems
}

// metricFigures are the worker metrics the summary adds up.
var metricFigures = map[string]struct {
	family string
	match  map[string]string
}{
	"retries":              {"frontpay_retries_total", nil},
	"ambiguous":            {"frontpay_ambiguous_outcomes_total", nil},
	"readback applied":     {"frontpay_readbacks_total", map[string]string{"verdict": "applied"}},
	"readback not_applied": {"frontpay_readbacks_total", map[string]string{"verdict": "not_applied"}},
	"readback undecided":   {"frontpay_readbacks_total", map[string]string{"verdict": "undecided"}},
	"idempotency hits":     {"frontpay_idempotency_hits_total", nil},
	"answers 5xx":          {"frontpay_api_request_duration_seconds_count", map[string]string{"status": "5*"}},
	"answers 429":          {"frontpay_api_request_duration_seconds_count", map[string]string{"status": "429"}},
	"no answer":            {"frontpay_api_request_duration_seconds_count", map[string]string{"status": "0"}},
	"api attempts":         {"frontpay_api_request_duration_seconds_count", nil},
	"rate waits":           {"frontpay_rate_limit_waits_total", nil},
	"rate wait seconds":    {"frontpay_rate_limit_wait_seconds_total", nil},
}

// writeArtefacts keeps the evidence in the work directory.
func writeArtefacts(dir string, cmds []Command, results []Result, ledger []byte) {
	_ = os.WriteFile(filepath.Join(dir, "ledger.json"), ledger, 0o644)
	if b, err := json.MarshalIndent(cmds, "", " "); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "commands.json"), b, 0o644)
	}
	var lines []byte
	for _, r := range results {
		b, _ := json.Marshal(r)
		lines = append(append(lines, b...), '\n')
	}
	_ = os.WriteFile(filepath.Join(dir, "results.jsonl"), lines, 0o644)
}

// latency is how long one operation's commands waited from publication to result.
type latency struct {
	op            frontpay.Operation
	n             int
	p50, p99, max time.Duration
}

// latencies sums up the wait of every answered command per operation, and returns the slowest.
func latencies(cmds []*planned) ([]latency, []*planned) {
	per := map[frontpay.Operation][]time.Duration{}
	var answered []*planned
	for _, p := range cmds {
		if p.published.IsZero() || p.answered.IsZero() {
			continue
		}
		per[p.Op] = append(per[p.Op], p.answered.Sub(p.published))
		answered = append(answered, p)
	}
	var out []latency
	for op, ds := range per {
		slices.Sort(ds)
		out = append(out, latency{op: op, n: len(ds), p50: ds[len(ds)/2], p99: ds[len(ds)*99/100], max: ds[len(ds)-1]})
	}
	slices.SortFunc(out, func(a, b latency) int { return strings.Compare(string(a.op), string(b.op)) })
	slices.SortFunc(answered, func(a, b *planned) int {
		return cmp.Compare(b.answered.Sub(b.published), a.answered.Sub(a.published))
	})
	return out, answered[:min(len(answered), 5)]
}
