package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/internal/app"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
	"github.com/nordpay/frontpay-worker/status"
)

// Recognisable secrets and personal data: none may leak from the worker.
const (
	leakToken    = "tok-SECRET-4242"
	leakCBSecret = "cb-SECRET-7777"
)

// leakPersonal are the customer's personal data.
var leakPersonal = []string{"secret.person@example.no", "41234567", "12345678901", "Hemmelig Hansen", "Hemmeligveien 9"}

// leakForms returns the forms a value may take in a log or a URL: as is, query-escaped,
// path-escaped, and for a name its first word, which every form of it holds.
func leakForms(v string) []string {
	forms := []string{v, url.QueryEscape(v), url.PathEscape(v)}
	if first, _, ok := strings.Cut(v, " "); ok {
		forms = append(forms, first)
	}
	return forms
}

// leakSecrets are what must show nowhere at all: in no log, event, message, metric or answer.
var leakSecrets = []string{leakToken, leakCBSecret, "SECRET"}

// findLeaks returns a description of each secret (and, with personal, each piece of personal
// data) that text holds.
func findLeaks(where, text string, personal bool) []string {
	var out []string
	for _, s := range leakSecrets {
		if i := strings.Index(text, s); i >= 0 {
			out = append(out, fmt.Sprintf("%s holds the secret %q: …%s…", where, s, excerpt(text, i)))
		}
	}
	if personal {
		for _, v := range leakPersonal {
			for _, f := range leakForms(v) {
				if i := strings.Index(text, f); i >= 0 {
					out = append(out, fmt.Sprintf("%s holds personal data %q: …%s…", where, f, excerpt(text, i)))
					break
				}
			}
		}
	}
	return out
}

func excerpt(s string, i int) string {
	return s[max(i-120, 0):min(i+80, len(s))]
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// rawMsg is a message of a stream as stored.
type rawMsg struct {
	stream, subject string
	header          nats.Header
	data            []byte
}

// readAllStreams returns every message of every stream of the server, the state bucket's
// included.
func readAllStreams(t *testing.T, js jetstream.JetStream) []rawMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out []rawMsg
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			} else if err != nil {
				t.Fatalf("%s %d: %v", name, seq, err)
			}
			out = append(out, rawMsg{name, m.Subject, m.Header, m.Data})
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// withoutCarried returns a result event without data.command and data.response: those carry the
// command and the API's answer as they were, personal data included, by contract (CONTRACT.md
// section 3). Everything else of an event (its envelope, a failure's message and errors, a
// status change) is the worker's own words and must hold none.
func withoutCarried(t *testing.T, raw []byte) string {
	t.Helper()
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("an event that is not JSON: %q", raw)
	}
	var data map[string]json.RawMessage
	if json.Unmarshal(ev["data"], &data) == nil {
		delete(data, "command")
		delete(data, "response")
		ev["data"], _ = json.Marshal(data)
	}
	b, _ := json.Marshal(ev)
	return string(b)
}

// TestNoSecretsOrPersonalData drives a worker process at debug level, in both log formats,
// through a scenario full of recognisable values: a submit with a customer's personal data and a
// callback URL, the payment and its callback, details, a resend, a capture and its callback, a
// capture the API refuses, invalid commands holding the personal data, and callbacks with the
// data (and the token) in extra query parameters and headers. Then it looks everywhere: the
// worker's whole output, every message of every stream, /metrics and every HTTP answer. The
// token and the callback secret show nowhere; the personal data nowhere but in the command and
// response that result events carry.
func TestNoSecretsOrPersonalData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			leakScenario(t, format)
		})
	}
}

func leakScenario(t *testing.T, format string) {
	ns := testworld.JetStream(t)
	api := testworld.Sandbox(t, sandbox.Options{Token: leakToken, RateLimit: -1, Seed: 11, CallbackSecret: leakCBSecret})

	httpAddr := freeAddr(t)
	base := "http://" + httpAddr
	env := append(os.Environ(), asWorker+"=1",
		"NATS_URL="+ns.URL, "FRONTPAY_API_URL="+api.URL, "FRONTPAY_API_TOKEN="+leakToken,
		"FRONTPAY_CALLBACK_SECRET="+leakCBSecret, "FRONTPAY_HTTP_ADDR="+httpAddr, "FRONTPAY_HISTORY_POLL=1s",
		"FRONTPAY_API_TIMEOUT=5s", "FRONTPAY_ACK_WAIT=2s", "FRONTPAY_PIN_TTL=3s", "FRONTPAY_API_RATE=0", "FRONTPAY_LEASE_MARGIN=500ms", "FRONTPAY_MAX_ATTEMPTS=2",
		"FRONTPAY_RETRY_INITIAL=50ms", "FRONTPAY_RETRY_MAX=200ms", "FRONTPAY_DRAIN_TIMEOUT=5s",
		"FRONTPAY_LOG_FORMAT="+format, "FRONTPAY_LOG_LEVEL=debug")
	var output testworld.SyncBuffer
	worker := startWorkerInto(t, env, &output)
	js := ns.JS
	var answers []string // every HTTP answer of the worker: status, headers and body
	get := func(path string, header http.Header) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answers = append(answers, fmt.Sprintf("%d %v %s", resp.StatusCode, resp.Header, b))
		return resp.StatusCode
	}
	testworld.WaitFor(t, func() bool { return get("/readyz", nil) == http.StatusOK }, "the worker to be ready")

	results := func() []schemas.Event { return testworld.ReadStream(t, js, "FRONTPAY_RESULTS") }
	resultOf := func(id string) schemas.Event {
		t.Helper()
		var got schemas.Event
		testworld.WaitFor(t, func() bool {
			for _, ev := range results() {
				if ev.CausationID == id {
					got = ev
					return true
				}
			}
			return false
		}, "the result of "+id)
		return got
	}
	must := func(ev schemas.Event, typ string) {
		t.Helper()
		if ev.Type != typ {
			t.Fatalf("%s: %s", ev.Type, ev.Data)
		}
	}
	statusEvent := func(status string) {
		t.Helper()
		testworld.WaitFor(t, func() bool {
			for _, ev := range results() {
				if ev.Type == "reservation.status.changed" && strings.Contains(string(ev.Data), `"status":"`+status+`"`) {
					return true
				}
			}
			return false
		}, "a "+status+" status event")
	}

	customer := map[string]any{
		"type": "private", "countryCode": "+47", "msisdn": "41234567", "email": "secret.person@example.no",
		"name": "Hemmelig Hansen", "preferredLanguage": "no", "personalNumber": "12345678901",
		"address": map[string]any{"street": "Hemmeligveien 9", "zip": "0150", "city": "Oslo", "country": "NO"},
	}
	submit := map[string]any{
		"customerDetails": customer,
		"orderDate":       strconv.FormatInt(time.Now().Unix(), 10), "dueDateForPaymentLink": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10),
		"sendOrderBy":   map[string]any{"sms": true, "email": true},
		"products":      map[string]any{"0": map[string]any{"name": "Gift for Hemmelig Hansen", "productId": nil, "rate": 100, "tax": "25", "amount": 100}},
		"orderSummary":  map[string]any{"subTotal": 100, "totalTax": 25, "grandTotal": 100},
		"customerNotes": "Deliver to Hemmeligveien 9, call 41234567",
		"callback":      map[string]any{"callbackUrl": base + "/callbacks/frontpay"},
	}

	// Submit; the customer pays; the sandbox calls back "reserved".
	ev := resultOf(publishCommand(t, js, frontpay.ReservationSubmit, submit))
	must(ev, "reservation.submit.succeeded")
	var submitted struct {
		Response frontpay.SubmitReservationResult `json:"response"`
	}
	if err := json.Unmarshal(ev.Data, &submitted); err != nil {
		t.Fatal(err)
	}
	uuid := submitted.Response.ReservationUUID
	if err := api.Pay(uuid); err != nil {
		t.Fatal(err)
	}
	statusEvent("reserved")

	// Details (their answer is full of the customer), a resend to the customer, a capture and its
	// callback, a capture beyond what is left.
	must(resultOf(publishCommand(t, js, frontpay.ReservationDetails, map[string]any{"reservationUuid": uuid})), "reservation.details.succeeded")
	must(resultOf(publishCommand(t, js, frontpay.ReservationResend, map[string]any{
		"reservationUuid": uuid, "countryCode": "+47", "msisdn": "41234567", "email": "secret.person@example.no",
	})), "reservation.resend.succeeded")
	d, err := api.Client(t, leakToken).Details(t.Context(), uuid)
	if err != nil {
		t.Fatal(err)
	}
	line := d.Data.ProductList[0].ID
	capture := func(amount int, text string) schemas.Event {
		return resultOf(publishCommand(t, js, frontpay.ReservationCapture, map[string]any{
			"reservationUuid": uuid, "grandTotal": amount, "products": []any{map[string]any{"id": line, "amount": amount}},
			"additionalText": text,
		}))
	}
	must(capture(40, "for Hemmelig Hansen"), "reservation.capture.succeeded")
	statusEvent("captured")
	refused := capture(1000, "Hemmeligveien 9")
	must(refused, "reservation.capture.failed")
	if !strings.Contains(string(refused.Data), `"reason":"business_rule"`) {
		t.Fatalf("the capture beyond what is left: %s", refused.Data)
	}

	// Invalid commands holding the personal data: in their proper fields of a submit that breaks
	// other rules, and in fields where they do not belong. The last puts it in numeric fields,
	// whose errors (the failure's message and errors) must not quote it.
	bad := map[string]any{}
	for k, v := range submit {
		bad[k] = v
	}
	bad["orderSummary"] = map[string]any{"subTotal": 100, "totalTax": 25, "grandTotal": 99}
	bad["sendOrderBy"] = map[string]any{"sms": "yes", "email": true}
	for _, data := range []map[string]any{
		bad,
		{"reservationUuid": uuid, "countryCode": "41234567", "msisdn": "Hemmelig Hansen", "email": "Hemmeligveien 9"},
		{"reservationUuid": "secret.person@example.no"},
		{"reservationUuid": uuid, "grandTotal": "Hemmelig Hansen", "products": []any{map[string]any{"id": line, "amount": "41234567x"}}},
	} {
		op := frontpay.ReservationSubmit
		if _, ok := data["reservationUuid"]; ok {
			op = frontpay.ReservationResend
		}
		if _, ok := data["grandTotal"]; ok {
			op = frontpay.ReservationCapture
		}
		ev := resultOf(publishCommand(t, js, op, data))
		if !strings.HasSuffix(ev.Type, ".failed") || !strings.Contains(string(ev.Data), `"reason":"invalid_command"`) {
			t.Fatalf("an invalid command: %s %s", ev.Type, ev.Data)
		}
	}

	// Callbacks with the personal data and the token in extra parameters and headers: one that
	// is genuine (the capture's, again), and refused ones with the data where parameters belong.
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	extra := url.Values{}
	extra.Set("email", "secret.person@example.no")
	extra.Set("msisdn", "41234567")
	extra.Set("personalNumber", "12345678901")
	extra.Set("name", "Hemmelig Hansen")
	extra.Set("street", "Hemmeligveien 9")
	extra.Set("token", leakToken)
	header := http.Header{"Authorization": {"Bearer " + leakToken}, "X-Customer": {"Hemmelig Hansen <secret.person@example.no>"}}
	callback := func(uuid, status, amount, method string) int {
		q := url.Values{}
		for k, v := range extra {
			q[k] = v
		}
		q.Set("orderUuid", uuid)
		q.Set("status", status)
		q.Set("amount", amount)
		q.Set("timestamp", ts)
		q.Set("paymentMethod", method)
		q.Set("checksum", sandbox.Checksum(leakCBSecret, uuid, status, amount, ts))
		return get("/callbacks/frontpay?"+q.Encode(), header)
	}
	verified := statusChanges(t, base, status.SourceCallback, status.Published, status.Duplicate, status.Failed)
	if c := callback(uuid, "captured", "40.00", "visa"); c != http.StatusAccepted {
		t.Fatalf("the genuine callback: %d", c)
	}
	for _, c := range [][4]string{
		{"secret.person@example.no", "captured", "40.00", "visa"},
		{uuid, "Hemmelig Hansen", "40.00", "visa"},
		{uuid, "captured", "41234567x", "visa"},
		{uuid, "captured", "40.00", "Hemmeligveien 9"},
	} {
		if code := callback(c[0], c[1], c[2], c[3]); code != http.StatusBadRequest {
			t.Errorf("callback %v: %d, want 400", c, code)
		}
	}
	q := extra.Encode() + "&orderUuid=" + uuid + "&status=captured&amount=40.00&timestamp=" + ts + "&checksum=" + strings.Repeat("ab", 32)
	if code := get("/callbacks/frontpay?"+q, header); code != http.StatusUnauthorized {
		t.Errorf("callback with a wrong checksum: %d, want 401", code)
	}
	get("/metrics", header)
	get("/healthz", header)
	get("/no/such/path?email=secret.person%40example.no&token="+leakToken, header)

	// Let the genuine callback's verification (a read at the API) settle, and then a history poll
	// read the reservation's entries again, so that what they log and publish is searched too;
	// then stop the worker and read everything.
	testworld.WaitFor(t, func() bool {
		return statusChanges(t, base, status.SourceCallback, status.Published, status.Duplicate, status.Failed) > verified
	}, "the genuine callback's verification")
	polled := statusChanges(t, base, status.SourceHistory)
	testworld.WaitFor(t, func() bool { return statusChanges(t, base, status.SourceHistory) > polled }, "a history poll after the callbacks")
	if err := worker.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := worker.Wait(); err != nil {
		t.Errorf("worker after SIGTERM: %v", err)
	}

	var leaks []string
	log := output.String()
	if !strings.Contains(log, "level=DEBUG") && !strings.Contains(log, `"level":"DEBUG"`) && !strings.Contains(log, "DBG") {
		t.Errorf("no debug line in the %s log:\n%s", format, log)
	}
	leaks = append(leaks, findLeaks("the worker's output", log, true)...)
	for i, a := range answers {
		leaks = append(leaks, findLeaks(fmt.Sprintf("HTTP answer %d", i), a, true)...)
	}
	carried := 0 // result events that carry the personal data, as they may
	for _, m := range readAllStreams(t, js) {
		where := fmt.Sprintf("%s message on %s", m.stream, m.subject)
		if m.stream == "FRONTPAY_RESULTS" && len(findLeaks("", string(m.data), true)) > 0 {
			carried++
		}
		leaks = append(leaks, findLeaks(where+" (headers)", fmt.Sprint(m.header), true)...)
		leaks = append(leaks, findLeaks(where, string(m.data), false)...)
		if m.stream == "FRONTPAY_RESULTS" {
			found := findLeaks(where+", outside data.command and data.response", withoutCarried(t, m.data), true)
			var ev schemas.Event
			_ = json.Unmarshal(m.data, &ev)
			leaks = append(leaks, found...)
		}
	}
	if carried < 5 {
		// The submit, details, resend, capture and invalid commands all carry some of it: the
		// search would not find what it looks for if they did not.
		t.Errorf("only %d result events carry the personal data in their command or response", carried)
	}
	for _, l := range leaks {
		t.Error(l)
	}
	if t.Failed() || os.Getenv("FRONTPAY_TEST_SHOW_LOG") != "" {
		t.Logf("worker output:\n%s", log)
	}
}

// statusChanges returns how many status changes from source (status.SourceCallback or
// status.SourceHistory) that ended with one of outcomes (any, with none) the worker at base has
// counted, as its /metrics shows them.
func statusChanges(t *testing.T, base, source string, outcomes ...string) float64 {
	t.Helper()
	code, body := testworld.Get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	n := 0.0
	for line := range strings.Lines(string(body)) {
		series, value, _ := strings.Cut(strings.TrimSpace(line), " ")
		if !strings.HasPrefix(series, "frontpay_status_changes_total{") || !strings.Contains(series, `source="`+source+`"`) ||
			(len(outcomes) > 0 && !slices.ContainsFunc(outcomes, func(o string) bool { return strings.Contains(series, `outcome="`+o+`"`) })) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("/metrics: %q", line)
		}
		n += v
	}
	return n
}

// TestStartErrorsHideToken fails the worker's start in ways that print an error, and checks that
// no error shows the token.
func TestStartErrorsHideToken(t *testing.T) {
	cfg := &app.Config{
		APIURL: "http://127.0.0.1:1", APIToken: leakToken, APITimeout: time.Second, MaxAttempts: 1,
		RetryInitial: time.Millisecond, RetryMax: time.Millisecond, HTTPAddr: "256.0.0.1:http", DataDir: t.TempDir(),
		Concurrency: 1, AckWait: time.Second, PinnedTTL: 3 * time.Second, DrainTimeout: time.Second, LeaseMargin: time.Millisecond,
		Replicas: 1, WorkerName: "test", LogFormat: "json", LogLevel: "debug",
	}
	var logs testworld.SyncBuffer
	m := app.NewMain(cfg, newLogger(&logs, "json", "debug"))
	m.EmbeddedAddr = "127.0.0.1:0"
	err := m.Run(t.Context()) // releases what it started
	if err == nil {
		t.Fatal("the worker started on a bad HTTP address")
	}
	bad := *cfg
	bad.APIURL, bad.LogFormat, bad.MaxAttempts = "ftp://"+leakToken+"@x", "xml", 0
	verr := bad.Validate()
	for _, s := range []string{err.Error(), verr.Error(), logs.String(), fmt.Sprintf("%v %+v %#v", cfg, cfg, *cfg)} {
		// The API URL is shown as given (it holds no token unless an operator puts one there).
		s = strings.ReplaceAll(s, "ftp://"+leakToken+"@x", "ftp://…@x")
		for _, l := range findLeaks("a start error", s, false) {
			t.Error(l)
		}
	}
}
