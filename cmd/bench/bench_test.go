package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * time.Millisecond // 100ms … 1ms, unsorted
	}
	for _, tc := range []struct {
		name string
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 50, 7 * time.Millisecond},
		{"one p99", ms(7), 99, 7 * time.Millisecond},
		{"p0 is the minimum", ms(3, 1, 2), 0, time.Millisecond},
		{"p100 is the maximum", ms(3, 1, 2), 100, 3 * time.Millisecond},
		{"median of odd", ms(5, 1, 4, 2, 3), 50, 3 * time.Millisecond},
		{"median of even: the lower middle", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p50 of 100", hundred, 50, 50 * time.Millisecond},
		{"p99 of 100", hundred, 99, 99 * time.Millisecond},
		{"p99 of 10: the maximum", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"negative values", ms(-2, 5, -1), 50, -time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := slices.Clone(tc.ds)
			if got := percentile(tc.ds, tc.p); got != tc.want {
				t.Errorf("percentile(%v, %g) = %v, want %v", tc.ds, tc.p, got, tc.want)
			}
			if !slices.Equal(before, tc.ds) {
				t.Errorf("percentile changed its input: %v → %v", before, tc.ds)
			}
		})
	}
}

func TestOverheads(t *testing.T) {
	ms := int64(time.Millisecond)
	published := []int64{10 * ms, 20 * ms, 30 * ms, 40 * ms}
	result := []int64{15 * ms, 0, 38 * ms, 41 * ms} // the second has no result
	api := []time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond}
	over, missing := overheads(published, result, api)
	want := []time.Duration{2 * time.Millisecond, 6 * time.Millisecond, -time.Millisecond}
	if missing != 1 || !slices.Equal(over, want) {
		t.Fatalf("overheads = %v, %d missing; want %v, 1 missing", over, missing, want)
	}

	first, last, n := span(published, result)
	if first != 10*ms || last != 41*ms || n != 3 {
		t.Fatalf("span = %d, %d, %d", first, last, n)
	}
	if first, last, n := span(published, make([]int64, 4)); first != 0 || last != 0 || n != 0 {
		t.Fatalf("span without results = %d, %d, %d", first, last, n)
	}
}

func TestRateAndDue(t *testing.T) {
	if r := rate(5000, 2*time.Second); r != 2500 {
		t.Errorf("rate = %g", r)
	}
	if r := rate(10, 0); r != 0 {
		t.Errorf("rate over no time = %g", r)
	}
	for _, tc := range []struct {
		elapsed time.Duration
		rate    float64
		total   int
		want    int
	}{
		{0, 1000, 100, 1},                       // the first at once
		{999 * time.Microsecond, 1000, 100, 1},  // the second is due at 1ms
		{time.Millisecond, 1000, 100, 2},        //
		{50 * time.Millisecond, 1000, 100, 51},  //
		{time.Second, 1000, 100, 100},           // never more than total
		{-time.Millisecond, 1000, 100, 0},       //
		{time.Second, 2500, 100000, 2501},       //
		{10 * time.Second, 2500, 100000, 25001}, //
		{time.Second, 1000, 0, 0},               //
	} {
		if got := due(tc.elapsed, tc.rate, tc.total); got != tc.want {
			t.Errorf("due(%v, %g, %d) = %d, want %d", tc.elapsed, tc.rate, tc.total, got, tc.want)
		}
	}
}

func TestReservationOfPath(t *testing.T) {
	for path, want := range map[string]string{
		"/api/v1/connect/reservations/capture/RES123":   "RES123",
		"/api/v1/connect/reservations/details/RES123":   "RES123",
		"/api/v1/connect/reservations/submit":           "",
		"/api/v1/connect/reservations/history/1/2":      "",
		"/api/v1/connect/reservations/capture/":         "",
		"/api/v1/connect/reservations/capture/RES1/x":   "",
		"/api/v1/connect/orders/resend/ORD1":            "",
		"/sandbox/reservations/RES1/pay":                "",
		"/api/v1/connect/reservations/refund/RES-9_a.b": "RES-9_a.b",
	} {
		if got := reservationOfPath(path); got != want {
			t.Errorf("reservationOfPath(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestTable(t *testing.T) {
	rows := []Row{
		atLeast("throughput", "worker throughput", 6000, "commands/s", "6000/s", 5000, "≥ 5000/s"),
		atLeast("throughput", "worker / bare", 40, "%", "40.0%", 50, "≥ 50%"),
		below("throughput", "overhead p99", 4.99, "ms", ms(4990*time.Microsecond), 5, "< 5 ms"),
		below("memory", "peak RSS", 100, "MiB", "100.0 MiB", 100, "< 100 MiB"),
		atMost("ratelimit", "429 answers", 0, "answers", "0", 0, "0"),
		info("latency", "concurrency bound", 1280, "commands/s", "1280/s"),
	}
	rows[0].Note = "20000 captures"
	wantMet := []string{"yes", "NO", "yes", "NO", "yes", "-"}
	for i, r := range rows {
		if r.met() != wantMet[i] {
			t.Errorf("row %d (%s) met %s, want %s", i, r.Figure, r.met(), wantMet[i])
		}
	}
	if targets, met := summary(rows); targets != 5 || met != 3 {
		t.Errorf("summary = %d targets, %d met", targets, met)
	}

	var b bytes.Buffer
	if err := writeTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 1+len(rows)+2 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	header := lines[0]
	for _, col := range []string{"SCENARIO", "FIGURE", "VALUE", "TARGET", "MET?"} {
		if !strings.Contains(header, col) {
			t.Errorf("header %q lacks %s", header, col)
		}
	}
	// Columns line up: every row's value starts where the header's VALUE does.
	at := strings.Index(header, "VALUE")
	for i, r := range rows {
		line := lines[1+i]
		if !strings.HasPrefix(line[at:], r.Shown) {
			t.Errorf("row %d: value not under VALUE:\n%s\n%s", i, header, line)
		}
		if !strings.HasSuffix(line, r.met()) {
			t.Errorf("row %d does not end with %q: %q", i, r.met(), line)
		}
	}
	if !strings.Contains(lines[1], "worker throughput [1]") || lines[len(lines)-1] != "[1] 20000 captures" {
		t.Errorf("note not marked and listed:\n%s", b.String())
	}
	if !strings.Contains(lines[6], "-  ") { // a row without target shows "-"
		t.Errorf("info row: %q", lines[6])
	}
}

func TestMs(t *testing.T) {
	for d, want := range map[time.Duration]string{
		42 * time.Microsecond:   "0.042 ms",
		4990 * time.Microsecond: "4.99 ms",
		1500 * time.Millisecond: "1500.00 ms",
		-300 * time.Microsecond: "-0.300 ms",
	} {
		if got := ms(d); got != want {
			t.Errorf("ms(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestParseScenarios(t *testing.T) {
	for in, want := range map[string]string{
		"all":                 "throughput,idle,tracing,onemerchant,latency,ratelimit,memory,failover,fairness",
		"failover,idle":       "idle,failover",
		"latency,throughput":  "throughput,latency",
		" memory , ratelimit": "ratelimit,memory",
		"memory,memory":       "memory",
	} {
		got, err := parseScenarios(in)
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("parseScenarios(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ",", "speed", "throughput,speed"} {
		if _, err := parseScenarios(bad); err == nil {
			t.Errorf("parseScenarios(%q) accepted", bad)
		}
	}
}

func TestMachineFacts(t *testing.T) {
	cpuinfo := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	if got := cpuModel(cpuinfo); got != "AMD EPYC 7B13" {
		t.Errorf("cpuModel = %q", got)
	}
	if got := cpuModel("processor : 0\n"); got != "unknown" {
		t.Errorf("cpuModel without model name = %q", got)
	}
	status := []byte("Name:\tfrontpay-worker\nVmPeak:\t 1802224 kB\nVmHWM:\t   45328 kB\nVmRSS:\t   40112 kB\n")
	if hwm, rss := statusField(status, "VmHWM"), statusField(status, "VmRSS"); hwm != 45328 || rss != 40112 {
		t.Errorf("VmHWM %d, VmRSS %d", hwm, rss)
	}
	if v := statusField(status, "VmSwap"); v != 0 {
		t.Errorf("absent field = %d", v)
	}
	if got := commandLine([]string{"-json", "out.json", "-scenarios", "a b"}); got != "go run ./cmd/bench -json out.json -scenarios 'a b'" {
		t.Errorf("commandLine = %s", got)
	}
}

func TestStatusText(t *testing.T) {
	if got := statusText(map[int]int{429: 1, 200: 480}); got != "200 ×480, 429 ×1" {
		t.Errorf("statusText = %q", got)
	}
	if got := statusText(nil); got != "none" {
		t.Errorf("statusText(nil) = %q", got)
	}
}

// TestScenariosSmall runs the scenarios of several merchants at a size that takes seconds: the
// cost of a merchants file of one merchant, and fairness on three replicas with a backlog, a
// merchant answered 503, one answered 429 and a steady one. Their speed targets are not
// checked here (speed belongs in the benchmark itself); that every window command is answered
// and no token goes over its budget are.
//
// Fairness runs with one place at the API per merchant (-concurrency 1), enough for a budget of
// 240 calls a minute: a replica that stops first lets the commands waiting for the rate limit
// go, and those of the merchant answered 429 go one per Retry-After (1 s), so that with the
// default 64 places the replica that owned it took some 4 s to stop.
func TestScenariosSmall(t *testing.T) {
	common := []string{"-n", "50", "-onemerchant-runs", "1", "-fairness-merchants", "4",
		"-fairness-backlog", "8", "-fairness-window", "1s", "-fairness-settle", "300ms", "-phase-timeout", "1m"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, sc := range []struct {
		name     string
		args     []string
		scenario func(context.Context, *config) ([]Row, error)
	}{
		{"onemerchant", nil, oneMerchant},
		{"fairness", []string{"-concurrency", "1"}, fairness},
	} {
		name := sc.name
		t.Run(name, func(t *testing.T) {
			cfg, err := parseFlags(append(slices.Clone(common), sc.args...))
			if err != nil {
				t.Fatal(err)
			}
			rows, err := sc.scenario(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := writeTable(&b, rows); err != nil {
				t.Fatal(err)
			}
			t.Logf("\n%s", b.String())
			if targets, _ := summary(rows); targets < 2 {
				t.Errorf("%d targets", targets)
			}
			for _, r := range rows {
				if r.Scenario != name {
					t.Errorf("row of scenario %q: %+v", r.Scenario, r)
				}
				if strings.HasPrefix(r.Figure, "failed") || strings.HasPrefix(r.Figure, "most API calls to one token") {
					if r.Met == nil || !*r.Met {
						t.Errorf("%s: %s (%s)", r.Figure, r.Shown, r.Note)
					}
				}
			}
		})
	}
}
