package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nordpay/frontpay-worker/internal/proc"
)

// worker is one incarnation of a worker replica.
type worker struct {
	replica, incarnation int
	proc                 *proc.Proc

	mu      sync.Mutex
	http    string // address of /metrics, known once ready
	metrics string // the last scrape
}

// readyAddr reads the worker's HTTP address from its "worker ready" log line.
func readyAddr(logPath string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), []byte(`"worker ready"`)) {
			continue
		}
		var line struct {
			Msg  string `json:"msg"`
			HTTP string `json:"http"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "worker ready" {
			return line.HTTP
		}
	}
	return ""
}

var scrapeClient = &http.Client{Timeout: 2 * time.Second}

// scrape reads the worker's /metrics and keeps it; a failed scrape keeps the last one.
func (w *worker) scrape() {
	w.mu.Lock()
	addr := w.http
	w.mu.Unlock()
	if addr == "" {
		return
	}
	resp, err := scrapeClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return
	}
	w.mu.Lock()
	w.metrics = string(b)
	w.mu.Unlock()
}

func (w *worker) lastMetrics() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.metrics
}

// metricSum adds up the samples of family in Prometheus text, those whose labels match every
// pair of match (a value ending in "*" matches as a prefix).
func metricSum(text, family string, match map[string]string) float64 {
	var sum float64
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, family) {
			continue
		}
		rest := line[len(family):]
		labels := map[string]string{}
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			for _, pair := range splitLabels(rest[1:end]) {
				k, v, ok := strings.Cut(pair, "=")
				if ok {
					labels[k], _ = strconv.Unquote(v)
				}
			}
			rest = rest[end+1:]
		} else if !strings.HasPrefix(rest, " ") {
			continue // another family with this one's name as prefix
		}
		ok := true
		for k, want := range match {
			got, has := labels[k]
			if p, prefix := strings.CutSuffix(want, "*"); prefix {
				ok = ok && has && strings.HasPrefix(got, p)
			} else {
				ok = ok && has && got == want
			}
		}
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if f, err := strconv.ParseFloat(fields[0], 64); err == nil {
			sum += f
		}
	}
	return sum
}

// splitLabels splits `a="x",b="y,z"` at the commas between pairs.
func splitLabels(s string) []string {
	var out []string
	inQuote, escaped, start := false, false, 0
	for i, r := range s {
		switch {
		case escaped:
			escaped = false
		case r == '\\':
			escaped = true
		case r == '"':
			inQuote = !inQuote
		case r == ',' && !inQuote:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// logCounts counts the messages of JSON log lines in a file, and the lines at level ERROR.
func logCounts(path string, into map[string]int) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		var line struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			into["(not JSON)"]++
			continue
		}
		into[line.Msg]++
		if line.Level == "ERROR" {
			into["(level ERROR)"]++
		}
	}
}
