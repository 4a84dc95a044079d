package app

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
)

// sandboxToken is the token of the tests' sandboxes.
const sandboxToken = "sandbox-token"

// TestMain runs the tests with the goroutine-leak check: a test's workers (Main), servers and
// connections stop when it ends.
func TestMain(m *testing.M) { testworld.Main(m) }

// startMain runs the whole worker in this process, on an embedded NATS server, against the
// sandbox at apiURL, with the test configuration (m.Config) and Main changed by mods.
func startMain(t *testing.T, apiURL string, mods ...func(*Main)) *Main {
	t.Helper()
	cfg := &Config{
		APIURL: apiURL, APIToken: sandboxToken, APITimeout: 2 * time.Second, MaxAttempts: 2,
		RetryInitial: time.Millisecond, RetryMax: 10 * time.Millisecond, HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		Concurrency: 4, AckWait: time.Second, PinnedTTL: 3 * time.Second, DrainTimeout: time.Second, LeaseMargin: 100 * time.Millisecond,
		Replicas: 1, WorkerName: "test",
	}
	m := NewMain(cfg, slog.New(slog.DiscardHandler))
	m.EmbeddedAddr = "127.0.0.1:0"
	for _, mod := range mods {
		mod(m)
	}
	if err := m.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// newSandbox serves a sandbox without rate limit on a free port.
func newSandbox(t *testing.T) *testworld.API {
	t.Helper()
	return testworld.Sandbox(t, sandbox.Options{Token: sandboxToken, RateLimit: -1})
}

func TestProbes(t *testing.T) {
	m := startMain(t, newSandbox(t).URL)
	get := func(path string) int {
		resp, err := http.Get("http://" + m.HTTPAddr + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if h, r := get("/healthz"), get("/readyz"); h != 200 || r != 200 {
		t.Fatalf("healthz %d, readyz %d while running", h, r)
	}
	resp, err := http.Get("http://" + m.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, family := range []string{"frontpay_commands_total", "frontpay_consumer_pending", "frontpay_consumer_lag_up 1"} {
		if !strings.Contains(string(body), family) {
			t.Errorf("/metrics lacks %s", family)
		}
	}
	if c := get("/callbacks/frontpay"); c != http.StatusBadRequest {
		t.Errorf("a callback without parameters: %d", c)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if r := get("/readyz"); r == 200 {
		t.Fatalf("readyz %d after Close", r)
	}
}

// TestUntracedTookOver: a worker without a tracer answers a command as well, and TookOver is told
// when it becomes the owner of the one merchant's commands (""; the server pins it with the
// first command it delivers), as the metrics are.
func TestUntracedTookOver(t *testing.T) {
	took := make(chan string, 1)
	m := startMain(t, newSandbox(t).URL, func(m *Main) {
		m.Untraced = true
		m.TookOver = func(merchant string) {
			select {
			case took <- merchant:
			default:
			}
		}
	})
	if m.traces != nil {
		t.Error("an untraced worker set up tracing")
	}
	_, js := testworld.Connect(t, m.NATSURL)
	c := testworld.NewCommand(t, frontpay.ReservationDetails, map[string]any{"reservationUuid": "RES1"})
	testworld.Publish(t, js, c.Msg(""))
	testworld.WaitFor(t, func() bool {
		return slices.ContainsFunc(testworld.ReadStream(t, js, "FRONTPAY_RESULTS"), func(ev schemas.Event) bool { return ev.CausationID == c.ID })
	}, "the details command's result")
	select {
	case merchant := <-took:
		if merchant != "" {
			t.Errorf("took over the commands of merchant %q, want the one merchant (\"\")", merchant)
		}
	default:
		t.Error("TookOver was not told of the take-over")
	}
}

// TestHTTPServerLimits holds the HTTP server (probes, metrics, callbacks) to its limits: a
// client that sends its header slowly, or nothing at all, is cut off after ReadHeaderTimeout,
// and a header beyond MaxHeaderBytes is answered 431. The worker under test has its
// ReadHeaderTimeout lowered to 2 s, so that the cut-offs take no longer; its other limits are
// production's.
func TestHTTPServerLimits(t *testing.T) {
	t.Parallel()
	def := (&Main{}).httpServer(nil) // production's limits
	if def.ReadHeaderTimeout <= 0 || def.ReadHeaderTimeout > 10*time.Second || def.ReadTimeout <= 0 ||
		def.WriteTimeout <= 0 || def.IdleTimeout <= 0 || def.MaxHeaderBytes <= 0 || def.MaxHeaderBytes > 64<<10 {
		t.Fatalf("HTTP server limits: read header %s, read %s, write %s, idle %s, header bytes %d",
			def.ReadHeaderTimeout, def.ReadTimeout, def.WriteTimeout, def.IdleTimeout, def.MaxHeaderBytes)
	}
	const limit = 2 * time.Second
	m := startMain(t, newSandbox(t).URL, func(m *Main) { m.readHeaderTimeout = limit })
	srv := m.http
	if srv.ReadHeaderTimeout != limit || srv.ReadTimeout != def.ReadTimeout || srv.WriteTimeout != def.WriteTimeout ||
		srv.IdleTimeout != def.IdleTimeout || srv.MaxHeaderBytes != def.MaxHeaderBytes {
		t.Fatalf("the worker's HTTP server limits: read header %s (want %s), read %s, write %s, idle %s, header bytes %d",
			srv.ReadHeaderTimeout, limit, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}

	// cutOff sends what write sends, at its own pace, and returns how long the server kept the
	// connection open (from before it was made: the server's deadline is later) and what it
	// answered.
	cutOff := func(t *testing.T, write func(w io.Writer, stop <-chan struct{})) (time.Duration, string) {
		start := time.Now()
		conn, err := net.Dial("tcp", m.HTTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); write(conn, stop) }()
		_ = conn.SetReadDeadline(time.Now().Add(limit + 20*time.Second))
		answer, _ := io.ReadAll(conn) // until the server closes the connection
		took := time.Since(start)
		close(stop)
		_ = conn.Close()
		wg.Wait()
		return took, string(answer)
	}
	check := func(t *testing.T, took time.Duration, answer string) {
		t.Helper()
		if took < limit || took > limit+5*time.Second {
			t.Errorf("the connection was open %s, want about ReadHeaderTimeout (%s)", took.Round(time.Millisecond), limit)
		}
		if strings.Contains(answer, "200 OK") {
			t.Errorf("the slow request was served: %q", answer)
		}
	}
	t.Run("slow header", func(t *testing.T) {
		t.Parallel()
		took, answer := cutOff(t, func(w io.Writer, stop <-chan struct{}) {
			_, _ = io.WriteString(w, "GET /healthz HTTP/1.1\r\nHost: worker\r\n")
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(300 * time.Millisecond):
				}
				if _, err := fmt.Fprintf(w, "X-Slow-%d: %d\r\n", i, i); err != nil {
					return
				}
			}
		})
		check(t, took, answer)
	})
	t.Run("silent connection", func(t *testing.T) {
		t.Parallel()
		took, answer := cutOff(t, func(io.Writer, <-chan struct{}) {})
		check(t, took, answer)
	})
	t.Run("oversized header", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			size int
			want int
		}{
			{srv.MaxHeaderBytes / 2, http.StatusOK},
			{srv.MaxHeaderBytes + 8<<10, http.StatusRequestHeaderFieldsTooLarge},
			{1 << 20, http.StatusRequestHeaderFieldsTooLarge},
		} {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+m.HTTPAddr+"/healthz", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Big", strings.Repeat("a", tc.size))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("header of %d bytes: %v", tc.size, err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("header of %d bytes: %d, want %d", tc.size, resp.StatusCode, tc.want)
			}
		}
	})
	t.Run("many headers", func(t *testing.T) {
		t.Parallel()
		conn, err := net.Dial("tcp", m.HTTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(limit + 10*time.Second))
		w := bufio.NewWriter(conn)
		_, _ = io.WriteString(w, "GET /healthz HTTP/1.1\r\nHost: worker\r\n")
		for i := range 10000 {
			_, _ = fmt.Fprintf(w, "X-H-%d: v\r\n", i)
		}
		_, _ = io.WriteString(w, "\r\n")
		_ = w.Flush()
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || !strings.Contains(line, strconv.Itoa(http.StatusRequestHeaderFieldsTooLarge)) {
			t.Errorf("10000 headers: %q, %v; want 431", line, err)
		}
	})
}
