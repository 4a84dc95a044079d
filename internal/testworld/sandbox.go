package testworld

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
)

// API is the sandbox served over real HTTP on a random loopback port.
type API struct {
	*sandbox.Sandbox
	URL string

	srv *httptest.Server
}

// Sandbox serves a sandbox with opts until the test ends. Each wrap wraps the handler, the first
// outermost: Calls.Wrap counts the requests.
func Sandbox(tb testing.TB, opts sandbox.Options, wrap ...func(http.Handler) http.Handler) *API {
	tb.Helper()
	a := StartSandbox(opts, wrap...)
	tb.Cleanup(a.Close)
	return a
}

// StartSandbox is Sandbox where there is no test, as in a TestMain; the caller closes it.
func StartSandbox(opts sandbox.Options, wrap ...func(http.Handler) http.Handler) *API {
	sb := sandbox.New(opts)
	var h http.Handler = sb
	for _, w := range slices.Backward(wrap) {
		h = w(h)
	}
	srv := httptest.NewServer(h)
	return &API{Sandbox: sb, URL: srv.URL, srv: srv}
}

// Close waits for the callbacks in flight, then stops serving.
func (a *API) Close() {
	a.Sandbox.Close()
	a.srv.Close()
}

// Client returns a client of the sandbox with token (the sandbox's own, or one it refuses).
func (a *API) Client(tb testing.TB, token string, opts ...frontpay.Option) *frontpay.Client {
	tb.Helper()
	c, err := frontpay.New(a.URL, token, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// SubmitData is the data of a reservation of one 100 NOK line, its payment link due in an hour:
// a submit command's, or a request straight to the API.
func SubmitData() json.RawMessage {
	now := time.Now()
	return json.RawMessage(`{"customerDetails":{"type":"private","countryCode":"+47","msisdn":"46567468","email":"a@example.no",
		"name":"A","preferredLanguage":"no","address":{"street":"S 1","zip":"0150","city":"Oslo","country":"NO"}},
		"orderDate":"` + strconv.FormatInt(now.Unix(), 10) + `","dueDateForPaymentLink":"` + strconv.FormatInt(now.Add(time.Hour).Unix(), 10) + `",
		"sendOrderBy":{"sms":false,"email":true},"products":{"0":{"name":"Wax","productId":null,"rate":100,"tax":"25","amount":100}},
		"orderSummary":{"subTotal":100,"totalTax":25,"grandTotal":100}}`)
}

// PaidReservation submits SubmitData straight to the API through api, has the customer pay it,
// and returns its UUID and the product id of its line.
func (a *API) PaidReservation(tb testing.TB, api *frontpay.Client) (string, frontpay.Number) {
	tb.Helper()
	var req frontpay.SubmitReservationRequest
	if err := json.Unmarshal(SubmitData(), &req); err != nil {
		tb.Fatal(err)
	}
	res, err := api.SubmitReservation(tb.Context(), &req)
	if err != nil {
		tb.Fatal(err)
	}
	uuid := res.Data.ReservationUUID
	if err := a.Pay(uuid); err != nil {
		tb.Fatal(err)
	}
	d, err := api.Details(tb.Context(), uuid)
	if err != nil {
		tb.Fatal(err)
	}
	return uuid, d.Data.ProductList[0].ID
}

// Calls counts the requests that reach a handler (Wrap): which operation each was, its path,
// and how many of an operation are being served at once, and at most. The zero value is ready.
type Calls struct {
	mu     sync.Mutex
	calls  []call
	active map[frontpay.Operation]int
	peak   map[frontpay.Operation]int
}

type call struct {
	op   frontpay.Operation
	path string
}

// Wrap returns next, counted.
func (c *Calls) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := opOfPath(r.URL.Path)
		c.mu.Lock()
		if c.active == nil {
			c.active, c.peak = map[frontpay.Operation]int{}, map[frontpay.Operation]int{}
		}
		c.calls = append(c.calls, call{op, r.URL.Path})
		c.active[op]++
		c.peak[op] = max(c.peak[op], c.active[op])
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			c.active[op]--
			c.mu.Unlock()
		}()
		next.ServeHTTP(w, r)
	})
}

// opOfPath finds the operation whose endpoint serves path ("" for none).
func opOfPath(path string) frontpay.Operation {
	for _, op := range frontpay.Operations() {
		prefix, _, _ := strings.Cut(op.Endpoint().Path, "{")
		if strings.HasPrefix(path, prefix) {
			return op
		}
	}
	return ""
}

// Count returns how many requests of op (any request for "") had a path that contains s.
func (c *Calls) Count(op frontpay.Operation, s string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, x := range c.calls {
		if (op == "" || x.op == op) && strings.Contains(x.path, s) {
			n++
		}
	}
	return n
}

// Active returns how many requests of op are being served now.
func (c *Calls) Active(op frontpay.Operation) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active[op]
}

// Peak returns how many requests of op were served at once at most.
func (c *Calls) Peak(op frontpay.Operation) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peak[op]
}
