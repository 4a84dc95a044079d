package status

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// CallbackPath is where Front Payment's callbacks arrive.
const CallbackPath = "/callbacks/frontpay"

// MaxQuery is the longest callback query accepted, in bytes.
const MaxQuery = 2 << 10

// maxFuture is how far in the future a callback's timestamp may lie (clock skew).
const maxFuture = 24 * time.Hour

// Callback statuses: a reservation's, read back before publishing, and an order's, which cannot be.
var (
	reservationStatuses = map[string]bool{"reserved": true, "captured": true, "charged": true}
	orderStatuses       = map[string]bool{"paid": true, "invoiced": true}
)

var (
	amountPattern    = regexp.MustCompile(`^[0-9]{1,13}(\.[0-9]{1,16})?$`)
	timestampPattern = regexp.MustCompile(`^[0-9]{1,12}$`)
)

// claim is what a callback says, checked for form but not yet for truth. Its paymentMethod is
// checked for form only and not kept: neither the read-back nor the checksum covers it.
type claim struct {
	uuid   string
	status string // lower case
	cents  int64
	ts     time.Time
}

// resource is the kind of thing the claim is about.
func (c claim) resource() string {
	if orderStatuses[c.status] {
		return "order"
	}
	return "reservation"
}

// problem is a refused callback: its HTTP status, an error key and the parameter at fault.
type problem struct {
	code  int
	error string
	param string
}

// ServeCallback answers one callback request, whatever its path: GET only.
func (s *Service) ServeCallback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		s.refuse(w, r, problem{code: http.StatusMethodNotAllowed, error: "method_not_allowed"})
		return
	}
	c, p := s.parse(r)
	if p != nil {
		s.refuse(w, r, *p)
		return
	}
	if !s.dispatch(r.Context(), c) {
		w.Header().Set("Retry-After", "5")
		s.refuse(w, r, problem{code: http.StatusServiceUnavailable, error: "busy"})
		return
	}
	s.answer(w, http.StatusAccepted, map[string]string{"status": "accepted"})
}

// forwardTimeout bounds the wait for the owner's answer to a forwarded callback.
const forwardTimeout = 5 * time.Second

// wireClaim is a checked callback as it is forwarded to the owner.
type wireClaim struct {
	UUID   string    `json:"uuid"`
	Status string    `json:"status"`
	Cents  int64     `json:"cents"`
	TS     time.Time `json:"ts"`
}

// dispatch starts the verification of c: here, or, with Config.Conn, at the owner of the
// merchant's commands. It reports whether it was taken.
func (s *Service) dispatch(ctx context.Context, c claim) bool {
	if s.cfg.Conn == nil {
		return s.start(c)
	}
	b, _ := json.Marshal(wireClaim{UUID: c.uuid, Status: c.status, Cents: c.cents, TS: c.ts})
	ctx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	m, err := s.cfg.Conn.RequestWithContext(ctx, s.cfg.CallbackSubject, b)
	if err != nil {
		s.log.Warn("callback not forwarded to the owner", "err", err)
		return false
	}
	return string(m.Data) == "accepted"
}

// Own does what the owner of the merchant's commands alone does, until ctx ends: it verifies the
// callbacks forwarded to it (with Config.Conn) and polls the history (Run).
func (s *Service) Own(ctx context.Context) error {
	if s.cfg.Conn != nil {
		sub, err := s.cfg.Conn.QueueSubscribe(s.cfg.CallbackSubject, "frontpay-status", func(m *nats.Msg) {
			var w wireClaim
			answer := "refused"
			if json.Unmarshal(m.Data, &w) == nil && s.start(claim{uuid: w.UUID, status: w.Status, cents: w.Cents, ts: w.TS}) {
				answer = "accepted"
			}
			_ = m.Respond([]byte(answer))
		})
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", s.cfg.CallbackSubject, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	s.Run(ctx) // returns at once without a poll
	<-ctx.Done()
	return nil
}

// parse checks a callback's form and checksum. It never keeps or logs the raw values beyond the
// checked ones.
func (s *Service) parse(r *http.Request) (claim, *problem) {
	bad := func(code int, key, param string) (claim, *problem) {
		return claim{}, &problem{code: code, error: key, param: param}
	}
	if len(r.URL.RawQuery) > MaxQuery {
		return bad(http.StatusRequestURITooLong, "query_too_long", "")
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		return bad(http.StatusBadRequest, "body_not_allowed", "")
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return bad(http.StatusBadRequest, "malformed_query", "")
	}
	// one returns the single value of name; several values are as bad as a wrong one.
	one := func(name string) (string, bool, bool) {
		vs := q[name]
		switch len(vs) {
		case 0:
			return "", false, true
		case 1:
			return vs[0], true, true
		}
		return "", true, false
	}
	var c claim
	uuid, present, ok := one("orderUuid")
	switch {
	case !present:
		return bad(http.StatusBadRequest, "missing_parameter", "orderUuid")
	case !ok || frontpay.ValidateUUID("orderUuid", uuid) != nil:
		return bad(http.StatusBadRequest, "invalid_parameter", "orderUuid")
	}
	c.uuid = uuid

	rawStatus, present, ok := one("status")
	c.status = strings.ToLower(rawStatus)
	switch {
	case !present:
		return bad(http.StatusBadRequest, "missing_parameter", "status")
	case !ok || !(reservationStatuses[c.status] || orderStatuses[c.status]):
		return bad(http.StatusBadRequest, "invalid_parameter", "status")
	}

	rawAmount, present, ok := one("amount")
	if !present {
		return bad(http.StatusBadRequest, "missing_parameter", "amount")
	}
	if !ok || !amountPattern.MatchString(rawAmount) {
		return bad(http.StatusBadRequest, "invalid_parameter", "amount")
	}
	n, err := frontpay.ParseNumber(rawAmount)
	if err != nil {
		return bad(http.StatusBadRequest, "invalid_parameter", "amount")
	}
	if c.cents, err = n.Cents(); err != nil || c.cents < 0 {
		return bad(http.StatusBadRequest, "invalid_parameter", "amount")
	}

	rawTS, present, ok := one("timestamp")
	if !present {
		return bad(http.StatusBadRequest, "missing_parameter", "timestamp")
	}
	if !ok || !timestampPattern.MatchString(rawTS) {
		return bad(http.StatusBadRequest, "invalid_parameter", "timestamp")
	}
	sec, err := strconv.ParseInt(rawTS, 10, 64)
	if err != nil {
		return bad(http.StatusBadRequest, "invalid_parameter", "timestamp")
	}
	c.ts = time.Unix(sec, 0).UTC()
	if c.ts.After(s.cfg.Now().Add(maxFuture)) {
		return bad(http.StatusBadRequest, "invalid_parameter", "timestamp")
	}

	method, present, ok := one("paymentMethod")
	if present && method != "" {
		if _, ok = paymentMethod(method); !ok {
			return bad(http.StatusBadRequest, "invalid_parameter", "paymentMethod")
		}
	} else if !ok {
		return bad(http.StatusBadRequest, "invalid_parameter", "paymentMethod")
	}

	if s.cfg.Secret != "" {
		sum, present, ok := one("checksum")
		if !present || !ok || !s.checksumOK(sum, uuid, rawStatus, rawAmount, rawTS) {
			return bad(http.StatusUnauthorized, "invalid_checksum", "checksum")
		}
	}
	return c, nil
}

// checksumOK compares the checksum, hex(HMAC-SHA256(secret, orderUuid|status|amount|timestamp))
// over the values as sent, in constant time.
func (s *Service) checksumOK(sum, uuid, status, amount, ts string) bool {
	got, err := hex.DecodeString(sum)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	m := hmac.New(sha256.New, []byte(s.cfg.Secret))
	_, _ = io.WriteString(m, uuid+"|"+status+"|"+amount+"|"+ts)
	return hmac.Equal(got, m.Sum(nil))
}

// start runs the verification of c in the background, unless MaxInFlight are running already,
// the reads waiting for the callbacks' share leave no room (see share.go), or the service is
// closed.
func (s *Service) start(c claim) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || c.resource() == "reservation" && !s.admits(c.uuid) {
		return false
	}
	select {
	case s.sem <- struct{}{}:
	default:
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.sem }()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.VerifyTimeout)
		defer cancel()
		s.verify(ctx, c)
	}()
	return true
}

// refuse answers a refused callback with a short JSON error that names the parameter at fault
// but never echoes a value.
func (s *Service) refuse(w http.ResponseWriter, r *http.Request, p problem) {
	body := map[string]string{"error": p.error}
	if p.param != "" {
		body["parameter"] = p.param
	}
	attrs := []any{"http_status", p.code, "error", p.error, "remote", r.RemoteAddr}
	if p.param != "" {
		attrs = append(attrs, "parameter", p.param)
	}
	s.log.Warn("callback refused", attrs...)
	s.answer(w, p.code, body)
}

func (s *Service) answer(w http.ResponseWriter, code int, body map[string]string) {
	s.obs.Callback(code)
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// verify publishes the change a callback claims once it is confirmed: a reservation's by reading
// it back, an order's only with a verified checksum. The event carries only what was confirmed,
// so never the callback's paymentMethod.
func (s *Service) verify(ctx context.Context, c claim) {
	ch := change{resource: c.resource(), uuid: c.uuid, status: c.status, cents: c.cents,
		at: minute(c.ts), source: SourceCallback}
	if ch.resource == "order" {
		if s.cfg.Secret == "" {
			s.reject(SourceCallback, c.uuid, c.status,
				"an order cannot be read back; order callbacks are trusted only with FRONTPAY_CALLBACK_SECRET")
			return
		}
		_ = s.record(ctx, ch)
		return
	}
	delay := s.cfg.ReadBackDelay
	for attempt := 1; ; attempt++ {
		res, err := s.readBack(ctx, c.uuid)
		var why string
		var fe *frontpay.Error
		switch {
		case err == nil:
			at, disagreement := confirm(&res.Data, c, s.cfg.HistoryLocation)
			if disagreement == "" {
				ch.at = at
				_ = s.record(ctx, ch)
				return
			}
			why = "read-back disagrees: " + disagreement
		case errors.As(err, &fe) && fe.HTTPStatus == http.StatusNotFound:
			s.reject(SourceCallback, c.uuid, c.status, "read-back: no such reservation")
			return
		case frontpay.Classify(err) == frontpay.Permanent:
			s.reject(SourceCallback, c.uuid, c.status, "read-back refused: "+err.Error())
			return
		default:
			why = "read-back failed: " + err.Error()
		}
		if attempt >= s.cfg.ReadBackAttempts || ctx.Err() != nil {
			s.reject(SourceCallback, c.uuid, c.status, why)
			return
		}
		s.log.Debug("callback not confirmed yet, reading again", "uuid", c.uuid, "status", c.status,
			"why", why, "attempt", attempt)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			s.reject(SourceCallback, c.uuid, c.status, why+"; gave up: "+ctx.Err().Error())
			return
		case <-t.C:
		}
		delay *= 2
	}
}

// entry is one money movement of a reservation's payment history.
type entry struct {
	at     frontpay.Text
	amount frontpay.Number
}

// confirm checks a claimed reservation change against the reservation as read back. It returns
// the time of the change (minute) or why the read-back disagrees.
func confirm(r *frontpay.Reservation, c claim, loc *time.Location) (time.Time, string) {
	if r.ReservationUUID != "" && r.ReservationUUID != c.uuid {
		return time.Time{}, "another reservation answered"
	}
	var entries []entry
	h := r.PaymentHistory
	switch c.status {
	case "reserved":
		if !r.IsPaid {
			return time.Time{}, "not paid"
		}
		if h != nil {
			for _, e := range h.Reserved {
				at := e.At
				if at == "" && r.PaymentDetails != nil {
					at = r.PaymentDetails.ReservedAt
				}
				entries = append(entries, entry{at: at, amount: e.Amount})
			}
		}
	case "captured", "charged":
		if h != nil {
			list := h.Captured
			if c.status == "charged" {
				list = h.Charged
			}
			for _, e := range list {
				entries = append(entries, entry{at: e.At, amount: e.Amount})
			}
		}
	default:
		return time.Time{}, "not a reservation status"
	}
	found := false
	var best time.Time
	var bestGap time.Duration
	for _, e := range entries {
		if cents, err := e.amount.Cents(); err != nil || cents != c.cents {
			continue
		}
		found = true
		t, ok := parseTime(string(e.at), loc)
		if !ok {
			continue
		}
		gap := t.Sub(c.ts)
		if gap < 0 {
			gap = -gap
		}
		if best.IsZero() || gap < bestGap {
			best, bestGap = t, gap
		}
	}
	switch {
	case !found:
		return time.Time{}, "no " + c.status + " entry of " + frontpay.FromCents(c.cents).String()
	case best.IsZero():
		return minute(c.ts), "" // the entry has no readable time: the callback's
	}
	return minute(best), ""
}

// parseTime reads a time of the details: RFC 3339, a date and time without zone (in loc), the
// history's "02.01.2006 15:04", or Unix seconds (milliseconds when that large).
func parseTime(s string, loc *time.Location) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if timestampPattern.MatchString(s) || (len(s) == 13 && strings.Trim(s, "0123456789") == "") {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, false
		}
		if n > 1e11 {
			return time.UnixMilli(n).UTC(), true
		}
		return time.Unix(n, 0).UTC(), true
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), true
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", historyLayout} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}
