package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one child process, its output going to a log file.
type proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set once done is closed
}

// startProc starts bin with args and env, stdout and stderr appended to logPath.
func startProc(name, logPath, bin string, args, env []string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits up to grace for the exit, then kills.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// freePort returns a TCP port on loopback that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// build compiles the nats-server and the worker into dir, from the module at root.
func build(ctx context.Context, root, dir string) (natsBin, workerBin string, err error) {
	natsBin, workerBin = filepath.Join(dir, "nats-server"), filepath.Join(dir, "frontpay-worker")
	for _, b := range []struct{ out, pkg string }{
		{natsBin, "github.com/nats-io/nats-server/v2"},
		{workerBin, "./cmd/frontpay-worker"},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.out, b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	return natsBin, workerBin, nil
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module: run from the frontpay-worker tree")
	}
	return filepath.Dir(gomod), nil
}

// baseEnv is the environment without any FRONTPAY_ or NATS_ variable of the caller.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FRONTPAY_") && !strings.HasPrefix(kv, "NATS_") {
			env = append(env, kv)
		}
	}
	return env
}

// waitFor polls cond every 50ms until it holds, ctx ends or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// worker is one incarnation of a worker replica.
type worker struct {
	replica, incarnation int
	proc                 *proc

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
