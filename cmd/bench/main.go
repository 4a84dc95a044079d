// Command bench measures the worker on this machine: throughput against a bare JetStream→HTTP
// pipeline, its JetStream operations and API calls per command and its overhead per command,
// the time one command takes on an idle worker, what tracing costs when it exports nothing,
// what a merchants file of one merchant costs a command, throughput under API latency, the rate
// limiter against the API's limit, the peak memory of a worker process on a large backlog, how
// long commands wait when their owner is SIGKILLed, and whether fifty merchants on three replicas
// each get their budget while one has a backlog and two have their API down or throttled.
//
//	go run ./cmd/bench [-json out.json] [-scenarios all|throughput,idle,tracing,onemerchant,latency,ratelimit,memory,failover,fairness] [-n 20000]
//
// Everything runs in one go: file-backed JetStream (embedded, or a nats-server process for memory
// and failover) in a temporary directory and the sandbox over loopback HTTP, sharing the machine
// with the worker. It
// prints one table (scenario, figure, target, met?) and writes the same as JSON with the machine's
// facts and the command line. Run it on a quiet machine: its figures are the machine's too.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// config is the command line.
type config struct {
	jsonPath     string
	scenarios    []string
	cpuprofile   string
	concurrency  int
	apiTimeout   time.Duration
	phaseTimeout time.Duration

	n              int
	halfDuration   time.Duration
	throughputRuns int

	idleN int

	tracingN    int
	tracingRuns int

	latencyN int
	latency  time.Duration

	ratelimitN          int
	ratelimitDuration   time.Duration
	ratelimitAPITimeout time.Duration
	apiRate             int

	memoryN        int
	memoryDuration time.Duration

	oneMerchantRuns int

	fairnessMerchants int
	fairnessBacklog   int
	fairnessWindow    time.Duration
	fairnessSettle    time.Duration
}

var allScenarios = []string{"throughput", "idle", "tracing", "onemerchant", "latency", "ratelimit", "memory", "failover", "fairness"}

func parseFlags(args []string) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	scenarios := fs.String("scenarios", "all", "scenarios to run: all, or a comma-separated list of "+strings.Join(allScenarios, ","))
	fs.StringVar(&cfg.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write a CPU profile of the throughput scenario's full-load worker run (first publish to last result; the process holds NATS and the sandbox too) to this file")
	fs.IntVar(&cfg.concurrency, "concurrency", 64, "the worker's Concurrency (and the bare pipeline's goroutines)")
	fs.DurationVar(&cfg.apiTimeout, "api-timeout", 5*time.Second, "the worker's APITimeout (throughput, latency)")
	fs.DurationVar(&cfg.phaseTimeout, "phase-timeout", 10*time.Minute, "longest wait for the results of one batch of commands")
	fs.IntVar(&cfg.n, "n", 20000, "throughput: captures of the full-load runs (worker and bare pipeline)")
	fs.IntVar(&cfg.throughputRuns, "throughput-runs", 3, "throughput: full-load runs of the worker, and as many of the bare pipeline, alternating")
	fs.DurationVar(&cfg.halfDuration, "half-duration", 10*time.Second, "throughput: how long the half-load publisher runs")
	fs.IntVar(&cfg.idleN, "idle-n", 100, "idle: captures (and charges, completes, cancels) published one at a time")
	fs.IntVar(&cfg.tracingN, "tracing-n", 5000, "tracing: details commands of each run")
	fs.IntVar(&cfg.tracingRuns, "tracing-runs", 7, "tracing: runs with the no-op tracer, and as many without a tracer, alternating")
	fs.IntVar(&cfg.latencyN, "latency-n", 3000, "latency: captures")
	fs.DurationVar(&cfg.latency, "latency", 50*time.Millisecond, "latency: the sandbox's latency on capture")
	fs.IntVar(&cfg.ratelimitN, "ratelimit-n", 600, "ratelimit: details commands in the backlog (raised to 125% of what the run's duration allows)")
	fs.DurationVar(&cfg.ratelimitDuration, "ratelimit-duration", 120*time.Second, "ratelimit: how long the worker runs")
	fs.DurationVar(&cfg.ratelimitAPITimeout, "ratelimit-api-timeout", 30*time.Second, "ratelimit: the worker's APITimeout (production's default; the limiter's wait counts against it)")
	fs.IntVar(&cfg.apiRate, "api-rate", 240, "ratelimit: the worker's FRONTPAY_API_RATE (the sandbox's limit stays 240)")
	fs.IntVar(&cfg.memoryN, "memory-commands", 100000, "memory: details commands waiting when the worker starts")
	fs.DurationVar(&cfg.memoryDuration, "memory-duration", 20*time.Second, "memory: how long the worker works on the backlog at most")
	fs.IntVar(&cfg.oneMerchantRuns, "onemerchant-runs", 5, "onemerchant: runs of -n captures with a merchants file of one merchant, and as many without a file, alternating")
	fs.IntVar(&cfg.fairnessMerchants, "fairness-merchants", 50, "fairness: merchants (one with a backlog, one answered 503, one answered 429, the others steady), at least 4")
	fs.IntVar(&cfg.fairnessBacklog, "fairness-backlog", 10000, "fairness: details commands waiting for the backlog merchant when the replicas start")
	fs.DurationVar(&cfg.fairnessWindow, "fairness-window", 2*time.Minute, "fairness: the steady window of each run (alone, then all merchants), in which calls a minute and latencies are measured")
	fs.DurationVar(&cfg.fairnessSettle, "fairness-settle", 10*time.Second, "fairness: how long ownership must not move before the steady supply starts, and how long the supply runs before the window opens")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var err error
	if cfg.scenarios, err = parseScenarios(*scenarios); err != nil {
		return nil, err
	}
	switch {
	case cfg.n < 1 || cfg.throughputRuns < 1 || cfg.idleN < 1 || cfg.tracingN < 1 || cfg.tracingRuns < 1 || cfg.latencyN < 1 || cfg.memoryN < 1 || cfg.ratelimitN < 1 ||
		cfg.oneMerchantRuns < 1 || cfg.fairnessBacklog < 1:
		return nil, errors.New("-n, -throughput-runs, -idle-n, -tracing-n, -tracing-runs, -latency-n, -ratelimit-n, -memory-commands, -onemerchant-runs and -fairness-backlog must be at least 1")
	case cfg.fairnessMerchants < 4:
		return nil, errors.New("-fairness-merchants must be at least 4")
	case cfg.concurrency < 1:
		return nil, errors.New("-concurrency must be at least 1")
	case cfg.latency <= 0 || cfg.ratelimitDuration <= 0 || cfg.memoryDuration <= 0 || cfg.halfDuration <= 0 || cfg.fairnessWindow <= 0 || cfg.fairnessSettle <= 0:
		return nil, errors.New("durations must be positive")
	case cfg.apiRate < 1:
		return nil, errors.New("-api-rate must be at least 1")
	}
	return cfg, nil
}

// parseScenarios reads -scenarios: "all" or names from allScenarios, kept in allScenarios' order.
func parseScenarios(s string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		return allScenarios, nil
	}
	want := map[string]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		known := false
		for _, a := range allScenarios {
			known = known || a == name
		}
		if !known {
			return nil, fmt.Errorf("unknown scenario %q (want all or %s)", name, strings.Join(allScenarios, ","))
		}
		want[name] = true
	}
	var out []string
	for _, a := range allScenarios {
		if want[a] {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no scenario")
	}
	return out, nil
}

// Report is the JSON written with -json.
type Report struct {
	Command   string            `json:"command"`
	Args      []string          `json:"args"`
	Started   time.Time         `json:"started"`
	Duration  string            `json:"duration"`
	Machine   Machine           `json:"machine"`
	Settings  map[string]string `json:"settings"`
	Rows      []Row             `json:"rows"`
	Errors    map[string]string `json:"errors,omitempty"`
	Durations map[string]string `json:"scenarioDurations"`
	Targets   int               `json:"targets"`
	Met       int               `json:"met"`
}

// Machine is what the figures depend on.
type Machine struct {
	NumCPU      int    `json:"nproc"`
	GOMAXPROCS  int    `json:"gomaxprocs"`
	GoVersion   string `json:"goVersion"`
	GOOS        string `json:"goos"`
	GOARCH      string `json:"goarch"`
	CPUModel    string `json:"cpuModel"`
	Kernel      string `json:"kernel,omitempty"`
	MemTotal    string `json:"memTotal,omitempty"`
	LoadAtStart string `json:"loadavgAtStart,omitempty"`
	LoadAtEnd   string `json:"loadavgAtEnd,omitempty"`
}

func machine() Machine {
	m := Machine{NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(),
		GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, LoadAtStart: loadavg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = cpuModel(string(b))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if kb := statusField(b, "MemTotal"); kb > 0 {
			m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return m
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel(cpuinfo string) string {
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// commandLine is the command as the lead would type it.
func commandLine(args []string) string {
	parts := []string{"go", "run", "./cmd/bench"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$\\*?;&|<>()`") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench ")
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, cfg, os.Args[1:]))
}

func run(ctx context.Context, cfg *config, args []string) int {
	rep := Report{
		Command: commandLine(args), Args: args, Started: time.Now().UTC().Truncate(time.Second), Machine: machine(),
		Errors: map[string]string{}, Durations: map[string]string{},
		Settings: map[string]string{
			"scenarios":             strings.Join(cfg.scenarios, ","),
			"concurrency":           fmt.Sprint(cfg.concurrency),
			"apiTimeout":            cfg.apiTimeout.String(),
			"n":                     fmt.Sprint(cfg.n),
			"throughputRuns":        fmt.Sprint(cfg.throughputRuns),
			"halfDuration":          cfg.halfDuration.String(),
			"idleN":                 fmt.Sprint(cfg.idleN),
			"tracingN":              fmt.Sprint(cfg.tracingN),
			"tracingRuns":           fmt.Sprint(cfg.tracingRuns),
			"latencyN":              fmt.Sprint(cfg.latencyN),
			"latency":               cfg.latency.String(),
			"ratelimitN":            fmt.Sprint(cfg.ratelimitN),
			"ratelimitDuration":     cfg.ratelimitDuration.String(),
			"ratelimitAPITimeout":   cfg.ratelimitAPITimeout.String(),
			"apiRate":               fmt.Sprint(cfg.apiRate),
			"memoryCommands":        fmt.Sprint(cfg.memoryN),
			"memoryDuration":        cfg.memoryDuration.String(),
			"oneMerchantRuns":       fmt.Sprint(cfg.oneMerchantRuns),
			"fairnessMerchants":     fmt.Sprint(cfg.fairnessMerchants),
			"fairnessBacklog":       fmt.Sprint(cfg.fairnessBacklog),
			"fairnessWindow":        cfg.fairnessWindow.String(),
			"fairnessSettle":        cfg.fairnessSettle.String(),
			"worker":                "app.Main in this process as cmd/frontpay-worker runs it (a NATS connection of its own, internal/fleet's lane of the one merchant, rate limiter, metrics, publisher, HTTP server, JSON log at info to io.Discard); production defaults otherwise, but DrainTimeout 2s and the history poll off",
			"replicas":              "onemerchant, fairness: app.Main in this process as cmd/frontpay-worker runs it, each replica on a NATS connection of its own; history poll off; onemerchant: DrainTimeout 2s, fairness: production defaults (concurrency per merchant -concurrency)",
			"nats":                  "file storage in a temporary directory; embedded server in this process (memory, failover: a nats-server process and worker processes)",
			"sandbox":               "in this process over loopback HTTP (httptest); API time = the sandbox handler's duration",
			"overheadDefinition":    "(result arrival − publish) − API time of the command's reservation (its requests; a capture with the read-back marker makes one)",
			"resultArrivalObserved": "core NATS subscription to the result subjects on the benchmark's connection",
		},
	}
	log.Printf("machine: %d CPUs (%s), %s, load %s", rep.Machine.NumCPU, rep.Machine.CPUModel, rep.Machine.GoVersion, rep.Machine.LoadAtStart)
	start := time.Now()
	scenarios := map[string]func(context.Context, *config) ([]Row, error){
		"throughput": throughput, "idle": idle, "tracing": tracingCost, "onemerchant": oneMerchant, "latency": latency,
		"ratelimit": ratelimit, "memory": memory, "failover": failover, "fairness": fairness,
	}
	for _, name := range cfg.scenarios {
		if ctx.Err() != nil {
			break
		}
		t := time.Now()
		log.Printf("%s: start", name)
		rows, err := scenarios[name](ctx, cfg)
		rep.Durations[name] = time.Since(t).Round(time.Millisecond).String()
		if err != nil {
			log.Printf("%s: FAILED: %v", name, err)
			rep.Errors[name] = err.Error()
			f := false
			rows = append(rows, Row{Scenario: name, Figure: "scenario ran", Shown: "error", Target: "completes", Met: &f, Note: err.Error()})
		}
		log.Printf("%s: done in %s", name, rep.Durations[name])
		rep.Rows = append(rep.Rows, rows...)
	}
	rep.Duration = time.Since(start).Round(time.Millisecond).String()
	rep.Machine.LoadAtEnd = loadavg()
	rep.Targets, rep.Met = summary(rep.Rows)

	fmt.Println()
	fmt.Printf("%s\n%d CPUs, %s, %s; load average %s at start, %s at end; %s\n\n", rep.Command, rep.Machine.NumCPU,
		rep.Machine.CPUModel, rep.Machine.GoVersion, rep.Machine.LoadAtStart, rep.Machine.LoadAtEnd, rep.Duration)
	if err := writeTable(os.Stdout, rep.Rows); err != nil {
		log.Print(err)
	}
	fmt.Printf("\n%d of %d targets met\n", rep.Met, rep.Targets)
	if cfg.jsonPath != "" {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // "< 100 MiB", not "\u003c 100 MiB"
		enc.SetIndent("", "  ")
		err := enc.Encode(rep)
		if err == nil {
			err = os.WriteFile(cfg.jsonPath, b.Bytes(), 0o644)
		}
		if err != nil {
			log.Printf("write %s: %v", cfg.jsonPath, err)
			return 1
		}
	}
	if len(rep.Errors) > 0 || ctx.Err() != nil {
		return 1
	}
	return 0
}
