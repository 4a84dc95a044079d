package deploy

import (
	"context"
	"fmt"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/metrics"
	"github.com/nordpay/frontpay-worker/schemas"
	"github.com/nordpay/frontpay-worker/status"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics: the series internal/metrics exposes, and the PromQL that alerts and dashboards read
// them with.

// seriesSet maps every series name the worker exposes to the label names it has.
type seriesSet map[string]map[string]bool

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance", "namespace", "pod", "service", "container", "endpoint"}

// exposedSeries builds the worker's metrics, drives every Observer method once, scrapes them
// and returns every series name: a histogram's _bucket, _sum and _count, a summary's own name,
// _sum and _count. The synthetic `up` of every scrape is added.
func exposedSeries(t *testing.T) seriesSet {
	t.Helper()
	op := frontpay.Operations()[0]
	m, err := metrics.New(nil, func(context.Context) ([]consumer.ConsumerLag, error) {
		return []consumer.ConsumerLag{
			{Merchant: "shop1", Consumer: consumer.ConsumerFor("shop1"), Pending: 1, AckPending: 2, Redelivered: 1, Waiting: 1, OldestAge: time.Minute},
			{Merchant: "shop1", Consumer: consumer.ConsumerFor("shop1"), Operation: string(op), Pending: 1, AckPending: 2, OldestAge: time.Minute},
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every method of both observer interfaces, called with a plausible argument of each type.
	args := map[reflect.Type]reflect.Value{
		reflect.TypeFor[frontpay.Operation](): reflect.ValueOf(op),
		reflect.TypeFor[int]():                reflect.ValueOf(401),
		reflect.TypeFor[time.Duration]():      reflect.ValueOf(250 * time.Millisecond),
		reflect.TypeFor[bool]():               reflect.ValueOf(false),
		reflect.TypeFor[schemas.Reason]():     reflect.ValueOf(schemas.OutcomeUnknown),
		reflect.TypeFor[string]():             reflect.ValueOf("applied"),
	}
	o := m.For("shop1")
	mv := reflect.ValueOf(o)
	hooks := o.ClientHooks()
	hooks.RateLimitWait(250 * time.Millisecond)
	hooks.RetryAfterCapped(time.Hour)
	for _, iface := range []reflect.Type{reflect.TypeFor[consumer.Observer](), reflect.TypeFor[status.Observer]()} {
		for i := range iface.NumMethod() {
			method := iface.Method(i)
			var in []reflect.Value
			for j := range method.Type.NumIn() {
				a, ok := args[method.Type.In(j)]
				if !ok {
					t.Fatalf("%s.%s takes a %s: teach exposedSeries an argument for it", iface, method.Name, method.Type.In(j))
				}
				in = append(in, a)
			}
			mv.MethodByName(method.Name).Call(in)
		}
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	set := seriesSet{"up": {}}
	add := func(name string, labels []*dto.LabelPair, extra ...string) {
		if set[name] == nil {
			set[name] = map[string]bool{}
		}
		for _, l := range labels {
			set[name][l.GetName()] = true
		}
		for _, l := range extra {
			set[name][l] = true
		}
	}
	for name, f := range families {
		for _, s := range f.Metric {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", s.Label, "le")
				add(name+"_sum", s.Label)
				add(name+"_count", s.Label)
			case dto.MetricType_SUMMARY:
				add(name, s.Label, "quantile")
				add(name+"_sum", s.Label)
				add(name+"_count", s.Label)
			default:
				add(name, s.Label)
			}
		}
	}
	if set["frontpay_consumer_oldest_pending_seconds"] == nil || set["frontpay_api_request_duration_seconds_bucket"] == nil {
		t.Fatalf("the scrape lacks the consumer gauges or the API histogram: %v", sortedKeys(set))
	}
	return set
}

// promFunctions are the PromQL functions and aggregations the rules and the dashboard may use.
var promFunctions = []string{
	"abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes",
	"clamp", "clamp_max", "clamp_min", "count", "count_over_time", "delta", "deriv", "floor",
	"group", "histogram_quantile", "idelta", "increase", "irate", "label_join", "label_replace",
	"last_over_time", "max", "max_over_time", "min", "min_over_time", "predict_linear",
	"present_over_time", "quantile", "quantile_over_time", "rate", "resets", "round", "scalar",
	"sort", "sort_desc", "stddev", "sum", "sum_over_time", "time", "timestamp", "topk", "vector",
}

var promKeywords = []string{"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}

// promAggregators are the aggregation operators among promFunctions.
var promAggregators = []string{"avg", "bottomk", "count", "group", "max", "min", "quantile", "stddev", "sum", "topk"}

// promRef is what an expression says of the series it reads.
type promRef struct {
	metrics      map[string][]string // metric name → label names of its matchers
	values       map[string][]string // label name → values compared with =
	grouping     []string            // label names of by, without, on, ignoring
	selectors    []promSelector      // every series selector, in order
	aggregations []promAggregation   // every aggregation, in order
}

// promSelector is one series selector: a metric name and its label matchers.
type promSelector struct {
	metric   string
	matchers []promMatcher
}

// promMatcher is one label matcher, its value unquoted.
type promMatcher struct{ label, op, value string }

// has tells whether the selector has the matcher label op value.
func (s promSelector) has(label, op, value string) bool {
	return slices.Contains(s.matchers, promMatcher{label, op, value})
}

// promAggregation is one aggregation: its operator and the clause that follows the operator
// ("by", "without", or "" when none does) with its labels.
type promAggregation struct {
	op, clause string
	labels     []string
}

var promToken = regexp.MustCompile("\\s+|\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`|\\$\\{[^}]*\\}|\\$[a-zA-Z_]+|[a-zA-Z_:][a-zA-Z0-9_:]*|[0-9][0-9a-zA-Z.]*|=~|!~|!=|==|>=|<=|[-+*/%^<>=(){}\\[\\],.]")

var promIdent = regexp.MustCompile(`^[a-zA-Z_:]`)

// parseProm reads the series names, matchers and grouping labels of a PromQL expression. It is
// no full parser, but it knows every construct the rules and the dashboard use and fails on
// anything else.
func parseProm(expr string) (*promRef, error) {
	var toks []string
	rest := expr
	for rest != "" {
		loc := promToken.FindStringIndex(rest)
		if loc == nil || loc[0] != 0 {
			return nil, fmt.Errorf("cannot read %q", rest)
		}
		if tok := rest[:loc[1]]; strings.TrimSpace(tok) != "" {
			toks = append(toks, tok)
		}
		rest = rest[loc[1]:]
	}
	ref := &promRef{metrics: map[string][]string{}, values: map[string][]string{}}
	isIdent := func(s string) bool { return promIdent.MatchString(s) }
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		next := ""
		if i+1 < len(toks) {
			next = toks[i+1]
		}
		switch {
		case tok == "[": // a range or subquery: durations and Grafana variables
			for i < len(toks) && toks[i] != "]" {
				i++
			}
		case tok == "by" || tok == "without" || tok == "on" || tok == "ignoring" ||
			((tok == "group_left" || tok == "group_right") && next == "("):
			if next != "(" {
				return nil, fmt.Errorf("%s without a label list", tok)
			}
			var agg *promAggregation
			if n := len(ref.aggregations); n > 0 && (tok == "by" || tok == "without") && i > 0 && toks[i-1] == ref.aggregations[n-1].op {
				agg = &ref.aggregations[n-1]
				agg.clause = tok
			}
			for i += 2; i < len(toks) && toks[i] != ")"; i++ {
				if toks[i] != "," {
					ref.grouping = append(ref.grouping, toks[i])
					if agg != nil {
						agg.labels = append(agg.labels, toks[i])
					}
				}
			}
		case slices.Contains(promKeywords, strings.ToLower(tok)):
		case isIdent(tok) && (next == "(" || next == "by" || next == "without"):
			if !slices.Contains(promFunctions, tok) {
				return nil, fmt.Errorf("unknown function %s", tok)
			}
			if slices.Contains(promAggregators, tok) {
				ref.aggregations = append(ref.aggregations, promAggregation{op: tok})
			}
		case isIdent(tok):
			labels := []string{}
			sel := promSelector{metric: tok}
			if next == "{" {
				for i += 2; i < len(toks) && toks[i] != "}"; i++ {
					if toks[i] == "," {
						continue
					}
					if i+2 >= len(toks) {
						return nil, fmt.Errorf("unfinished matcher in %s", tok)
					}
					name, op, value := toks[i], toks[i+1], toks[i+2]
					labels = append(labels, name)
					v, err := strconv.Unquote(value)
					if err != nil {
						return nil, fmt.Errorf("matcher %s%s%s of %s: the value is no string", name, op, value, tok)
					}
					if op == "=" {
						ref.values[name] = append(ref.values[name], v)
					}
					sel.matchers = append(sel.matchers, promMatcher{name, op, v})
					i += 2
				}
			}
			ref.metrics[tok] = append(ref.metrics[tok], labels...)
			ref.selectors = append(ref.selectors, sel)
		case tok == "{":
			return nil, fmt.Errorf("a selector without a metric name")
		}
	}
	if len(ref.metrics) == 0 {
		return nil, fmt.Errorf("no series")
	}
	return ref, nil
}

// check tells what in an expression the worker does not expose.
func (s seriesSet) check(expr string) []string {
	ref, err := parseProm(expr)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	allLabels := map[string]bool{}
	for _, labels := range s {
		for l := range labels {
			allLabels[l] = true
		}
	}
	for _, l := range targetLabels {
		allLabels[l] = true
	}
	for _, name := range sortedKeys(ref.metrics) {
		labels, ok := s[name]
		if !ok {
			problems = append(problems, "no series "+name+" in internal/metrics")
			continue
		}
		for _, l := range ref.metrics[name] {
			if !labels[l] && !slices.Contains(targetLabels, l) {
				problems = append(problems, fmt.Sprintf("%s has no label %s", name, l))
			}
		}
	}
	for _, l := range ref.grouping {
		if !allLabels[l] {
			problems = append(problems, "no series has a label "+l)
		}
	}
	for _, v := range ref.values["reason"] {
		if !slices.Contains(schemas.Reasons(), schemas.Reason(v)) {
			problems = append(problems, fmt.Sprintf("reason %q is none of schemas.Reasons()", v))
		}
	}
	for _, sel := range ref.selectors {
		for _, m := range sel.matchers {
			// The consumer gauges' row of the consumer as a whole has the operation "".
			if m.label != "operation" || m.op != "=" || frontpay.Operation(m.value).Valid() ||
				(m.value == "" && strings.HasPrefix(sel.metric, "frontpay_consumer_")) {
				continue
			}
			problems = append(problems, fmt.Sprintf("%s: operation %q is none of frontpay.Operations()", sel.metric, m.value))
		}
	}
	return problems
}

// reads tells whether an expression reads a series that has the label.
func (s seriesSet) reads(ref *promRef, label string) bool {
	for name := range ref.metrics {
		if s[name][label] {
			return true
		}
	}
	return false
}
