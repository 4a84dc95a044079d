package deploy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"
)

// The Prometheus alerts under prometheus/.

type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval"`
		Rules    []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert         string            `json:"alert"`
	Record        string            `json:"record"`
	Expr          string            `json:"expr"`
	For           string            `json:"for"`
	KeepFiringFor string            `json:"keep_firing_for"`
	Labels        map[string]string `json:"labels"`
	Annotations   map[string]string `json:"annotations"`
}

const alertsFile = "prometheus/alerts.yaml"

func alertRules(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var rules []rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s has no rules", alertsFile)
	}
	return rules
}

// TestAlerts: every alert reads series the worker exposes, has a severity, a summary, a
// description and a runbook section that exists, and together they watch what the operators
// must hear of. Every alert on series labelled merchant fires per merchant: each of its
// aggregations keeps the label (by (merchant, ...)), and its summary names the merchant.
func TestAlerts(t *testing.T) {
	series := exposedSeries(t)
	rules := alertRules(t)
	job := worker(t, kubernetesBuilds[0])
	svc := only(t, job.objs, "Service").Metadata.Name
	seen := map[string]bool{}
	var all strings.Builder
	for _, r := range rules {
		if r.Alert == "" {
			t.Errorf("%s: a rule that is no alert: %q", alertsFile, r.Record)
			continue
		}
		if seen[r.Alert] {
			t.Errorf("%s: alert %s twice", alertsFile, r.Alert)
		}
		seen[r.Alert] = true
		all.WriteString(r.Expr + "\n")
		for _, p := range series.check(r.Expr) {
			t.Errorf("%s: %s: %s", alertsFile, r.Alert, p)
		}
		if ref, err := parseProm(r.Expr); err == nil {
			for _, j := range ref.values["job"] {
				if j != svc {
					t.Errorf("%s: %s: job %q, but the ServiceMonitor's job is the Service's name %q", alertsFile, r.Alert, j, svc)
				}
			}
			if series.reads(ref, "merchant") {
				if len(ref.aggregations) == 0 {
					t.Errorf("%s: %s aggregates nothing: aggregate by (merchant, ...)", alertsFile, r.Alert)
				}
				for _, a := range ref.aggregations {
					if a.clause != "by" || !slices.Contains(a.labels, "merchant") {
						how := a.op
						if a.clause != "" {
							how += " " + a.clause + " (" + strings.Join(a.labels, ", ") + ")"
						}
						t.Errorf("%s: %s: %s does not keep the label merchant: aggregate by (merchant, ...)", alertsFile, r.Alert, how)
					}
				}
				if !strings.Contains(r.Annotations["summary"], "$labels.merchant") {
					t.Errorf("%s: %s: the summary does not name the merchant ($labels.merchant)", alertsFile, r.Alert)
				}
			}
		}
		if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
			t.Errorf("%s: %s: severity %q, want critical, warning or info", alertsFile, r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: %s has no %s annotation", alertsFile, r.Alert, a)
			}
		}
		if rb := r.Annotations["runbook_url"]; rb != "" {
			if file, ok := strings.CutPrefix(rb, repositoryFiles); !ok {
				t.Errorf("%s: %s: runbook_url %q is not a file of %s", alertsFile, r.Alert, rb, repositoryFiles)
			} else if err := checkAnchor(file); err != nil {
				t.Errorf("%s: %s: runbook_url: %v", alertsFile, r.Alert, err)
			}
		}
		if r.For != "" {
			if _, err := model.ParseDuration(r.For); err != nil {
				t.Errorf("%s: %s: for %q: %v", alertsFile, r.Alert, r.For, err)
			}
		}
	}
	mod, err := os.ReadFile(goMod)
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^module (\S+)`).FindSubmatch(mod); m == nil || "https://"+string(m[1])+"/blob/main/" != repositoryFiles {
		t.Errorf("the runbooks' base %s is not the module's repository", repositoryFiles)
	}
	exprs := all.String()
	for _, watched := range []string{
		"frontpay_consumer_oldest_pending_seconds", "frontpay_consumer_pending", "frontpay_consumer_redelivered",
		"frontpay_dead_letters_total", `reason="outcome_unknown"`, `reason="unauthorized"`,
		"frontpay_api_request_duration_seconds_count{status=~\"401", "frontpay_rate_limit_wait_seconds_total",
		"frontpay_consumer_lag_up", "up{", "frontpay_commands_unworkable_total", "frontpay_takeovers_total",
	} {
		if !strings.Contains(exprs, watched) {
			t.Errorf("%s: no alert watches %s", alertsFile, watched)
		}
	}
}

// repositoryFiles is where the project's files are on the web: the base of the alerts'
// runbook_url (the module's path).
const repositoryFiles = "https://github.com/nordpay/frontpay-worker/blob/main/"

// headingRe finds the headings of a Markdown file.
var headingRe = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`)

// checkAnchor checks a "deploy/README.md#anchor" link: the file exists and has the heading.
func checkAnchor(link string) error {
	file, anchor, ok := strings.Cut(strings.TrimSpace(link), "#")
	if !ok || anchor == "" {
		return fmt.Errorf("%q is not path#anchor", link)
	}
	b, err := os.ReadFile(filepath.Join("..", file))
	if err != nil {
		return err
	}
	for _, h := range headingRe.FindAllStringSubmatch(string(b), -1) {
		if githubAnchor(h[1]) == anchor {
			return nil
		}
	}
	return fmt.Errorf("%s has no heading with the anchor #%s", file, anchor)
}

// githubAnchor is the anchor GitHub gives a heading.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.ReplaceAll(heading, "`", "")) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestAlertsPromtool checks the rules and runs their unit tests with promtool, where it is
// installed (Debian: apt-get install prometheus).
func TestAlertsPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian's prometheus package has it)")
	}
	for _, args := range [][]string{
		{"check", "rules", alertsFile},
		{"test", "rules", "prometheus/alerts_test.yaml"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, promtool, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
