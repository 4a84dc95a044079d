package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// deploy/README.md.

// TestReadme: every deploy/ path the README names exists.
func TestReadme(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("deploy/[A-Za-z0-9_./*-]*[A-Za-z0-9_*/]").FindAllString(string(b), -1) {
		p := filepath.Join("..", m)
		if strings.Contains(m, "*") {
			if found, _ := filepath.Glob(p); len(found) == 0 {
				t.Errorf("README.md: %s matches no file", m)
			}
			continue
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("README.md names %s: %v", m, err)
		}
	}
}

// TestReadmeAlerts: the README's "What to watch" table lists the alerts of alerts.yaml, in its
// order, each linked to its runbook here, with the windows, thresholds and "for" durations of its
// rule; and it takes rate() or increase() of counters only, never of a gauge.
func TestReadmeAlerts(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n### What to watch\n")
	if !ok {
		t.Fatal(`README.md has no section "What to watch"`)
	}
	section, _, _ = strings.Cut(section, "\n#")
	rowRe := regexp.MustCompile(`(?m)^\| \[(\w+)\]\(deploy/README\.md#([\w-]+)\) \|(.*)$`)
	rows := rowRe.FindAllStringSubmatch(section, -1)
	rules := alertRules(t)
	if len(rows) != len(rules) {
		t.Errorf("README.md lists %d alerts, %s has %d", len(rows), alertsFile, len(rules))
	}
	windowRe := regexp.MustCompile(`\[(\d+[smhd])\]|offset (\d+[smhd])`)
	compareRe := regexp.MustCompile(`(==|>|<) *(\d+(?:\.\d+)?)\b`)
	for i, r := range rules {
		if i >= len(rows) {
			break
		}
		name, anchor, row := rows[i][1], rows[i][2], rows[i][3]
		if name != r.Alert {
			t.Errorf("README.md: alert %d is %s, %s has %s", i+1, name, alertsFile, r.Alert)
			continue
		}
		if anchor != githubAnchor(name) {
			t.Errorf("README.md: %s links to #%s", name, anchor)
		} else if err := checkAnchor("deploy/README.md#" + anchor); err != nil {
			t.Errorf("README.md: %s: %v", name, err)
		}
		var want []string
		if r.For != "" {
			want = append(want, "for "+r.For)
		}
		for _, m := range windowRe.FindAllStringSubmatch(r.Expr, -1) {
			want = append(want, m[1]+m[2])
		}
		for _, m := range compareRe.FindAllStringSubmatch(r.Expr, -1) {
			want = append(want, m[1]+" "+m[2])
		}
		for _, w := range want {
			if !strings.Contains(row, w) {
				t.Errorf("README.md: the row of %s lacks %q of its rule: %s", name, w, row)
			}
		}
	}
	for _, m := range regexp.MustCompile(`\b(?:rate|irate|increase)\((\w+)`).FindAllStringSubmatch(section, -1) {
		if !regexp.MustCompile(`_(total|count|sum|bucket)$`).MatchString(m[1]) {
			t.Errorf("README.md: %s of %s, which is no counter: take deriv() of a gauge", m[0], m[1])
		}
	}
}
