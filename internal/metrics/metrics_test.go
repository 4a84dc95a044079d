package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/buildinfo"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/schemas"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const metricToken = "metrics-test-token-5ecret"

// metricWorld is an embedded NATS server over TCP with the topology, a sandbox over HTTP and
// the metrics, and a worker once started.
type metricWorld struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	topo    consumer.Topology
	sb      *testworld.API
	api     *frontpay.Client // the test's own client, for seeding reservations
	metrics *Metrics
	scrape  string // the metrics endpoint's URL
}

func metricSetup(t *testing.T) *metricWorld {
	t.Helper()
	w := &metricWorld{topo: consumer.Topology{AckWait: 10 * time.Second}}
	n := testworld.JetStream(t, testworld.WithTopology(w.topo))
	w.js, w.kv = n.JS, n.KV
	w.sb = testworld.Sandbox(t, sandbox.Options{Token: metricToken, RateLimit: -1, Seed: 3})
	w.api = w.sb.Client(t, metricToken, frontpay.WithTimeout(10*time.Second))
	var err error
	if w.metrics, err = New(prometheus.NewRegistry(), func(ctx context.Context) ([]consumer.ConsumerLag, error) {
		return w.topo.Lag(ctx, w.js, "")
	}); err != nil {
		t.Fatal(err)
	}
	w.scrape = testworld.Serve(t, w.metrics.Handler()) + "/metrics"
	return w
}

// startWorker runs a worker that reports to the metrics until the test ends.
func (w *metricWorld) startWorker(t *testing.T) {
	t.Helper()
	wk := consumer.New(consumer.Config{
		Topology: w.topo, Source: "metrics-test", Instance: "metrics-test-1",
		MaxAttempts: 4, RetryInitial: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		APITimeout: 10 * time.Second, Concurrency: 8, DrainTimeout: 10 * time.Second, LeaseMargin: time.Second,
		Observer: w.metrics.For(""),
	}, w.js, w.kv, w.sb.Client(t, metricToken, frontpay.WithTimeout(10*time.Second)), publisher.New(w.js, nil, 5*time.Second))
	testworld.Run(t, "worker", wk.Run)
}

// metricCommand is a command event of op with idempotency key key (its id when empty), unchecked:
// the backlog's captures are not valid commands.
func metricCommand(t *testing.T, op frontpay.Operation, key string, data any) (id string, raw []byte) {
	t.Helper()
	c := testworld.NewCommand(t, op, data, func(e *schemas.Event) { e.Source, e.IdempotencyKey = "shop/metrics-test", key })
	return c.ID, c.Raw
}

// publish stores raw on op's command subject with Nats-Msg-Id msgID.
func (w *metricWorld) publish(t *testing.T, op frontpay.Operation, msgID string, raw []byte) {
	t.Helper()
	testworld.Publish(t, w.js, testworld.CommandMsg(w.topo.Prefix, op, msgID, raw))
}

// settled waits until every consumer has delivered and acknowledged everything: every command
// published so far is answered, and the worker has told the metrics all it did for it (it acks
// last).
func (w *metricWorld) settled(t *testing.T, what string) {
	t.Helper()
	var lags []consumer.ConsumerLag
	var err error
	defer func() {
		if t.Failed() {
			t.Logf("%s: the consumers when last read: %+v (%v)", what, lags, err)
		}
	}()
	testworld.WaitFor(t, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		lags, err = w.topo.Lag(ctx, w.js, "")
		busy := err != nil
		for _, l := range lags {
			busy = busy || l.Pending > 0 || l.AckPending > 0
		}
		return !busy
	}, what+": the consumers to settle")
}

// reservation submits a reservation of 300 + 700 NOK straight to the sandbox; paid, the customer
// has paid it. It returns the UUID and the first line's id.
func (w *metricWorld) reservation(t *testing.T, paid bool) (string, frontpay.Number) {
	t.Helper()
	raw := `{"customerDetails":{"type":"private","countryCode":"+47","msisdn":"46567468","email":"kari.metrics@example.no",
		"name":"Kari Nordmann","preferredLanguage":"no","address":{"street":"Storgata 1","zip":"0155","city":"Oslo","country":"NO"}},
		"orderDate":"` + fmt.Sprint(time.Now().Unix()) + `","dueDateForPaymentLink":"` + fmt.Sprint(time.Now().Add(72*time.Hour).Unix()) + `",
		"sendOrderBy":{"sms":false,"email":true},
		"products":{"0":{"name":"Ski wax","productId":"WAX-1","rate":300,"tax":"25","amount":300},
			"1":{"name":"Ski poles","productId":"POLE-2","rate":700,"tax":"25","amount":700}},
		"orderSummary":{"subTotal":1000,"totalTax":250,"grandTotal":1000}}`
	var req frontpay.SubmitReservationRequest
	if err := json.Unmarshal([]byte(raw), &req); err != nil {
		t.Fatal(err)
	}
	res, err := w.api.SubmitReservation(t.Context(), &req)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	uuid := res.Data.ReservationUUID
	if paid {
		if err := w.sb.Pay(uuid); err != nil {
			t.Fatal(err)
		}
	}
	d, err := w.api.Details(t.Context(), uuid)
	if err != nil {
		t.Fatal(err)
	}
	return uuid, d.Data.ProductList[0].ID
}

// scrape reads the metrics endpoint over HTTP and parses it.
func (w *metricWorld) scrapeNow(t *testing.T) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	return metricScrape(t, w.scrape)
}

func metricScrape(t *testing.T, url string) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	code, body := testworld.Get(t, url)
	if code != http.StatusOK {
		t.Fatalf("scrape: %d\n%s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse scrape: %v\n%s", err, body)
	}
	return string(body), fams
}

// series finds the series of a family with exactly these labels (an absent label counts as "").
func series(fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			if lp.GetValue() != "" {
				got[lp.GetName()] = lp.GetValue()
			}
		}
		want := map[string]string{}
		for k, v := range labels {
			if v != "" {
				want[k] = v
			}
		}
		if len(got) != len(want) {
			continue
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is a counter's or gauge's value, or a histogram's sample count; -1 when there is no such
// series.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	m := series(fams, name, labels)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

// nonZero lists the series of a family whose value is not 0, as "label=value,…".
func nonZero(fams map[string]*dto.MetricFamily, name string) map[string]float64 {
	out := map[string]float64{}
	f := fams[name]
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		var v float64
		switch {
		case m.Counter != nil:
			v = m.Counter.GetValue()
		case m.Gauge != nil:
			v = m.Gauge.GetValue()
		case m.Histogram != nil:
			v = float64(m.Histogram.GetSampleCount())
		}
		if v == 0 {
			continue
		}
		var parts []string
		for _, lp := range m.GetLabel() {
			parts = append(parts, lp.GetName()+"="+lp.GetValue())
		}
		out[strings.Join(parts, ",")] = v
	}
	return out
}

func checkFamily(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]float64) {
	t.Helper()
	got := nonZero(fams, name)
	if len(got) != len(want) {
		t.Errorf("%s: got %v, want %v", name, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %v, want %v", name, got, want)
			return
		}
	}
}

// TestMetricsOfAScriptedRun drives a real worker through every kind of event and checks every
// family of the scrape exactly.
func TestMetricsOfAScriptedRun(t *testing.T) {
	w := metricSetup(t)
	w.startWorker(t)
	// What the scrape must never show: the run's identifiers, e-mail addresses and token.
	var secrets []string
	secrets = append(secrets, metricToken, "kari.metrics@example.no")

	var uuids []string
	for range 3 {
		uuid, _ := w.reservation(t, false)
		uuids = append(uuids, uuid)
	}
	paidUUID, line := w.reservation(t, true)
	secrets = append(secrets, paidUUID)
	secrets = append(secrets, uuids...)
	send := func(op frontpay.Operation, key string, data any) (string, []byte) {
		id, raw := metricCommand(t, op, key, data)
		secrets = append(secrets, id)
		if key != "" {
			secrets = append(secrets, key)
		}
		w.publish(t, op, id, raw)
		return id, raw
	}

	// Three details that succeed, one of an unknown reservation.
	var keys []string
	for _, uuid := range uuids {
		key := "details-" + uuid
		keys = append(keys, key)
		send(frontpay.ReservationDetails, key, map[string]any{"reservationUuid": uuid})
	}
	const unknown = "RES0000000042"
	secrets = append(secrets, unknown)
	send(frontpay.ReservationDetails, "", map[string]any{"reservationUuid": unknown})
	w.settled(t, "details")

	// The first details again under its key (a duplicate), and the second key with other data.
	send(frontpay.ReservationDetails, keys[0], map[string]any{"reservationUuid": uuids[0]})
	w.settled(t, "duplicate")
	send(frontpay.ReservationDetails, keys[1], map[string]any{"reservationUuid": uuids[0]})
	w.settled(t, "conflict")

	// A history call answered 503, then 200.
	w.sb.SetFault(frontpay.ReservationHistory, sandbox.Fault{ErrorShare: 1, Times: 1})
	send(frontpay.ReservationHistory, "", map[string]any{})
	w.settled(t, "history")

	// A capture whose answer is lost after the effect: read back, applied.
	w.sb.SetFault(frontpay.ReservationCapture, sandbox.Fault{DropShare: 1, Times: 1})
	send(frontpay.ReservationCapture, "", map[string]any{
		"reservationUuid": paidUUID, "products": []any{map[string]any{"id": line, "amount": 300}},
		"grandTotal": 300, "additionalText": "first parcel",
	})
	w.settled(t, "capture")

	// Not a JSON object at all.
	w.publish(t, frontpay.ReservationDetails, "not-json-1", []byte("this is not JSON"))
	w.settled(t, "dead letter")

	// One wait for the rate limit, in a client with the metrics' hooks: held back by a 429's
	// pause (Retry-After: 1), capped at 100ms.
	hooked := w.sb.Client(t, metricToken, frontpay.WithRetryAfterMax(100*time.Millisecond), frontpay.WithHooks(w.metrics.For("").ClientHooks()))
	w.sb.SetFault(frontpay.ReservationHistory, sandbox.Fault{TooManyShare: 1, Times: 1})
	if _, err := hooked.History(t.Context(), time.Time{}, time.Time{}); frontpay.Classify(err) != frontpay.Retryable {
		t.Fatalf("want a 429, got %v", err)
	}
	if _, err := hooked.History(t.Context(), time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}

	body, fams := w.scrapeNow(t)
	checkFamily(t, fams, "frontpay_commands_total", map[string]float64{
		"merchant=,operation=reservation.details,outcome=succeeded,reason=":                  3,
		"merchant=,operation=reservation.details,outcome=failed,reason=not_found":            1,
		"merchant=,operation=reservation.details,outcome=failed,reason=idempotency_conflict": 1,
		"merchant=,operation=reservation.history,outcome=succeeded,reason=":                  1,
		"merchant=,operation=reservation.capture,outcome=succeeded,reason=":                  1,
	})
	checkFamily(t, fams, "frontpay_api_request_duration_seconds", map[string]float64{
		"merchant=,operation=reservation.details,status=200": 3,
		"merchant=,operation=reservation.details,status=404": 1,
		"merchant=,operation=reservation.history,status=503": 1,
		"merchant=,operation=reservation.history,status=200": 1,
		"merchant=,operation=reservation.capture,status=0":   1,
	})
	checkFamily(t, fams, "frontpay_retries_total", map[string]float64{
		"merchant=,operation=reservation.history": 1,
		"merchant=,operation=reservation.capture": 1,
	})
	checkFamily(t, fams, "frontpay_idempotency_hits_total", map[string]float64{"merchant=,operation=reservation.details": 1})
	checkFamily(t, fams, "frontpay_idempotency_conflicts_total", map[string]float64{"merchant=,operation=reservation.details": 1})
	checkFamily(t, fams, "frontpay_ambiguous_outcomes_total", map[string]float64{"merchant=,operation=reservation.capture": 1})
	checkFamily(t, fams, "frontpay_readbacks_total", map[string]float64{"merchant=,operation=reservation.capture,verdict=applied": 1})
	checkFamily(t, fams, "frontpay_dead_letters_total", map[string]float64{"merchant=": 1})
	checkFamily(t, fams, "frontpay_rate_limit_waits_total", map[string]float64{"merchant=": 1})
	checkFamily(t, fams, "frontpay_retry_after_capped_total", map[string]float64{"merchant=": 1})
	if v := value(fams, "frontpay_rate_limit_wait_seconds_total", nil); v < 0.05 || v > 30 {
		t.Errorf("frontpay_rate_limit_wait_seconds_total %v, want the 100ms pause and a little", v)
	}
	checkFamily(t, fams, "frontpay_takeovers_total", map[string]float64{"merchant=": 1})
	if h := series(fams, "frontpay_command_duration_seconds", map[string]string{"operation": "reservation.capture"}); h == nil || h.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("frontpay_command_duration_seconds of the capture: %v", h)
	}

	// Every operation's counters exist at 0 from the start.
	for _, op := range frontpay.Operations() {
		l := map[string]string{"operation": string(op)}
		for _, name := range []string{"frontpay_retries_total", "frontpay_idempotency_hits_total",
			"frontpay_idempotency_conflicts_total", "frontpay_ambiguous_outcomes_total"} {
			if value(fams, name, l) < 0 {
				t.Errorf("%s{operation=%q} missing", name, op)
			}
		}
		if value(fams, "frontpay_commands_total", map[string]string{"operation": string(op), "outcome": "succeeded"}) < 0 {
			t.Errorf("frontpay_commands_total{operation=%q,outcome=succeeded} missing", op)
		}
	}
	// The histogram has the documented buckets, 1ms to 30s.
	if h := series(fams, "frontpay_api_request_duration_seconds", map[string]string{"operation": "reservation.details", "status": "200"}); h == nil {
		t.Error("no details histogram")
	} else {
		var bounds []float64
		for _, b := range h.GetHistogram().GetBucket() {
			if !math.IsInf(b.GetUpperBound(), 1) { // the text format writes +Inf too
				bounds = append(bounds, b.GetUpperBound())
			}
		}
		if !slices.Equal(bounds, APIBuckets) || bounds[0] != 0.001 || bounds[len(bounds)-1] != 30 {
			t.Errorf("buckets %v, want %v", bounds, APIBuckets)
		}
	}

	// The lag, with everything answered.
	if v := value(fams, "frontpay_consumer_lag_up", nil); v != 1 {
		t.Errorf("frontpay_consumer_lag_up %v", v)
	}
	for _, name := range []string{"frontpay_consumer_pending", "frontpay_consumer_ack_pending",
		"frontpay_consumer_redelivered", "frontpay_consumer_oldest_pending_seconds"} {
		if n := len(fams[name].GetMetric()); n != 13 {
			t.Errorf("%s has %d series, want 13 (the consumer and its 12 operations)", name, n)
		}
		checkFamily(t, fams, name, map[string]float64{})
	}

	// Nothing of the run's data in the labels.
	for _, s := range secrets {
		if strings.Contains(body, s) {
			t.Errorf("the scrape shows %q", s)
		}
	}
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`),
		regexp.MustCompile(`RES[0-9]{6,}`),
		regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+`),
	} {
		if m := re.FindString(body); m != "" {
			t.Errorf("the scrape shows %q", m)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}

// TestMetricsLagOfABacklog checks the lag gauges against commands no worker has taken.
func TestMetricsLagOfABacklog(t *testing.T) {
	w := metricSetup(t)
	first := time.Now()
	for i, op := range []frontpay.Operation{frontpay.ReservationCapture, frontpay.ReservationDetails, frontpay.ReservationCapture} {
		id, raw := metricCommand(t, op, "", map[string]any{"reservationUuid": fmt.Sprintf("RES100000000%d", i)})
		w.publish(t, op, id, raw)
	}
	c, err := w.js.Consumer(t.Context(), w.topo.CommandStream(), consumer.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(10*time.Second), jetstream.FetchPriorityGroup(consumer.PriorityGroup))
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() { // fetched, not acked
	}
	_, fams := w.scrapeNow(t)
	maxAge := time.Since(first).Seconds()

	all := map[string]string{"consumer": consumer.ConsumerName, "operation": ""}
	capture := map[string]string{"consumer": consumer.ConsumerName, "operation": "reservation.capture"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"frontpay_consumer_lag_up", nil, 1},
		{"frontpay_consumer_pending", all, 2},
		{"frontpay_consumer_ack_pending", all, 1},
		{"frontpay_consumer_redelivered", all, 0},
		// No owner reported: the operations' rows are empty.
		{"frontpay_consumer_pending", capture, 0},
		{"frontpay_consumer_ack_pending", capture, 0},
		{"frontpay_consumer_oldest_pending_seconds", capture, 0},
	} {
		if got := value(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if age := value(fams, "frontpay_consumer_oldest_pending_seconds", all); age <= 0 || age > maxAge {
		t.Errorf("oldest pending: %vs, want between 0 and %vs", age, maxAge)
	}
}

// TestMetricsLagUnreadable checks that a lag that cannot be read shows as lag_up 0 and does not
// fail the scrape.
func TestMetricsLagUnreadable(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, func(context.Context) ([]consumer.ConsumerLag, error) { return nil, errors.New("no JetStream") })
	if err != nil {
		t.Fatal(err)
	}
	_, fams := metricScrape(t, testworld.Serve(t, m.Handler()))
	if v := value(fams, "frontpay_consumer_lag_up", nil); v != 0 {
		t.Errorf("frontpay_consumer_lag_up %v, want 0", v)
	}
	if f := fams["frontpay_consumer_pending"]; f != nil {
		t.Errorf("pending shown without a lag: %v", f)
	}
	if fams["frontpay_build_info"] == nil {
		t.Error("the other metrics are missing")
	}

	// The same names again in one registry is an error, not a panic.
	if _, err := New(reg, nil); err == nil {
		t.Error("registering twice worked")
	}
}

// TestMetricsLabelsStayBounded checks that values outside the fixed sets never become labels.
func TestMetricsLabelsStayBounded(t *testing.T) {
	m, err := New(nil, func(context.Context) ([]consumer.ConsumerLag, error) {
		return []consumer.ConsumerLag{{Consumer: "c", Operation: "RES1234567890"}, {Consumer: "c"}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	o := m.For("shop1")
	o.Outcome("reservation.RES1234567890", false, "customer kari@example.no")
	o.APICall("x", 1234, time.Millisecond)
	o.ReadBack(frontpay.ReservationCapture, "maybe RES1234567890")
	body, fams := metricScrape(t, testworld.Serve(t, m.Handler()))
	if strings.Contains(body, "RES1234567890") || strings.Contains(body, "kari") {
		t.Errorf("data in the labels:\n%s", body)
	}
	for name, l := range map[string]map[string]string{
		"frontpay_commands_total":               {"merchant": "shop1", "operation": "unknown", "outcome": "failed", "reason": "other"},
		"frontpay_api_request_duration_seconds": {"merchant": "shop1", "operation": "unknown", "status": "0"},
		"frontpay_readbacks_total":              {"merchant": "shop1", "operation": "reservation.capture", "verdict": "other"},
		"frontpay_consumer_pending":             {"consumer": "c", "operation": "unknown"},
	} {
		if v := value(fams, name, l); v < 0 {
			t.Errorf("%s%v missing", name, l)
		}
	}
	if fams["go_goroutines"] == nil {
		t.Error("a registry of its own lacks the Go collector")
	}
}

// TestMetricsBuildInfo: frontpay_build_info is 1 and names the running build.
func TestMetricsBuildInfo(t *testing.T) {
	m, err := New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, fams := metricScrape(t, testworld.Serve(t, m.Handler()))
	bi := buildinfo.Read()
	want := map[string]string{"version": bi.Version, "commit": bi.Commit, "goversion": runtime.Version()}
	if v := value(fams, "frontpay_build_info", want); v != 1 {
		t.Fatalf("frontpay_build_info%v = %v, want 1; families: %v", want, v, fams["frontpay_build_info"])
	}
}
