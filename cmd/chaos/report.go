package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/schemas"
)

// maxShown bounds the problems printed per check; the work directory holds the rest.
const maxShown = 12

func printSummary(out io.Writer, s *summary, kept bool) {
	v := s.Verification
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tcommands\tpublished\tsucceeded\tfailed\toutcome_unknown (effect/none)\teffects\tdropped answers\tkeys >1 effect\t")
	var ops []frontpay.Operation
	for op := range v.Ops {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	var total OpFigures
	for _, op := range ops {
		f := v.Ops[op]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d (%d/%d)\t%d\t%d\t%d\t\n", op, f.Commands, f.Copies, f.Succeeded, failures(f.Failed),
			f.UnknownWithEffect+f.UnknownWithout, f.UnknownWithEffect, f.UnknownWithout, f.Effects, s.Dropped[string(op)], f.Repeated)
		total.Commands += f.Commands
		total.Copies += f.Copies
		total.Succeeded += f.Succeeded
		total.Effects += f.Effects
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t\t\t%d\t\t\t\n", total.Commands, total.Copies, total.Succeeded, total.Effects)
	_ = tw.Flush()

	m := s.Metrics
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", name, fmt.Sprintf(format, args...))
	}
	row("duration", "%s (build %s)", s.Duration.Round(100*time.Millisecond), s.Build.Round(100*time.Millisecond))
	row("commands", "%d keys, %d duplicate publications, seed %d", s.Commands, s.Duplicates, s.Config.Seed)
	if mf := s.Merchants; mf != nil {
		merchantRows(row, mf)
	} else {
		row("worker kills", "%d SIGKILL of %d requested, every %s; %d worker processes in all", s.Kills, s.Config.Kills, s.Config.KillEvery, s.Incarnations)
		row("NATS restarts", "%d (SIG%s), down %s from stop to ready", s.NATSRestarts, strings.ToUpper(s.Config.NATSSignal), s.NATSDown.Round(time.Millisecond))
	}
	for _, op := range slices.Sorted(maps.Keys(s.Faults)) {
		row("fault set on "+strings.TrimPrefix(string(op), "reservation."), "%s", describeFault(s.Faults[op]))
	}
	row("faults seen by workers", "%.0f answers 5xx, %.0f answers 429, %.0f attempts without answer (of %.0f attempts; metrics, killed workers up to their last scrape)",
		m["answers 5xx"], m["answers 429"], m["no answer"], m["api attempts"])
	row("effects with dropped answer", "%d (ledger)", sum(s.Dropped))
	row("retries", "%.0f (metrics)", m["retries"])
	row("ambiguous outcomes", "%.0f (metrics)", m["ambiguous"])
	row("read-backs", "%.0f applied, %.0f not applied, %.0f undecided (metrics); %d \"read back\" log lines",
		m["readback applied"], m["readback not_applied"], m["readback undecided"], s.Logs["read back"])
	row("take-overs", "%d \"took over command\" log lines", s.Logs["took over command"])
	row("idempotency hits", "%.0f (metrics)", m["idempotency hits"])
	row("rate-limit waits", "%.0f calls waited %.1fs in all (metrics: FRONTPAY_API_RATE spacing, and each 429's Retry-After pauses every call of its process)",
		m["rate waits"], m["rate wait seconds"])
	for _, op := range ops {
		if n := v.Ops[op].UnknownWithout; n > 0 {
			row("unknown, nothing applied", "%d %s commands ended outcome_unknown with no effect in the ledger", n, op)
		}
	}
	row("worker log", "%d errors, %d \"command not settled\", %d \"NATS disconnected\"",
		s.Logs["(level ERROR)"], s.Logs["command not settled, will be redelivered"], s.Logs["NATS disconnected"])
	for _, l := range s.Latency {
		row("latency "+strings.TrimPrefix(string(l.op), "reservation."), "p50 %s, p99 %s, max %s (%d commands, publish to result)",
			l.p50.Round(time.Millisecond), l.p99.Round(time.Millisecond), l.max.Round(time.Millisecond), l.n)
	}
	for _, p := range s.Slowest {
		row("slow", "%s %s %s on %s: %s", p.Key, p.Op, p.published.Format("15:04:05.000"), p.Reservation,
			p.answered.Sub(p.published).Round(time.Millisecond))
	}
	_ = tw.Flush()

	fmt.Fprintln(out)
	failed := 0
	for _, c := range v.Checks {
		mark := "PASS"
		if !c.OK() {
			mark = "FAIL"
			failed++
		}
		fmt.Fprintf(out, "%s  %s", mark, c.Name)
		if !c.OK() {
			fmt.Fprintf(out, ": %d", len(c.Problems))
		}
		fmt.Fprintln(out)
		for i, p := range c.Problems {
			if i == maxShown {
				fmt.Fprintf(out, "      … %d more (commands.json, results.jsonl, ledger.json in %s)\n", len(c.Problems)-maxShown, s.Dir)
				break
			}
			fmt.Fprintf(out, "      - %s\n", p)
		}
	}
	for _, p := range s.Problems {
		fmt.Fprintf(out, "NOTE  %s\n", p)
	}
	if failed > 0 {
		fmt.Fprintf(out, "\n%d of %d checks failed.", failed, len(v.Checks))
	} else {
		fmt.Fprintf(out, "\nAll %d checks passed.", len(v.Checks))
	}
	if kept {
		fmt.Fprintf(out, " Logs, ledger, results and commands are in %s", s.Dir)
	}
	fmt.Fprintf(out, "\nscenario %s: %d passed, %d failed\n", s.Config.Scenario, len(v.Checks)-failed, failed)
}

// merchantRows are the merchants scenario's figures.
func merchantRows(row func(name, format string, args ...any), f *merchantFigures) {
	row("merchants", "%d on %d replicas, %d requests a minute per token (the sandbox's limit and the merchants file's rate)", f.Merchants, f.Replicas, f.Rate)
	row("spreading", "%s (owners' reports once settled)", loads(f.Settled))
	if f.Victim >= 0 {
		row("kill", "replica %d, owning %d merchants, SIGKILLed after %d of %d phase-2 commands were published; not restarted",
			f.Victim, f.Lost, f.KilledAfter, f.Moves)
		took := "not within the deadline"
		if f.TakeoverIn > 0 {
			took = "seen " + f.TakeoverIn.Round(100*time.Millisecond).String() + " after the SIGKILL"
		}
		row("take-over", "%s (owners' reports: the dead replica's merchants since the kill), %s", loads(f.Survivors), took)
	}
	row("tokens", "%d requests on %d merchants' tokens; busiest minute %d requests (%s); %d refused by the sandbox's limit",
		f.Requests, f.Tokens, f.Busiest, f.BusiestToken, f.Limited)
}

// loads lists how many merchants each replica owns (-1: a process of no replica).
func loads(m map[int]int) string {
	if len(m) == 0 {
		return "no owner reported"
	}
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(m)) {
		name := fmt.Sprintf("r%d", r)
		if r < 0 {
			name = "a process of no replica"
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, m[r]))
	}
	return strings.Join(parts, ", ")
}

func failures(m map[schemas.Reason]int) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	n := 0
	for _, r := range schemas.Reasons() {
		if m[r] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", r, m[r]))
			n += m[r]
		}
	}
	return fmt.Sprintf("%d (%s)", n, strings.Join(parts, ", "))
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// describeFault says what the sandbox does wrong for one operation.
func describeFault(f sandbox.Fault) string {
	var parts []string
	pct := func(share float64, what string) {
		if share > 0 {
			parts = append(parts, fmt.Sprintf("%.3g%% %s", share*100, what))
		}
	}
	status := f.ErrorStatus
	if status == 0 {
		status = 503
	}
	pct(f.ErrorShare, fmt.Sprintf("answered %d", status))
	pct(f.TooManyShare, "answered 429 Retry-After 1s")
	pct(f.DropBeforeShare, "dropped before the effect")
	what := "dropped after the effect"
	if f.HangAfterEffect > 0 {
		what += fmt.Sprintf(" (held %s)", f.HangAfterEffect)
	}
	pct(f.DropShare, what)
	if f.Latency > 0 {
		parts = append(parts, fmt.Sprintf("+%s latency", f.Latency))
	}
	return strings.Join(parts, ", ")
}
