// Package metrics exposes what the worker does, and how far its consumers are behind, as
// Prometheus metrics under /metrics.
//
// Metrics implements consumer.Observer: the worker tells it of every API call, outcome, retry,
// duplicate, conflict, unknown outcome, read-back, dead letter, settled command and take-over;
// the Front Payment client's hooks (ClientHooks) tell it of rate-limit waits and capped
// Retry-After pauses. The lag is read from JetStream and the owner's report at scrape time
// (consumer.Topology.Lag), so a scrape shows the backlog as it is, also while no worker runs.
//
// Label values are operation names, HTTP statuses, failure reasons, read-back verdicts and
// consumer names, each from a fixed set, and the build's version, commit and Go version: never
// anything from a command's data (a reservation UUID, an e-mail address) and never the API token.
package metrics

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/buildinfo"
	"github.com/nordpay/frontpay-worker/schemas"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric name.
const Namespace = "frontpay"

// LagTimeout bounds the reading of the consumers' lag during one scrape: a scrape that cannot
// read it in time shows frontpay_consumer_lag_up 0 instead of failing.
const LagTimeout = 5 * time.Second

// APIBuckets are the buckets of frontpay_api_request_duration_seconds: from 1ms to the API
// timeout's default of 30s.
var APIBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30}

// LagFunc reads the lag of every consumer, e.g. a closure over consumer.Topology.Lag.
type LagFunc func(ctx context.Context) ([]consumer.ConsumerLag, error)

// Label values outside the fixed sets.
const (
	unknownOperation = "unknown"
	otherValue       = "other"
)

// Metrics is the worker's metrics. It is safe for concurrent use.
type Metrics struct {
	gatherer prometheus.Gatherer

	commands      *prometheus.CounterVec   // operation, outcome, reason
	apiDuration   *prometheus.HistogramVec // operation, status
	retries       *prometheus.CounterVec   // operation
	idemHits      *prometheus.CounterVec   // operation
	idemConflicts *prometheus.CounterVec   // operation
	ambiguous     *prometheus.CounterVec   // operation
	readbacks     *prometheus.CounterVec   // operation, verdict
	deadLetters   prometheus.Counter
	rateWaited    prometheus.Counter
	rateWaits     prometheus.Counter
	capped        prometheus.Counter
	settled       *prometheus.HistogramVec // operation
	takeovers     prometheus.Counter
	unworkable    *prometheus.CounterVec // operation
	callbacks     *prometheus.CounterVec // code
	changes       *prometheus.CounterVec // source, outcome
}

var _ consumer.Observer = (*Metrics)(nil)

// New registers the worker's metrics with reg and returns them. With reg nil, New makes a
// registry of its own, with the Go runtime and process collectors too. lag, where not nil, is
// called at every scrape for the consumer gauges.
//
// Handler serves reg when it is also a prometheus.Gatherer (a *prometheus.Registry is), and
// prometheus.DefaultGatherer otherwise.
func New(reg prometheus.Registerer, lag LagFunc) (*Metrics, error) {
	var gatherer prometheus.Gatherer = prometheus.DefaultGatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		if err := r.Register(collectors.NewGoCollector()); err != nil {
			return nil, err
		}
		if err := r.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return nil, err
		}
		reg, gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		gatherer = g
	}

	perOp := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, []string{"operation"})
	}
	m := &Metrics{
		gatherer: gatherer,
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "commands_total",
			Help: "Commands that ended with a result event, by operation, outcome (succeeded|failed) and failure reason (empty on success).",
		}, []string{"operation", "outcome", "reason"}),
		apiDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "api_request_duration_seconds",
			Help:    "Duration of the HTTP attempts of each operation's own Front Payment call, by HTTP status (0: no answer).",
			Buckets: APIBuckets,
		}, []string{"operation", "status"}),
		retries:       perOp("retries_total", "Commands attempted again after a retryable failure or an unknown outcome."),
		idemHits:      perOp("idempotency_hits_total", "Duplicate or redelivered commands answered from their idempotency record, with no API call."),
		idemConflicts: perOp("idempotency_conflicts_total", "Commands whose idempotency key was used before with other data."),
		ambiguous:     perOp("ambiguous_outcomes_total", "Sent requests whose outcome is unknown (no answer, cut connection, 5xx)."),
		readbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "readbacks_total",
			Help: "Unknown outcomes resolved by reading the reservation back, by verdict (applied|not_applied|undecided).",
		}, []string{"operation", "verdict"}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "dead_letters_total",
			Help: "Messages on command subjects that were not JSON objects, moved to the dead-letter stream.",
		}),
		rateWaited: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "rate_limit_wait_seconds_total",
			Help: "Seconds API calls waited for the client-side rate limit (FRONTPAY_API_RATE) or a 429's Retry-After.",
		}),
		rateWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "rate_limit_waits_total",
			Help: "API calls that waited for the client-side rate limit or a 429's Retry-After.",
		}),
		capped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "retry_after_capped_total",
			Help: "429 answers whose Retry-After asked for a longer pause than FRONTPAY_RETRY_MAX, which was applied instead.",
		}),
		settled: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "command_duration_seconds",
			Help:    "Time from a command's arrival on the command stream to its result published and the command acked.",
			Buckets: APIBuckets,
		}, []string{"operation"}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "takeovers_total",
			Help: "Times this worker became the owner of the commands and reset the consumer.",
		}),
		unworkable: perOp("commands_unworkable_total", "Commands that could not be worked on (a panic, a record that cannot be read, a result JetStream refuses): "+
			"dead-lettered, or left on the command stream when the dead letter was refused too."),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "callbacks_total",
			Help: "Callback requests at /callbacks/frontpay, by the HTTP status they were answered with.",
		}, []string{"code"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "status_changes_total",
			Help: "Status changes seen, by source (callback|history) and outcome (published|duplicate|rejected|failed).",
		}, []string{"source", "outcome"}),
	}
	cs := []prometheus.Collector{m.commands, m.apiDuration, m.retries, m.idemHits, m.idemConflicts,
		m.ambiguous, m.readbacks, m.deadLetters, m.rateWaited, m.rateWaits, m.capped, m.settled, m.takeovers, m.unworkable,
		m.callbacks, m.changes, newBuildInfo()}
	if lag != nil {
		cs = append(cs, newLagCollector(lag))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Every operation's counters exist from the start, at 0, so that rates and alerts see them
	// before the first event.
	for _, op := range frontpay.Operations() {
		l := string(op)
		m.commands.WithLabelValues(l, "succeeded", "")
		for _, v := range []*prometheus.CounterVec{m.retries, m.idemHits, m.idemConflicts, m.ambiguous, m.unworkable} {
			v.WithLabelValues(l)
		}
	}
	return m, nil
}

// newBuildInfo is frontpay_build_info: 1, labelled with the running build (buildinfo.Read), so
// that a dashboard shows which versions run and a query can join on them.
func newBuildInfo() prometheus.Collector {
	bi := buildinfo.Read()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Always 1, labelled with the worker's version, VCS commit and Go version.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "commit": bi.Commit, "goversion": bi.GoVersion},
	})
	g.Set(1)
	return g
}

// Callback counts a callback request by the status it was answered with (status.Observer).
func (m *Metrics) Callback(code int) { m.callbacks.WithLabelValues(status(code)).Inc() }

// Change counts a status change by source and outcome (status.Observer).
func (m *Metrics) Change(source, outcome string) {
	m.changes.WithLabelValues(oneOf(source, "callback", "history"), oneOf(outcome, "published", "duplicate", "rejected", "failed")).Inc()
}

// oneOf keeps a label value within its set.
func oneOf(v string, allowed ...string) string {
	if slices.Contains(allowed, v) {
		return v
	}
	return otherValue
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             LagTimeout + 5*time.Second,
	})
}

// operation is an operation's label value: one of the twelve, or "unknown".
func operation(op frontpay.Operation) string {
	if op.Valid() {
		return string(op)
	}
	return unknownOperation
}

// reason is a failure reason's label value: one of CONTRACT.md's, "" on success, or "other".
func reason(r schemas.Reason) string {
	if r == "" {
		return ""
	}
	for _, known := range schemas.Reasons() {
		if r == known {
			return string(r)
		}
	}
	return otherValue
}

// status is an HTTP status's label value: the code as text, "0" when no answer came.
func status(code int) string {
	if code < 100 || code > 599 {
		return "0"
	}
	return strconv.Itoa(code)
}

// verdict is a read-back verdict's label value.
func verdict(v string) string {
	switch v {
	case "applied", "not_applied", "undecided":
		return v
	}
	return otherValue
}

// APICall implements consumer.Observer.
func (m *Metrics) APICall(op frontpay.Operation, code int, took time.Duration) {
	m.apiDuration.WithLabelValues(operation(op), status(code)).Observe(took.Seconds())
}

// Outcome implements consumer.Observer.
func (m *Metrics) Outcome(op frontpay.Operation, ok bool, r schemas.Reason) {
	if ok {
		m.commands.WithLabelValues(operation(op), "succeeded", "").Inc()
		return
	}
	m.commands.WithLabelValues(operation(op), "failed", reason(r)).Inc()
}

// Retry implements consumer.Observer.
func (m *Metrics) Retry(op frontpay.Operation) { m.retries.WithLabelValues(operation(op)).Inc() }

// Duplicate implements consumer.Observer.
func (m *Metrics) Duplicate(op frontpay.Operation) { m.idemHits.WithLabelValues(operation(op)).Inc() }

// IdempotencyConflict implements consumer.Observer.
func (m *Metrics) IdempotencyConflict(op frontpay.Operation) {
	m.idemConflicts.WithLabelValues(operation(op)).Inc()
}

// Ambiguous implements consumer.Observer.
func (m *Metrics) Ambiguous(op frontpay.Operation) { m.ambiguous.WithLabelValues(operation(op)).Inc() }

// ReadBack implements consumer.Observer.
func (m *Metrics) ReadBack(op frontpay.Operation, v string) {
	m.readbacks.WithLabelValues(operation(op), verdict(v)).Inc()
}

// DeadLetter implements consumer.Observer.
func (m *Metrics) DeadLetter() { m.deadLetters.Inc() }

// Settled implements consumer.Observer.
func (m *Metrics) Settled(op frontpay.Operation, took time.Duration) {
	m.settled.WithLabelValues(operation(op)).Observe(max(took.Seconds(), 0))
}

// TakeOver implements consumer.Observer.
func (m *Metrics) TakeOver() { m.takeovers.Inc() }

// Unworkable implements consumer.Observer.
func (m *Metrics) Unworkable(op frontpay.Operation) {
	m.unworkable.WithLabelValues(operation(op)).Inc()
}

// ClientHooks are the Front Payment client's hooks that count its waits.
func (m *Metrics) ClientHooks() frontpay.Hooks {
	return frontpay.Hooks{
		RateLimitWait: func(took time.Duration) {
			m.rateWaits.Inc()
			m.rateWaited.Add(max(took.Seconds(), 0))
		},
		RetryAfterCapped: func(time.Duration) { m.capped.Inc() },
	}
}

// lagCollector reads the consumers' lag at every scrape.
type lagCollector struct {
	lag LagFunc

	up, pending, ackPending, redelivered, waiting, oldest *prometheus.Desc
}

func newLagCollector(lag LagFunc) *lagCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "consumer", name), help, []string{"consumer", "operation"}, nil)
	}
	return &lagCollector{
		lag: lag,
		up: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "consumer", "lag_up"),
			"1 when the consumers' lag could be read from JetStream at this scrape, 0 when not (the frontpay_consumer_* gauges are then missing).", nil, nil),
		pending: desc("pending", "operation=\"\": commands not yet delivered to the consumer; per operation: commands the owner holds "+
			"that have not started (waiting for their turn on their reservation or for a worker)."),
		ackPending:  desc("ack_pending", "Commands delivered and not yet acknowledged: in flight, waiting for a retry or for their turn."),
		redelivered: desc("redelivered", "operation=\"\": commands delivered more than once and not yet acknowledged."),
		waiting:     desc("waiting", "operation=\"\": pull requests waiting for commands (the owner's and the standbys')."),
		oldest:      desc("oldest_pending_seconds", "Age of the oldest command not acknowledged (per operation: held by the owner); 0 when none."),
	}
}

// Describe implements prometheus.Collector.
func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.pending, c.ackPending, c.redelivered, c.waiting, c.oldest} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), LagTimeout)
	defer cancel()
	lags, err := c.lag(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	seen := map[[2]string]bool{}
	for _, l := range lags {
		if seen[[2]string{l.Consumer, l.Operation}] {
			continue // a series twice would fail the whole scrape
		}
		seen[[2]string{l.Consumer, l.Operation}] = true
		op := l.Operation
		if op != "" {
			op = operation(frontpay.Operation(op))
		}
		for _, g := range []struct {
			desc *prometheus.Desc
			v    float64
		}{
			{c.pending, float64(l.Pending)},
			{c.ackPending, float64(l.AckPending)},
			{c.redelivered, float64(l.Redelivered)},
			{c.waiting, float64(l.Waiting)},
			{c.oldest, l.OldestAge.Seconds()},
		} {
			ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, g.v, l.Consumer, op)
		}
	}
}
