package status

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/testworld"
)

// TestForgedCallbacksKeepToTheirShare: a flood of forged callbacks (no secret) reads the API
// only within the callbacks' share of FRONTPAY_API_RATE, however many arrive, so the commands'
// calls through the same limiter keep the rest (issue 11, item 7). Calls are counted at the
// sandbox: while the commands make theirs, the forged callbacks' reads stay within what the share
// allows in that time. The flood meets 503 past the bounded queue, and the missing secret is
// warned about at start.
func TestForgedCallbacksKeepToTheirShare(t *testing.T) {
	w := setup(t, "")
	const apiRate, percent = 6000, 10 // a minute: 100 a second, of which callbacks get 10
	// The client's rate limit, which every call waits for, the commands' and the callbacks' alike.
	api := w.sb.Client(t, testToken, frontpay.WithTimeout(10*time.Second), frontpay.WithRateLimit(apiRate))
	// 1s to verify: the reads that may wait for the share are what it allows in half a second
	// (5), so the flood meets the queue's bound, and those left when it stops settle soon after.
	_, obs := w.service(api, func(c *Config) { c.APIRate, c.CallbackShare, c.VerifyTimeout = apiRate, percent, time.Second })
	uuid := w.submit(false)
	w.pay(uuid)

	// The flood: forged callbacks for reservations that do not exist, until the commands are done.
	const senders = 4
	var next atomic.Int64
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range senders {
		wg.Go(func() {
			for i := next.Add(1); ; i = next.Add(1) {
				select {
				case <-stop:
					return
				default:
				}
				q := callbackQuery("", fmt.Sprintf("RESFORGED%05d", i), "reserved", "150.00", unix(time.Now()), "visa")
				code, _ := w.get(q.Encode())
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		})
	}
	testworld.WaitFor(t, func() bool { return w.apiPaths.Count("", "RESFORGED") > 0 }, "the first forged read")

	// The commands: details calls through the same limiter, while the flood goes on.
	const calls = 100
	start, before := time.Now(), w.apiPaths.Count("", "RESFORGED")
	for range calls {
		if _, err := api.Details(testworld.Context(w.t), uuid); err != nil {
			t.Fatal(err)
		}
	}
	elapsed, during := time.Since(start), w.apiPaths.Count("", "RESFORGED")-before
	close(stop)
	// The share's limiter lets through at most its burst (1) and its rate times the time. Reads
	// it let through shortly before the commands began may reach the sandbox after: allow its
	// rate for one second more, and two reads, for those (a loaded machine stalls).
	allowed := 3 + int(float64(apiRate*percent/100)*(elapsed+time.Second).Minutes())
	t.Logf("%d commands' calls in %s; meanwhile %d forged reads (allowed %d)", calls, elapsed.Round(time.Millisecond), during, allowed)
	if during > allowed {
		t.Errorf("%d forged callbacks' reads while the commands made %d calls in %s: more than the share allows (%d)",
			during, calls, elapsed.Round(time.Millisecond), allowed)
	}

	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if forged := int(next.Load()) - senders; codes[http.StatusAccepted]+codes[http.StatusServiceUnavailable] != forged || codes[http.StatusServiceUnavailable] == 0 {
		t.Errorf("forged callbacks answered %v: want 202 while the queue has room, 503 past it", codes)
	}
	obs.waitSettled(t, SourceCallback, codes[http.StatusAccepted])
	if n := w.stored(); n != 0 {
		t.Errorf("%d events published from forged callbacks", n)
	}
	if !strings.Contains(w.logs.String(), "callbacks are not authenticated") {
		t.Errorf("no warning at start that callbacks are not authenticated:\n%.2000s", w.logs)
	}
}

// TestCallbacksShareOneRead: callbacks about one reservation at the same time make one read.
func TestCallbacksShareOneRead(t *testing.T) {
	w := setup(t, testSecret)
	api := &blockingAPI{API: w.api, release: make(chan struct{})}
	svc, obs := w.service(api)
	uuid := w.submit(false)
	w.pay(uuid)
	w.capture(uuid, 10000)
	reads := w.apiPaths.Count("", "/details/"+uuid) // the capture's own

	// Front Payment's two callbacks, each sent twice.
	ts := unix(time.Now())
	queries := []string{
		callbackQuery(testSecret, uuid, "reserved", "150.00", ts, "visa").Encode(),
		callbackQuery(testSecret, uuid, "captured", "100.00", ts, "visa").Encode(),
		callbackQuery(testSecret, uuid, "reserved", "150.00", ts, "visa").Encode(),
		callbackQuery(testSecret, uuid, "captured", "100.00", ts, "visa").Encode(),
	}
	for _, q := range queries {
		if code, body := w.get(q); code != http.StatusAccepted {
			t.Fatalf("%d %s", code, body)
		}
	}
	// Every verification waits on the one read, held at the API until released.
	testworld.WaitFor(t, func() bool { return sharing(svc, uuid) == len(queries) }, "the callbacks to wait on one read")
	close(api.release)
	obs.waitSettled(t, SourceCallback, len(queries))
	if n := w.apiPaths.Count("", "/details/"+uuid) - reads; n != 1 {
		t.Errorf("%d reads of the reservation for %d callbacks, want 1", n, len(queries))
	}
	got := changesOf(w.of(uuid))
	slices.SortFunc(got, func(a, b want) int { return strings.Compare(a.status, b.status) })
	if !slices.Equal(got, []want{{"captured", "100.00", "callback"}, {"reserved", "150.00", "callback"}}) {
		t.Errorf("events %v, want one reserved and one captured", got)
	}
}

// sharing is the number of verifications waiting on the read of uuid in flight.
func sharing(s *Service, uuid string) int {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if f := s.reads[uuid]; f != nil {
		return f.n
	}
	return 0
}

// TestCallbackQueueBounded: when the reads waiting for the share fill what it can read in half a
// verification's time, a callback needing a new read is answered 503 (with Retry-After) so that
// Front Payment sends it again; one about a reservation already being read still shares that read.
func TestCallbackQueueBounded(t *testing.T) {
	w := setup(t, testSecret)
	api := &blockingAPI{API: w.api, release: make(chan struct{})}
	// 60 read-backs a minute (10% of 600), and 2s to verify: one read may wait for the share.
	// One read-back each: the reservations are not paid, and a second read of each would only
	// wait for the share again before the test can end.
	svc, _ := w.service(api, func(c *Config) {
		c.APIRate, c.CallbackShare, c.VerifyTimeout, c.ReadBackAttempts = 600, 10, 2*time.Second, 1
	})
	a, b, c := w.submit(false), w.submit(false), w.submit(false)
	ts := unix(time.Now())
	get := func(uuid string) (int, http.Header) {
		t.Helper()
		req, err := http.NewRequestWithContext(testworld.Context(w.t), http.MethodGet,
			w.cbURL+"?"+callbackQuery(testSecret, uuid, "reserved", "150.00", ts, "visa").Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	if code, _ := get(a); code != http.StatusAccepted { // takes the share's one token, held at the API
		t.Fatalf("a: %d", code)
	}
	testworld.WaitFor(t, func() bool { return sharing(svc, a) == 1 && svc.queued.Load() == 0 }, "a's read at the API")
	if code, _ := get(b); code != http.StatusAccepted { // waits for the share
		t.Fatalf("b: %d", code)
	}
	testworld.WaitFor(t, func() bool { return svc.queued.Load() == 1 }, "b's read to wait for the share")
	code, hdr := get(c)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("c, with the queue full: %d (Retry-After %q), want 503 with Retry-After", code, hdr.Get("Retry-After"))
	}
	if code, _ := get(b); code != http.StatusAccepted {
		t.Errorf("b again, sharing the queued read: %d, want 202", code)
	}
	close(api.release)
	svc.Close()
}
