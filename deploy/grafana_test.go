package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The Grafana dashboard under grafana/.

const dashboardFile = "grafana/frontpay-worker.json"

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos *struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr         string `json:"expr"`
		RefID        string `json:"refId"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// variable is a dashboard's template variable.
type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Definition string          `json:"definition"`
	Query      json.RawMessage `json:"query"`
	Multi      bool            `json:"multi"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
}

// TestDashboard: the dashboard is Grafana JSON whose every query reads series the worker
// exposes, and every metric of internal/metrics is on it. Its variables namespace and merchant
// choose several or all of their label's values, and every query filters by them wherever the
// series it reads have the label.
func TestDashboard(t *testing.T) {
	series := exposedSeries(t)
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID           string  `json:"uid"`
		Title         string  `json:"title"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []variable `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("%s: uid %q title %q schemaVersion %d", dashboardFile, d.UID, d.Title, d.SchemaVersion)
	}
	variables := map[string]string{}
	for _, v := range d.Templating.List {
		variables[v.Name] = v.Type
	}
	if variables["datasource"] != "datasource" {
		t.Errorf("%s: no datasource variable", dashboardFile)
	}
	// The filters: each a variable named like its label, a query of the label's values, several
	// at once or All, which is .* so that it also matches the empty merchant of a one-merchant
	// deployment.
	filters := []string{"namespace", "merchant"}
	hasLabel := func(metric, label string) bool { return series[metric][label] || slices.Contains(targetLabels, label) }
	labelValues := regexp.MustCompile(`^label_values\((.+), *(\w+)\)$`)
	for _, label := range filters {
		i := slices.IndexFunc(d.Templating.List, func(v variable) bool { return v.Name == label })
		if i < 0 {
			t.Errorf("%s: no variable %s", dashboardFile, label)
			continue
		}
		v := d.Templating.List[i]
		if v.Type != "query" || !v.Multi || !v.IncludeAll || v.AllValue != ".*" {
			t.Errorf("%s: variable %s: type %q, multi %v, includeAll %v, allValue %q; want a query, multi, with All as .*",
				dashboardFile, label, v.Type, v.Multi, v.IncludeAll, v.AllValue)
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil || q.Query != v.Definition {
			t.Errorf("%s: variable %s: its query %s is not its definition %q", dashboardFile, label, v.Query, v.Definition)
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil || m[2] != label {
			t.Errorf("%s: variable %s: %q is not label_values(<series>, %s)", dashboardFile, label, v.Definition, label)
			continue
		}
		for _, problem := range series.check(m[1]) {
			t.Errorf("%s: variable %s: %s", dashboardFile, label, problem)
		}
		if ref, err := parseProm(m[1]); err == nil {
			for name := range ref.metrics {
				if !hasLabel(name, label) {
					t.Errorf("%s: variable %s: %s has no label %s", dashboardFile, label, name, label)
				}
			}
		}
	}
	used := map[string]bool{}
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(panels []panel) {
		for _, p := range panels {
			if ids[p.ID] || p.ID == 0 {
				t.Errorf("%s: panel %q: id %d is zero or not unique", dashboardFile, p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: panel %q: no or a bad gridPos", dashboardFile, p.Title)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", dashboardFile, p.Title)
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: panel %q does not use the datasource variable", dashboardFile, p.Title)
			}
			refIDs := map[string]bool{}
			for _, q := range p.Targets {
				if refIDs[q.RefID] || q.RefID == "" {
					t.Errorf("%s: panel %q: refId %q is empty or not unique", dashboardFile, p.Title, q.RefID)
				}
				refIDs[q.RefID] = true
				for _, problem := range series.check(q.Expr) {
					t.Errorf("%s: panel %q: %s", dashboardFile, p.Title, problem)
				}
				ref, err := parseProm(q.Expr)
				if err != nil {
					continue
				}
				for m := range ref.metrics {
					used[m] = true
				}
				for _, sel := range ref.selectors {
					for _, label := range filters {
						if hasLabel(sel.metric, label) && !sel.has(label, "=~", "$"+label) {
							t.Errorf("%s: panel %q: %s does not filter by %s=~\"$%s\"", dashboardFile, p.Title, sel.metric, label, label)
						}
					}
				}
				for _, l := range regexp.MustCompile(`\{\{ *([a-zA-Z_]+) *\}\}`).FindAllStringSubmatch(q.LegendFormat, -1) {
					if !slices.Contains(ref.grouping, l[1]) {
						t.Errorf("%s: panel %q: legend {{%s}} is not a label the query keeps", dashboardFile, p.Title, l[1])
					}
				}
			}
		}
	}
	walk(d.Panels)
	for _, name := range sortedKeys(series) {
		if !strings.HasPrefix(name, "frontpay_") {
			continue
		}
		family := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !used[name] && !used[family+"_bucket"] && !used[family+"_count"] && !used[family+"_sum"] && !used[family] {
			t.Errorf("%s: no panel shows %s", dashboardFile, name)
		}
	}
}
