// Package sandbox is a fake of Front Payment's Connect API for tests, the demo and benchmarks.
//
// A Sandbox is an http.Handler that serves the twelve operations of the API at their documented
// paths and methods, answers with the documented envelopes and error keys, and keeps reservations
// and orders in memory with the documented state transitions. It accepts several bearer tokens,
// each a merchant's account of its own (its own reservations, orders, history, rate limit window
// and faults), and can be told of new tokens and revoked ones while it runs. Test controls let a
// caller make the customer pay, inject faults (latency, 5xx, 429, dropped connections before or
// after the effect), change the rate limit, and read the ledger of every effect the sandbox
// applied and the count of each token's requests. The controls are Go methods and, for an
// out-of-process sandbox, HTTP endpoints under /sandbox/ and /checkout/.
package sandbox

import (
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// DefaultRateLimit is the API's documented limit: requests per minute per token.
const DefaultRateLimit = 240

// maxBodyBytes bounds the request body the sandbox reads.
const maxBodyBytes = 1 << 20

// Options configure a Sandbox. Token or Tokens is required, or a later AddToken.
type Options struct {
	Token          string           // bearer token of the first account; requests without "Authorization: Bearer <token>" of a known token get 401 (no token at all refuses every call)
	Tokens         []string         // more tokens, each an account of its own, after Token; empty and repeated ones are skipped
	RateLimit      int              // requests per minute per token; 0 means the default 240; negative turns the limit off
	Clock          func() time.Time // default time.Now; used for due dates, expiry, deadlines, ledger times
	PublicURL      string           // base URL of checkoutUrl/paymentUrl, e.g. "http://127.0.0.1:8099"; default the request's own scheme and host
	CallbackSecret string           // every account's to start with (SetCallbackSecret): when set, callbacks carry checksum = hex(HMAC-SHA256(secret, orderUuid+"|"+status+"|"+amount+"|"+timestamp))
	HTTPClient     *http.Client     // for callbacks; default a client with a 5s timeout
	Logger         *slog.Logger     // default discard
	Seed           int64            // seeds the random draws (fault shares and identifiers), so runs are reproducible
	CaptureWindow  time.Duration    // how long after reservation capture is allowed (default 7*24h) → paymentCaptureDeadlineExceed
}

// Sandbox is the fake API. It is safe for concurrent use; all state sits behind one mutex.
type Sandbox struct {
	clock         func() time.Time
	rateClock     func() time.Time // the rate limit's and the traffic count's: time.Now
	publicURL     string
	secret        string
	httpClient    *http.Client
	log           *slog.Logger
	captureWindow time.Duration
	controls      *http.ServeMux

	active atomic.Int64 // API requests being handled, for tests of cancellation

	mu         sync.Mutex
	rng        *rand.Rand // fault draws
	idRng      *rand.Rand // identifiers, a stream of its own so ids do not shift fault draws
	limit      int        // per minute of a token added from now on; < 0 off
	tokens     map[string]*tokenState
	tokenList  []*tokenState                // in the order added
	accounts   []*account                   // in the order opened
	faults     map[frontpay.Operation]Fault // every token's, behind a token's own
	orderList  []*order                     // of every account, in the order created
	ids        map[string]bool              // every identifier handed out, in any account
	nextLineID int64                        // product line ids are unique across accounts
	ledger     []Effect
	closed     bool
	callbacks  sync.WaitGroup
}

// New returns a Sandbox configured by opts.
func New(opts Options) *Sandbox {
	s := &Sandbox{
		clock:         opts.Clock,
		rateClock:     time.Now,
		publicURL:     strings.TrimRight(opts.PublicURL, "/"),
		secret:        opts.CallbackSecret,
		httpClient:    opts.HTTPClient,
		log:           opts.Logger,
		captureWindow: opts.CaptureWindow,
		rng:           rand.New(rand.NewPCG(uint64(opts.Seed), 0x5eed)),
		idRng:         rand.New(rand.NewPCG(uint64(opts.Seed), 0x1d5)),
		limit:         normalLimit(opts.RateLimit),
		tokens:        map[string]*tokenState{},
		faults:        map[frontpay.Operation]Fault{},
		ids:           map[string]bool{},
		nextLineID:    298,
	}
	for _, token := range append([]string{opts.Token}, opts.Tokens...) {
		_ = s.addToken(token, nil) // an empty or repeated token is skipped, as documented
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.httpClient == nil {
		s.httpClient = &http.Client{Timeout: 5 * time.Second}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.captureWindow <= 0 {
		s.captureWindow = 7 * 24 * time.Hour
	}
	s.controls = s.controlMux()
	return s
}

// Close waits for the callbacks in flight; no new callback starts after it.
func (s *Sandbox) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.callbacks.Wait()
}

// ServeHTTP serves the API under /api/v1/connect/ and the test controls under /sandbox/ and
// /checkout/.
func (s *Sandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/sandbox/") || strings.HasPrefix(r.URL.Path, "/checkout/") {
		s.controls.ServeHTTP(w, r)
		return
	}
	s.serveAPI(w, r)
}

// call is one API request on its way through a handler.
type call struct {
	token   string   // the bearer token
	acct    *account // the token's account
	op      frontpay.Operation
	params  []string
	body    []byte
	now     time.Time
	dropped bool   // the answer will be dropped after the effect
	base    string // public base URL for links
}

// handler applies one operation; it runs with s.mu held.
type handler func(s *Sandbox, c *call) answer

var handlers = map[frontpay.Operation]handler{
	frontpay.OrderCreate:         (*Sandbox).createOrder,
	frontpay.OrderResend:         (*Sandbox).resendOrder,
	frontpay.ReservationSubmit:   (*Sandbox).submit,
	frontpay.ReservationSession:  (*Sandbox).session,
	frontpay.ReservationDetails:  (*Sandbox).details,
	frontpay.ReservationCapture:  (*Sandbox).capture,
	frontpay.ReservationCharge:   (*Sandbox).charge,
	frontpay.ReservationCancel:   (*Sandbox).cancel,
	frontpay.ReservationComplete: (*Sandbox).complete,
	frontpay.ReservationResend:   (*Sandbox).resendReservation,
	frontpay.ReservationRefund:   (*Sandbox).refund,
	frontpay.ReservationHistory:  (*Sandbox).history,
}

// serveAPI runs the pipeline of an API request: route, auth, rate limit, fault, handler.
func (s *Sandbox) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.active.Add(1)
	defer s.active.Add(-1)

	op, params, methodOK := route(r)
	switch {
	case op == "":
		writeAnswer(w, refusal(http.StatusNotFound, "routeNotFound", shapeErrorTrue))
		return
	case !methodOK:
		w.Header().Set("Allow", op.Endpoint().Method)
		writeAnswer(w, refusal(http.StatusMethodNotAllowed, "methodNotAllowed", shapeErrorTrue))
		return
	}
	tok, ok := s.authorized(r)
	if !ok {
		writeAnswer(w, refusal(http.StatusUnauthorized, "unauthenticated", shapeErrorTrue))
		return
	}
	if a, limited := s.rateLimit(w.Header(), tok); limited {
		writeAnswer(w, a)
		return
	}
	// The body is read first: only then does net/http notice a client that goes away, which the
	// latency below must honour.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		writeAnswer(w, invalid(map[string][]string{"body": {"could not be read"}}))
		return
	}
	outcome, latency := s.takeFault(tok, op)
	if !wait(r, latency) {
		return // the client went away: no answer, no effect
	}
	switch outcome.kind {
	case faultTooMany:
		w.Header().Set("Retry-After", "1")
		fallthrough
	case faultError:
		writeAnswer(w, outcome.answer(s.clock()))
		return
	case faultDropBefore:
		drop(w)
		return
	}
	c := &call{token: tok.token, acct: tok.acct, op: op, params: params, body: body, dropped: outcome.kind == faultDropAfter, base: s.base(r)}
	s.mu.Lock()
	c.now = s.clock()
	a := handlers[op](s, c)
	s.mu.Unlock()
	s.log.Debug("sandbox call", "op", op, "status", a.status, "message", a.message, "dropped", c.dropped)
	if c.dropped {
		wait(r, outcome.hang)
		drop(w)
		return
	}
	writeAnswer(w, a)
}

// route finds the operation whose documented path matches the request. methodOK is false when
// the path matches but the method does not.
func route(r *http.Request) (op frontpay.Operation, params []string, methodOK bool) {
	segs := strings.Split(r.URL.EscapedPath(), "/")
	for _, candidate := range frontpay.Operations() {
		ep := candidate.Endpoint()
		if p, ok := matchPath(strings.Split(ep.Path, "/"), segs); ok {
			op, params = candidate, p
			if ep.Method == r.Method {
				return op, params, true
			}
		}
	}
	return op, params, false
}

// matchPath matches path segments against a template whose {placeholders} take any non-empty
// segment, and returns the placeholders' unescaped values.
func matchPath(template, segs []string) ([]string, bool) {
	if len(template) != len(segs) {
		return nil, false
	}
	var params []string
	for i, t := range template {
		if strings.HasPrefix(t, "{") {
			v, err := url.PathUnescape(segs[i])
			if err != nil || v == "" {
				return nil, false
			}
			params = append(params, v)
		} else if t != segs[i] {
			return nil, false
		}
	}
	return params, true
}

// base is the public base URL for checkout links.
func (s *Sandbox) base(r *http.Request) string {
	if s.publicURL != "" {
		return s.publicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// wait sleeps for the fault's latency; false when the request's context ended first.
func wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.Context().Done():
		return false
	case <-t.C:
		return true
	}
}

// writeJSON writes v as a JSON answer with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
