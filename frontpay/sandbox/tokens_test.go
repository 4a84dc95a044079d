package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// otherToken is a second merchant's token.
const otherToken = "other-token"

// twoTokens is setup with a second token, otherToken, an account of its own.
func twoTokens(t *testing.T, opts ...func(*Options)) *env {
	t.Helper()
	return setup(t, append([]func(*Options){func(o *Options) { o.Tokens = []string{otherToken} }}, opts...)...)
}

// controlAs sends a test control request for one token and checks its status.
func (e *env) controlAs(token, method, path string, body any, status int) {
	e.t.Helper()
	if r := e.send(method, path, body, "Bearer "+token); r.status != status {
		e.t.Fatalf("%s %s as %s: HTTP %d %s, want %d", method, path, token, r.status, r.body, status)
	}
}

// statuses sends one details call of an unknown reservation per token and returns the statuses.
func (e *env) statuses(tokens ...string) []int {
	e.t.Helper()
	var got []int
	for _, tok := range tokens {
		got = append(got, e.apiAs(tok, frontpay.ReservationDetails, nil, unknown).status)
	}
	return got
}

// TestTokensSameCallsSeparateEffects: the same calls with two tokens are two merchants' calls,
// each with effects of its own.
func TestTokensSameCallsSeparateEffects(t *testing.T) {
	t.Parallel()
	e := twoTokens(t)
	submit, order := e.submitRequest(), orderReq()
	var uuids []string
	for _, tok := range []string{testToken, otherToken} {
		r := e.apiAs(tok, frontpay.ReservationSubmit, submit)
		r.expect(t, 201, "Reservation Submitted Successfully", shapeDataTrue)
		var res frontpay.SubmitReservationResult
		r.data(t, &res)
		uuids = append(uuids, res.ReservationUUID)
		e.apiAs(tok, frontpay.OrderCreate, order).expect(t, 201, "orderAddedSuccessfully", shapeDataFalse)
	}
	if uuids[0] == uuids[1] {
		t.Fatalf("both tokens got reservation %s", uuids[0])
	}
	ledger := e.sb.Ledger()
	var got []string
	for _, f := range ledger {
		got = append(got, f.Token+" "+f.Op)
	}
	want := []string{testToken + " reservation.submit", testToken + " order.create", otherToken + " reservation.submit", otherToken + " order.create"}
	if !slices.Equal(got, want) {
		t.Fatalf("ledger\n got %q\nwant %q", got, want)
	}
	if ledger[0].UUID != uuids[0] || ledger[2].UUID != uuids[1] || !bytes.Equal(ledger[0].Body, ledger[2].Body) || ledger[1].UUID == ledger[3].UUID {
		t.Errorf("ledger %+v", ledger)
	}
	orders := e.sb.Orders()
	if len(orders) != 2 || orders[0].Token != testToken || orders[1].Token != otherToken || orders[0].UUID != ledger[1].UUID {
		t.Errorf("orders %+v", orders)
	}
	// The customer's payments are the effects of the token that made the reservation or order.
	if err := e.sb.Pay(uuids[1]); err != nil {
		t.Fatal(err)
	}
	if err := e.sb.PayOrder(orders[1].UUID); err != nil {
		t.Fatal(err)
	}
	for _, f := range e.sb.Ledger()[4:] {
		if f.Token != otherToken {
			t.Errorf("%s effect of %s", f.Op, f.Token)
		}
	}
}

// TestTokenIsolation: a token cannot read or change another account's reservations and orders; it
// gets the answer of an unknown one, and nothing changes.
func TestTokenIsolation(t *testing.T) {
	t.Parallel()
	e := twoTokens(t)
	uuid, ids, capture := e.capturedReservation()
	order := e.createOrder()
	before := len(e.sb.Ledger())

	for _, tc := range []struct {
		op   frontpay.Operation
		body any
		id   string
	}{
		{frontpay.ReservationDetails, nil, uuid},
		{frontpay.ReservationCapture, captureReq(item{ids[1], 100}), uuid},
		{frontpay.ReservationCharge, chargeReq(100), uuid},
		{frontpay.ReservationCancel, note, uuid},
		{frontpay.ReservationComplete, note, uuid},
		{frontpay.ReservationResend, resend, uuid},
		{frontpay.ReservationRefund, refundReq("captured", capture, item{ids[0], 100}), uuid},
		{frontpay.OrderResend, resend, order},
	} {
		stranger := e.apiAs(otherToken, tc.op, tc.body, tc.id)
		unknownID := map[bool]string{true: "ODR1000000000", false: unknown}[tc.op == frontpay.OrderResend]
		asUnknown := e.apiAs(otherToken, tc.op, tc.body, unknownID)
		if stranger.status != 404 || !bytes.Equal(stranger.body, asUnknown.body) {
			t.Errorf("%s of another account's %s: HTTP %d %s, want the answer for an unknown one, %s", tc.op, tc.id, stranger.status, stranger.body, asUnknown.body)
		}
	}
	if after := len(e.sb.Ledger()); after != before {
		t.Errorf("calls of the other token left %d effects", after-before)
	}
	if d := e.details(uuid); d.Status != StatusCaptured || d.PaymentDetails.CapturedAmount.String() != "30.00" {
		t.Errorf("the owner's reservation changed: %s, captured %s", d.Status, d.PaymentDetails.CapturedAmount)
	}

	// Each account's history holds its own reservations only.
	r := e.apiAs(otherToken, frontpay.ReservationHistory, nil, unix(t0), unix(t0))
	var events []frontpay.HistoryEvent
	r.data(t, &events)
	if len(events) != 0 {
		t.Errorf("the other token's history shows %+v", events)
	}
	own := e.submitAs(otherToken)
	r = e.apiAs(otherToken, frontpay.ReservationHistory, nil, unix(t0), unix(t0))
	r.data(t, &events)
	if len(events) != 1 || events[0].UUID != own {
		t.Errorf("the other token's history %+v, want its own submit", events)
	}
	if got := titles(e.history(t0, t0)); got != "reservation-sent reserved captured" {
		t.Errorf("the first token's history: %s", got)
	}
	e.api(frontpay.ReservationDetails, nil, own).expect(t, 404, "reservationNotFound", shapeDataFalse)
}

// TestTokenRateLimits: each token has a window and a limit of its own.
func TestTokenRateLimits(t *testing.T) {
	t.Parallel()
	e := twoTokens(t, func(o *Options) { o.RateLimit = 2 })
	if got := e.statuses(testToken, testToken, testToken, otherToken); !slices.Equal(got, []int{404, 404, 429, 404}) {
		t.Fatalf("statuses %v: the first token is limited, the other not", got)
	}
	if err := e.sb.SetTokenRateLimit(otherToken, 1); err != nil {
		t.Fatal(err)
	}
	// A fresh window for the other token only.
	if got := e.statuses(otherToken, otherToken, testToken); !slices.Equal(got, []int{404, 429, 429}) {
		t.Errorf("after the other token's limit of 1: %v", got)
	}
	e.controlAs(testToken, "PUT", "/sandbox/ratelimit", `{"perMinute": 5}`, 204)
	r := e.apiAs(testToken, frontpay.ReservationDetails, nil, unknown)
	if r.status != 404 || r.header.Get("x-ratelimit-limit") != "5" || r.header.Get("x-ratelimit-remaining") != "4" {
		t.Errorf("after the first token's limit of 5: HTTP %d %v", r.status, r.header)
	}
	if got := e.statuses(otherToken); got[0] != 429 {
		t.Errorf("the first token's new limit freed the other: %v", got)
	}

	// SetRateLimit is every token's, and a token added later's.
	e.sb.SetRateLimit(1)
	if err := e.sb.AddToken("third"); err != nil {
		t.Fatal(err)
	}
	if got := e.statuses(testToken, otherToken, "third", "third"); !slices.Equal(got, []int{404, 404, 404, 429}) {
		t.Errorf("after SetRateLimit(1): %v", got)
	}
	if err := e.sb.SetTokenRateLimit("nope", 1); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("an unknown token's limit: %v", err)
	}
	e.controlAs("nope", "PUT", "/sandbox/ratelimit", `{"perMinute": 5}`, 404)
	e.controlAs(testToken, "PUT", "/sandbox/ratelimit", `{}`, 400)
}

// TestRevokeAndRotate: tokens added while the sandbox runs; a rotated token's account under the
// new token; a revoked token refused.
func TestRevokeAndRotate(t *testing.T) {
	t.Parallel()
	e := setup(t)
	uuid, ids := e.reserved()
	const unauthenticated = `{"status_code":401,"status_message":"Unauthorized","message":"unauthenticated","is_error":true,"errors":null}`
	refused := func(token string) {
		t.Helper()
		r := e.apiAs(token, frontpay.ReservationDetails, nil, uuid)
		if r.status != 401 || strings.TrimSpace(string(r.body)) != unauthenticated {
			t.Errorf("%s: HTTP %d %s, want 401", token, r.status, r.body)
		}
	}

	refused("late")
	if err := e.sb.AddToken("late"); err != nil {
		t.Fatal(err)
	}
	e.apiAs("late", frontpay.ReservationDetails, nil, uuid).expect(t, 404, "reservationNotFound", shapeDataFalse)

	if err := e.sb.RotateToken(testToken, "rotated"); err != nil {
		t.Fatal(err)
	}
	if err := e.sb.RevokeToken(testToken); err != nil {
		t.Fatal(err)
	}
	refused(testToken)
	e.apiAs("rotated", frontpay.ReservationDetails, nil, uuid).expect(t, 200, "reservationRetrievedSuccessfully", shapeDataTrue)
	e.apiAs("rotated", frontpay.ReservationCapture, captureReq(item{ids[0], 1000}), uuid).
		expect(t, 202, "reservationCapturedSuccessfully", shapeDataTrue)
	var got []string
	for _, f := range e.sb.Ledger() {
		got = append(got, f.Token+" "+f.Op)
	}
	want := []string{testToken + " reservation.submit", testToken + " customer.pay", "rotated reservation.capture"}
	if !slices.Equal(got, want) {
		t.Errorf("ledger\n got %q\nwant %q", got, want)
	}

	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"add a known token", e.sb.AddToken("late"), ErrTokenTaken},
		{"add a revoked token", e.sb.AddToken(testToken), ErrTokenTaken},
		{"rotate to a known token", e.sb.RotateToken("late", "rotated"), ErrTokenTaken},
		{"rotate an unknown token", e.sb.RotateToken("nope", "new"), ErrUnknownToken},
		{"revoke an unknown token", e.sb.RevokeToken("nope"), ErrUnknownToken},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if err := e.sb.AddToken(""); err == nil {
		t.Error("an empty token was added")
	}

	// The same over HTTP.
	e.control("POST", "/sandbox/tokens", `{"token": "http"}`, 204)
	e.control("POST", "/sandbox/tokens", `{"token": "http"}`, 409)
	e.control("POST", "/sandbox/tokens", `{"token": ""}`, 400)
	e.control("POST", "/sandbox/tokens", `{"token": "x", "rotates": "nope"}`, 404)
	e.control("POST", "/sandbox/tokens", `{"token": "http-rotated", "rotates": "rotated"}`, 204)
	e.control("POST", "/sandbox/tokens/revoke", `{"token": "rotated"}`, 204)
	e.control("POST", "/sandbox/tokens/revoke", `{"token": "nope"}`, 404)
	refused("rotated")
	e.apiAs("http", frontpay.ReservationDetails, nil, uuid).expect(t, 404, "reservationNotFound", shapeDataFalse)
	e.apiAs("http-rotated", frontpay.ReservationDetails, nil, uuid).expect(t, 200, "reservationRetrievedSuccessfully", shapeDataTrue)
}

// TestTokenFaults: a token's own fault goes before the one for every token, and touches no other.
func TestTokenFaults(t *testing.T) {
	t.Parallel()
	e := twoTokens(t)
	details := frontpay.ReservationDetails
	check := func(step string, want ...int) {
		t.Helper()
		if got := e.statuses(testToken, otherToken); !slices.Equal(got, want) {
			t.Errorf("%s: statuses %v, want %v", step, got, want)
		}
	}
	if err := e.sb.SetTokenFault(testToken, details, Fault{ErrorShare: 1, ErrorStatus: 500}); err != nil {
		t.Fatal(err)
	}
	check("the first token's fault", 500, 404)
	e.sb.SetFault(details, Fault{TooManyShare: 1})
	check("and a fault for every token", 500, 429)
	if err := e.sb.SetTokenFault(testToken, details, Fault{}); err != nil {
		t.Fatal(err)
	}
	check("the first token's cleared", 429, 429)
	e.sb.SetFault(details, Fault{})
	check("every token's cleared", 404, 404)

	// Times counts the token's own calls.
	if err := e.sb.SetTokenFault(otherToken, details, Fault{ErrorShare: 1, Times: 1}); err != nil {
		t.Fatal(err)
	}
	check("once for the other token", 404, 503)
	check("then no more", 404, 404)

	if err := e.sb.SetTokenFault("nope", details, Fault{ErrorShare: 1}); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("an unknown token's fault: %v", err)
	}

	// Over HTTP, the bearer token names the token.
	faults := "/sandbox/faults/" + string(details)
	e.controlAs(otherToken, "PUT", faults, `{"errorShare": 1, "errorStatus": 510}`, 204)
	check("the other token's fault over HTTP", 404, 510)
	e.controlAs("nope", "PUT", faults, `{"errorShare": 1}`, 404)
	e.controlAs(otherToken, "PUT", faults, `{"errorShare": 2}`, 400)
	e.controlAs(otherToken, "PUT", faults, `{}`, 204)
	check("cleared over HTTP", 404, 404)
}

// TestTraffic counts each token's requests in sliding minutes, on a rate clock the test moves.
func TestTraffic(t *testing.T) {
	t.Parallel()
	rate := &fakeClock{now: t0}
	e := setupWith(t, func(sb *Sandbox) { sb.rateClock = rate.Now }, func(o *Options) {
		o.Tokens = []string{otherToken}
		o.RateLimit = 3
	})
	// Seconds after t0 of the first token's requests, and their statuses: the limit lets 3 through
	// in any minute (a request leaves the window 60s after it came), the count sees every one.
	at := []int{0, 20, 40, 50, 60, 61, 80}
	want := []int{404, 404, 404, 429, 404, 429, 404}
	var got []int
	for i, sec := range at {
		if i > 0 {
			rate.Advance(time.Duration(sec-at[i-1]) * time.Second)
		}
		got = append(got, e.statuses(testToken)...)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	// A revoked or unknown token's requests are refused before they count; a fault's are counted.
	e.statuses("nope")
	if err := e.sb.SetTokenFault(otherToken, frontpay.ReservationDetails, Fault{ErrorShare: 1}); err != nil {
		t.Fatal(err)
	}
	e.statuses(otherToken, otherToken)

	wantTraffic := []Traffic{
		// At 61s the window (1s, 61s] held 20, 40, 50, 60 and 61.
		{Token: testToken, Requests: 7, Limited: 2, MaxPerMinute: 5},
		{Token: otherToken, Requests: 2, Limited: 0, MaxPerMinute: 2},
	}
	if all := e.sb.Traffic(); !slices.Equal(all, wantTraffic) {
		t.Errorf("traffic\n got %+v\nwant %+v", all, wantTraffic)
	}
	var overHTTP []Traffic
	if err := json.Unmarshal(e.control("GET", "/sandbox/traffic", nil, 200).body, &overHTTP); err != nil || !slices.Equal(overHTTP, wantTraffic) {
		t.Errorf("GET /sandbox/traffic: %+v, %v", overHTTP, err)
	}

	// Without a limit every request is let through, and still counted: at 90s the window (30s,
	// 90s] holds 40, 50, 60, 61, 80 and three more.
	e.sb.SetRateLimit(-1)
	rate.Advance(10 * time.Second)
	if got := e.statuses(testToken, testToken, testToken); !slices.Equal(got, []int{404, 404, 404}) {
		t.Errorf("without a limit: %v", got)
	}
	if tr, err := e.sb.TokenTraffic(testToken); err != nil || tr != (Traffic{Token: testToken, Requests: 10, Limited: 2, MaxPerMinute: 8}) {
		t.Errorf("traffic %+v, %v", tr, err)
	}
	if _, err := e.sb.TokenTraffic("nope"); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("an unknown token's traffic: %v", err)
	}
}

// TestCallbackSecretPerAccount: callbacks are signed with their account's secret, which a rotated
// token's account keeps.
func TestCallbackSecretPerAccount(t *testing.T) {
	t.Parallel()
	e := twoTokens(t, func(o *Options) { o.CallbackSecret = "first-secret" })
	cbURL, ch := receiver(t)
	withCallback := func(q *frontpay.SubmitReservationRequest) { q.Callback = &frontpay.Callback{CallbackURL: cbURL} }
	if err := e.sb.SetCallbackSecret(otherToken, "other-secret"); err != nil {
		t.Fatal(err)
	}
	if err := e.sb.RotateToken(otherToken, "other-rotated"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ token, secret string }{
		{testToken, "first-secret"},
		{otherToken, "other-secret"},
		{"other-rotated", "other-secret"},
	} {
		uuid := e.submitAs(tc.token, withCallback)
		if err := e.sb.Pay(uuid); err != nil {
			t.Fatal(err)
		}
		q := next(t, ch)
		if sum := Checksum(tc.secret, uuid, "reserved", "150.00", unix(t0)); q.Get("orderUuid") != uuid || q.Get("checksum") != sum {
			t.Errorf("callback of %s's reservation %s: %v, want checksum %s", tc.token, uuid, q, sum)
		}
	}
	if err := e.sb.SetCallbackSecret(testToken, ""); err != nil {
		t.Fatal(err)
	}
	if err := e.sb.Pay(e.submit(withCallback)); err != nil {
		t.Fatal(err)
	}
	if q := next(t, ch); q.Has("checksum") {
		t.Errorf("a callback without a secret carries %v", q)
	}
	if err := e.sb.SetCallbackSecret("nope", "x"); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("an unknown token's secret: %v", err)
	}
}

// TestReserveFor seeds a reservation in one token's account; Reserve seeds the first token's.
func TestReserveFor(t *testing.T) {
	t.Parallel()
	e := twoTokens(t)
	const uuid = "RES0000000001"
	if err := e.sb.ReserveFor(otherToken, uuid, e.submitRequest()); err != nil {
		t.Fatal(err)
	}
	e.apiAs(otherToken, frontpay.ReservationDetails, nil, uuid).expect(t, 200, "reservationRetrievedSuccessfully", shapeDataTrue)
	e.api(frontpay.ReservationDetails, nil, uuid).expect(t, 404, "reservationNotFound", shapeDataFalse)
	for _, f := range e.sb.Ledger() {
		if f.Token != otherToken {
			t.Errorf("%s effect of %s", f.Op, f.Token)
		}
	}
	if err := e.sb.Reserve(uuid, e.submitRequest()); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Errorf("a UUID taken in another account: %v", err)
	}
	if err := e.sb.ReserveFor("nope", "RES0000000002", e.submitRequest()); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("an unknown token: %v", err)
	}
	if err := e.sb.Reserve("RES0000000003", e.submitRequest()); err != nil {
		t.Fatal(err)
	}
	e.api(frontpay.ReservationDetails, nil, "RES0000000003").expect(t, 200, "reservationRetrievedSuccessfully", shapeDataTrue)

	// Without Token, the first of Tokens is the first token; empty and repeated ones are skipped.
	sb := New(Options{Tokens: []string{"", "a", "b", "a"}, Clock: e.clock.Now})
	defer sb.Close()
	if err := sb.Reserve(uuid, e.submitRequest()); err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for _, tr := range sb.Traffic() {
		tokens = append(tokens, tr.Token)
	}
	if !slices.Equal(tokens, []string{"a", "b"}) || sb.Ledger()[0].Token != "a" {
		t.Errorf("tokens %v, ledger %+v", tokens, sb.Ledger())
	}
	if err := New(Options{}).Reserve(uuid, e.submitRequest()); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("a sandbox without tokens: %v", err)
	}
}
