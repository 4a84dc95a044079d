package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// The pure parts of the benchmark: percentiles, the attribution of a command's time to the API
// and to the worker, pacing, and the result table. bench_test.go tests them.

// percentile returns the p-th percentile (0–100) of ds by the nearest-rank method: the smallest
// value with at least p% of the values at or below it. ds need not be sorted; it is not changed.
// An empty ds gives 0.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// overheads attributes each command's time: published[i] and result[i] are when command i was
// published and when its (first) result event arrived, in nanoseconds on one monotonic clock, and
// api[i] the time the API spent on the requests made for it. The worker's overhead is
// (result − published) − api. A command without a result (result[i] == 0) is left out and
// counted in missing.
func overheads(published, result []int64, api []time.Duration) (over []time.Duration, missing int) {
	over = make([]time.Duration, 0, len(published))
	for i := range published {
		if result[i] == 0 {
			missing++
			continue
		}
		over = append(over, time.Duration(result[i]-published[i])-api[i])
	}
	return over, missing
}

// span returns the first publish and the last result of the commands that have a result, and how
// many have one.
func span(published, result []int64) (first, last int64, n int) {
	first = math.MaxInt64
	for i := range published {
		if result[i] == 0 {
			continue
		}
		n++
		first = min(first, published[i])
		last = max(last, result[i])
	}
	if n == 0 {
		return 0, 0, 0
	}
	return first, last, n
}

// rate returns n events over d, per second; 0 when d is not positive.
func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// due returns how many of total messages a publisher pacing at perSecond should have published
// elapsed after its start: message i (from 0) is due at i/perSecond, so one at once.
func due(elapsed time.Duration, perSecond float64, total int) int {
	if elapsed < 0 || total <= 0 {
		return 0
	}
	n := int(elapsed.Seconds()*perSecond) + 1
	return min(n, total)
}

// reservationOfPath returns the reservation UUID of an API request path
// (/api/v1/connect/reservations/<action>/<uuid>), "" for any other path.
func reservationOfPath(path string) string {
	rest, ok := strings.CutPrefix(path, "/api/v1/connect/reservations/")
	if !ok {
		return ""
	}
	action, uuid, ok := strings.Cut(rest, "/")
	if !ok || action == "history" || uuid == "" || strings.Contains(uuid, "/") {
		return ""
	}
	return uuid
}

// Row is one line of the result table.
type Row struct {
	Scenario string  `json:"scenario"`
	Figure   string  `json:"figure"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Shown    string  `json:"shown"`            // the value as printed
	Target   string  `json:"target,omitempty"` // "" for figures shown for context
	Met      *bool   `json:"met,omitempty"`    // nil where there is no target
	Note     string  `json:"note,omitempty"`
}

// met renders a Row's Met column.
func (r Row) met() string {
	switch {
	case r.Met == nil:
		return "-"
	case *r.Met:
		return "yes"
	default:
		return "NO"
	}
}

// info is a row without target.
func info(scenario, figure string, v float64, unit, shown string) Row {
	return Row{Scenario: scenario, Figure: figure, Value: v, Unit: unit, Shown: shown}
}

// atLeast is a row whose target is v ≥ want.
func atLeast(scenario, figure string, v float64, unit, shown string, want float64, target string) Row {
	ok := v >= want
	return Row{Scenario: scenario, Figure: figure, Value: v, Unit: unit, Shown: shown, Target: target, Met: &ok}
}

// below is a row whose target is v < limit.
func below(scenario, figure string, v float64, unit, shown string, limit float64, target string) Row {
	ok := v < limit
	return Row{Scenario: scenario, Figure: figure, Value: v, Unit: unit, Shown: shown, Target: target, Met: &ok}
}

// atMost is a row whose target is v ≤ limit.
func atMost(scenario, figure string, v float64, unit, shown string, limit float64, target string) Row {
	ok := v <= limit
	return Row{Scenario: scenario, Figure: figure, Value: v, Unit: unit, Shown: shown, Target: target, Met: &ok}
}

// ms renders a duration in milliseconds: three decimals below 1 ms, two above.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	if d > -time.Millisecond && d < time.Millisecond {
		return fmt.Sprintf("%.3f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

// msValue is a duration in milliseconds, for a Row's Value.
func msValue(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// writeTable prints rows as an aligned table with a header. A row's note is marked [k] after its
// figure and printed under the table.
func writeTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tFIGURE\tVALUE\tTARGET\tMET?")
	var notes []string
	for _, r := range rows {
		target := r.Target
		if target == "" {
			target = "-"
		}
		figure := r.Figure
		if r.Note != "" {
			notes = append(notes, r.Note)
			figure += fmt.Sprintf(" [%d]", len(notes))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Scenario, figure, r.Shown, target, r.met())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
	}
	for i, n := range notes {
		if _, err := fmt.Fprintf(w, "[%d] %s\n", i+1, n); err != nil {
			return err
		}
	}
	return nil
}

// summary counts the rows that have a target and those that met it.
func summary(rows []Row) (targets, met int) {
	for _, r := range rows {
		if r.Met != nil {
			targets++
			if *r.Met {
				met++
			}
		}
	}
	return targets, met
}

// median is the middle of v (the upper middle of an even count), 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	return s[len(s)/2]
}
