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
	"github.com/nordpay/frontpay-worker/status"
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

// Metrics is the worker's metrics. It is safe for concurrent use. Every family of the work has
// the label merchant ("" in a one-merchant deployment): For returns what one merchant's work is
// told to.
type Metrics struct {
	gatherer prometheus.Gatherer

	commands      *prometheus.CounterVec   // merchant, operation, outcome, reason
	apiDuration   *prometheus.HistogramVec // merchant, operation, status
	retries       *prometheus.CounterVec   // merchant, operation
	idemHits      *prometheus.CounterVec   // merchant, operation
	idemConflicts *prometheus.CounterVec   // merchant, operation
	ambiguous     *prometheus.CounterVec   // merchant, operation
	readbacks     *prometheus.CounterVec   // merchant, operation, verdict
	deadLetters   *prometheus.CounterVec   // merchant
	rateWaited    *prometheus.CounterVec   // merchant
	rateWaits     *prometheus.CounterVec   // merchant
	capped        *prometheus.CounterVec   // merchant
	settled       *prometheus.HistogramVec // merchant, operation
	takeovers     *prometheus.CounterVec   // merchant
	unworkable    *prometheus.CounterVec   // merchant, operation
	callbacks     *prometheus.CounterVec   // merchant, code
	changes       *prometheus.CounterVec   // merchant, source, outcome
}

var (
	_ consumer.Observer = (*Merchant)(nil)
	_ status.Observer   = (*Merchant)(nil)
)

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

	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, append([]string{"merchant"}, labels...))
	}
	perOp := func(name, help string) *prometheus.CounterVec { return counter(name, help, "operation") }
	m := &Metrics{
		gatherer: gatherer,
		commands: counter("commands_total",
			"Commands that ended with a result event, by operation, outcome (succeeded|failed) and failure reason (empty on success).",
			"operation", "outcome", "reason"),
		apiDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "api_request_duration_seconds",
			Help:    "Duration of the HTTP attempts of each operation's own Front Payment call, by HTTP status (0: no answer).",
			Buckets: APIBuckets,
		}, []string{"merchant", "operation", "status"}),
		retries:       perOp("retries_total", "Commands attempted again after a retryable failure or an unknown outcome."),
		idemHits:      perOp("idempotency_hits_total", "Duplicate or redelivered commands answered from their idempotency record, with no API call."),
		idemConflicts: perOp("idempotency_conflicts_total", "Commands whose idempotency key was used before with other data."),
		ambiguous:     perOp("ambiguous_outcomes_total", "Sent requests whose outcome is unknown (no answer, cut connection, 5xx)."),
		readbacks: counter("readbacks_total",
			"Unknown outcomes resolved by reading the reservation back, by verdict (applied|not_applied|undecided).", "operation", "verdict"),
		deadLetters: counter("dead_letters_total", "Messages on command subjects that were not JSON objects, moved to the dead-letter stream."),
		rateWaited: counter("rate_limit_wait_seconds_total",
			"Seconds API calls waited for the client-side rate limit (FRONTPAY_API_RATE, a merchant's rate) or a 429's Retry-After."),
		rateWaits: counter("rate_limit_waits_total", "API calls that waited for the client-side rate limit or a 429's Retry-After."),
		capped: counter("retry_after_capped_total",
			"429 answers whose Retry-After asked for a longer pause than FRONTPAY_RETRY_MAX, which was applied instead."),
		settled: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "command_duration_seconds",
			Help:    "Time from a command's arrival on the command stream to its result published and the command acked.",
			Buckets: APIBuckets,
		}, []string{"merchant", "operation"}),
		takeovers: counter("takeovers_total", "Times this worker became the owner of a merchant's commands and reset its consumer."),
		unworkable: perOp("commands_unworkable_total", "Commands that could not be worked on (a panic, a record that cannot be read, a result JetStream refuses): "+
			"dead-lettered, or left on the command stream when the dead letter was refused too."),
		callbacks: counter("callbacks_total", "Callback requests at /callbacks/frontpay[/<merchant>], by the HTTP status they were answered with.", "code"),
		changes: counter("status_changes_total",
			"Status changes seen, by source (callback|history) and outcome (published|duplicate|rejected|failed).", "source", "outcome"),
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
	return m, nil
}

// Merchant is what one merchant's work is told to: it implements consumer.Observer and
// status.Observer, and gives the Front Payment client's hooks.
type Merchant struct {
	m  *Metrics
	id string
}

// For returns what a merchant's work ("" in a one-merchant deployment) is told to. Every
// operation's counters of the merchant exist from then on, at 0, so that rates and alerts see
// them before the first event.
func (m *Metrics) For(merchant string) *Merchant {
	for _, op := range frontpay.Operations() {
		l := string(op)
		m.commands.WithLabelValues(merchant, l, "succeeded", "")
		for _, v := range []*prometheus.CounterVec{m.retries, m.idemHits, m.idemConflicts, m.ambiguous, m.unworkable} {
			v.WithLabelValues(merchant, l)
		}
	}
	return &Merchant{m: m, id: merchant}
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
func (o *Merchant) Callback(code int) { o.m.callbacks.WithLabelValues(o.id, httpStatus(code)).Inc() }

// Change counts a status change by source and outcome (status.Observer).
func (o *Merchant) Change(source, outcome string) {
	o.m.changes.WithLabelValues(o.id, oneOf(source, "callback", "history"), oneOf(outcome, "published", "duplicate", "rejected", "failed")).Inc()
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

// httpStatus is an HTTP status's label value: the code as text, "0" when no answer came.
func httpStatus(code int) string {
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
func (o *Merchant) APICall(op frontpay.Operation, code int, took time.Duration) {
	o.m.apiDuration.WithLabelValues(o.id, operation(op), httpStatus(code)).Observe(took.Seconds())
}

// Outcome implements consumer.Observer.
func (o *Merchant) Outcome(op frontpay.Operation, ok bool, r schemas.Reason) {
	if ok {
		o.m.commands.WithLabelValues(o.id, operation(op), "succeeded", "").Inc()
		return
	}
	o.m.commands.WithLabelValues(o.id, operation(op), "failed", reason(r)).Inc()
}

// Retry implements consumer.Observer.
func (o *Merchant) Retry(op frontpay.Operation) {
	o.m.retries.WithLabelValues(o.id, operation(op)).Inc()
}

// Duplicate implements consumer.Observer.
func (o *Merchant) Duplicate(op frontpay.Operation) {
	o.m.idemHits.WithLabelValues(o.id, operation(op)).Inc()
}

// IdempotencyConflict implements consumer.Observer.
func (o *Merchant) IdempotencyConflict(op frontpay.Operation) {
	o.m.idemConflicts.WithLabelValues(o.id, operation(op)).Inc()
}

// Ambiguous implements consumer.Observer.
func (o *Merchant) Ambiguous(op frontpay.Operation) {
	o.m.ambiguous.WithLabelValues(o.id, operation(op)).Inc()
}

// ReadBack implements consumer.Observer.
func (o *Merchant) ReadBack(op frontpay.Operation, v string) {
	o.m.readbacks.WithLabelValues(o.id, operation(op), verdict(v)).Inc()
}

// DeadLetter implements consumer.Observer.
func (o *Merchant) DeadLetter() { o.m.deadLetters.WithLabelValues(o.id).Inc() }

// Settled implements consumer.Observer.
func (o *Merchant) Settled(op frontpay.Operation, took time.Duration) {
	o.m.settled.WithLabelValues(o.id, operation(op)).Observe(max(took.Seconds(), 0))
}

// TakeOver implements consumer.Observer.
func (o *Merchant) TakeOver() { o.m.takeovers.WithLabelValues(o.id).Inc() }

// Unworkable implements consumer.Observer.
func (o *Merchant) Unworkable(op frontpay.Operation) {
	o.m.unworkable.WithLabelValues(o.id, operation(op)).Inc()
}

// ClientHooks are the merchant's Front Payment client's hooks, which count its waits.
func (o *Merchant) ClientHooks() frontpay.Hooks {
	return frontpay.Hooks{
		RateLimitWait: func(took time.Duration) {
			o.m.rateWaits.WithLabelValues(o.id).Inc()
			o.m.rateWaited.WithLabelValues(o.id).Add(max(took.Seconds(), 0))
		},
		RetryAfterCapped: func(time.Duration) { o.m.capped.WithLabelValues(o.id).Inc() },
	}
}

// lagCollector reads the consumers' lag at every scrape.
type lagCollector struct {
	lag LagFunc

	up, pending, ackPending, redelivered, waiting, oldest *prometheus.Desc
}

func newLagCollector(lag LagFunc) *lagCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "consumer", name), help, []string{"merchant", "consumer", "operation"}, nil)
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
	seen := map[[3]string]bool{}
	for _, l := range lags {
		if seen[[3]string{l.Merchant, l.Consumer, l.Operation}] {
			continue // a series twice would fail the whole scrape
		}
		seen[[3]string{l.Merchant, l.Consumer, l.Operation}] = true
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
			ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, g.v, l.Merchant, l.Consumer, op)
		}
	}
}
