package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"

	"github.com/nordpay/frontpay-worker/frontpay"
)

var (
	// ErrNotFound means no reservation or order has the uuid.
	ErrNotFound = errors.New("sandbox: not found")
	// ErrNotPayable means the reservation or order is not waiting for the customer's payment.
	ErrNotPayable = errors.New("sandbox: not payable")
)

// Pay is the customer paying a reservation of any account at checkout: SENT → RESERVED, which
// fires the callback. An expired, paid or cancelled reservation is ErrNotPayable.
func (s *Sandbox) Pay(reservationUUID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	a, r := s.find(reservationUUID, now)
	if r == nil {
		return fmt.Errorf("%w: reservation %q", ErrNotFound, reservationUUID)
	}
	if r.status != StatusSent {
		return fmt.Errorf("%w: reservation %s is %s", ErrNotPayable, r.uuid, r.status)
	}
	r.status = StatusReserved
	r.reservedAt = now
	for _, l := range r.lines {
		l.reserved = l.amount
	}
	a.addEvent(historyEvent{uuid: r.uuid, title: "reserved", at: now, amount: r.grandTotal, paymentMethod: &r.paymentMethod})
	s.appendEffect(Effect{At: now, Token: r.token, Op: "customer.pay", UUID: r.uuid, Cents: r.grandTotal})
	s.notify(a, r, "reserved", r.grandTotal, now)
	return nil
}

// Reserve adds a reservation under a UUID chosen by the caller, as if submitted with req and paid
// by the customer: RESERVED, ready to capture, charge or cancel. It is for a sandbox that must
// hold a reservation known in advance (frontpay-worker dev seeds one for the README's examples).
// The submit and the payment are in the ledger and the history as for any reservation, and the
// callback fires where req names one. A UUID already taken (in any account) or of a shape the
// API would not hand out is an error, as is a req the API would refuse. The reservation is in the
// account of the first token (Options.Token, else the first of Options.Tokens or AddToken).
func (s *Sandbox) Reserve(uuid string, req *frontpay.SubmitReservationRequest) error {
	s.mu.Lock()
	t, err := s.firstToken()
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.ReserveFor(t.token, uuid, req)
}

// ReserveFor is Reserve in the account of token, which made the reservation as far as the ledger
// says; an unknown token is ErrUnknownToken.
func (s *Sandbox) ReserveFor(token, uuid string, req *frontpay.SubmitReservationRequest) error {
	if err := frontpay.ValidateUUID("uuid", uuid); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("sandbox: encode the submit: %w", err)
	}
	s.mu.Lock()
	t, err := s.token(token)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	c := &call{token: t.token, acct: t.acct, op: frontpay.ReservationSubmit, body: body, now: s.clock()}
	if err := req.Validate(c.now); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("sandbox: the submit would be refused: %w", err)
	}
	if s.ids[uuid] {
		s.mu.Unlock()
		return fmt.Errorf("sandbox: %s is taken", uuid)
	}
	s.ids[uuid] = true
	s.open(c, req, "visa", uuid)
	s.mu.Unlock()
	return s.Pay(uuid)
}

// PayOrder is the customer paying an invoice order of any account: SENT → PAID.
func (s *Sandbox) PayOrder(orderUUID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.findOrder(orderUUID)
	if o == nil {
		return fmt.Errorf("%w: order %q", ErrNotFound, orderUUID)
	}
	if o.status != StatusSent {
		return fmt.Errorf("%w: order %s is %s", ErrNotPayable, o.uuid, o.status)
	}
	o.status = StatusPaid
	s.appendEffect(Effect{At: s.clock(), Token: o.token, Op: "order.pay", UUID: o.uuid, Cents: o.grandTotal})
	return nil
}

// payAny pays a reservation or an order, whichever has the uuid.
func (s *Sandbox) payAny(uuid string) error {
	if err := s.Pay(uuid); !errors.Is(err, ErrNotFound) {
		return err
	}
	return s.PayOrder(uuid)
}

// controlMux serves the test controls, which need no token:
//
//	GET  /sandbox/ledger                   the effects, a JSON array of Effect
//	PUT  /sandbox/faults/{operation}       set a Fault (JSON; {} clears)
//	PUT  /sandbox/ratelimit                {"perMinute": n}
//	POST /sandbox/tokens                   {"token": t} a new account; {"token": t, "rotates": old} old's account
//	POST /sandbox/tokens/revoke            {"token": t}
//	GET  /sandbox/traffic                  every token's requests, a JSON array of Traffic
//	POST /sandbox/reservations/{uuid}/pay  the customer pays a reservation
//	POST /sandbox/orders/{uuid}/pay        the customer pays an order
//	GET  /sandbox/orders                   the orders, a JSON array of OrderInfo
//	GET  /checkout/{uuid}                  a checkout page with a Pay button
//	POST /checkout/{uuid}                  the Pay button
//
// The faults and the rate limit are set for every token, or, when the control request carries
// "Authorization: Bearer <token>", for that token only.
func (s *Sandbox) controlMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sandbox/ledger", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Ledger())
	})
	mux.HandleFunc("GET /sandbox/orders", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Orders())
	})
	mux.HandleFunc("PUT /sandbox/faults/{operation}", s.putFault)
	mux.HandleFunc("PUT /sandbox/ratelimit", s.putRateLimit)
	mux.HandleFunc("POST /sandbox/tokens", s.postToken)
	mux.HandleFunc("POST /sandbox/tokens/revoke", s.revokeToken)
	mux.HandleFunc("GET /sandbox/traffic", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Traffic())
	})
	mux.HandleFunc("POST /sandbox/reservations/{uuid}/pay", func(w http.ResponseWriter, r *http.Request) {
		s.answerPay(w, r.PathValue("uuid"), s.Pay(r.PathValue("uuid")))
	})
	mux.HandleFunc("POST /sandbox/orders/{uuid}/pay", func(w http.ResponseWriter, r *http.Request) {
		s.answerPay(w, r.PathValue("uuid"), s.PayOrder(r.PathValue("uuid")))
	})
	mux.HandleFunc("GET /checkout/{uuid}", func(w http.ResponseWriter, r *http.Request) {
		s.checkout(w, r.PathValue("uuid"), "", http.StatusOK)
	})
	mux.HandleFunc("POST /checkout/{uuid}", func(w http.ResponseWriter, r *http.Request) {
		msg, status := "Thank you, the payment went through.", http.StatusOK
		if err := s.payAny(r.PathValue("uuid")); err != nil {
			msg, status = err.Error(), http.StatusConflict
		}
		s.checkout(w, r.PathValue("uuid"), msg, status)
	})
	return mux
}

// controlError answers a control request with {"error": …}.
func controlError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (s *Sandbox) putFault(w http.ResponseWriter, r *http.Request) {
	op := frontpay.Operation(r.PathValue("operation"))
	if !op.Valid() {
		controlError(w, http.StatusNotFound, fmt.Errorf("unknown operation %q", op))
		return
	}
	var f Fault
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&f); err != nil {
		controlError(w, http.StatusBadRequest, err)
		return
	}
	if err := f.validate(); err != nil {
		controlError(w, http.StatusBadRequest, err)
		return
	}
	if token, scoped := controlToken(r); scoped {
		answerToken(w, s.SetTokenFault(token, op, f))
		return
	}
	s.SetFault(op, f)
	w.WriteHeader(http.StatusNoContent)
}

// controlToken is the token a control request names in its Authorization header, if it names one.
func controlToken(r *http.Request) (string, bool) {
	if r.Header.Get("Authorization") == "" {
		return "", false
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", true // an unknown token below
	}
	return strings.TrimSpace(token), true
}

// answerToken answers a control of one token: 204, or 404 for an unknown token.
func answerToken(w http.ResponseWriter, err error) {
	if err != nil {
		controlError(w, http.StatusNotFound, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sandbox) putRateLimit(w http.ResponseWriter, r *http.Request) {
	var v struct {
		PerMinute *int `json:"perMinute"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&v); err != nil || v.PerMinute == nil {
		controlError(w, http.StatusBadRequest, errors.New(`want {"perMinute": n}`))
		return
	}
	if token, scoped := controlToken(r); scoped {
		answerToken(w, s.SetTokenRateLimit(token, *v.PerMinute))
		return
	}
	s.SetRateLimit(*v.PerMinute)
	w.WriteHeader(http.StatusNoContent)
}

// tokenRequest is the body of the token controls.
type tokenRequest struct {
	Token   string `json:"token"`
	Rotates string `json:"rotates"` // POST /sandbox/tokens: the token whose account the new one joins
}

// readTokenRequest decodes a token control's body; false when it answered 400.
func readTokenRequest(w http.ResponseWriter, r *http.Request) (tokenRequest, bool) {
	var v tokenRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&v); err != nil || v.Token == "" {
		controlError(w, http.StatusBadRequest, errors.New(`want {"token": t}`))
		return v, false
	}
	return v, true
}

func (s *Sandbox) postToken(w http.ResponseWriter, r *http.Request) {
	v, ok := readTokenRequest(w, r)
	if !ok {
		return
	}
	var err error
	if v.Rotates != "" {
		err = s.RotateToken(v.Rotates, v.Token)
	} else {
		err = s.AddToken(v.Token)
	}
	switch {
	case errors.Is(err, ErrUnknownToken):
		controlError(w, http.StatusNotFound, err)
	case err != nil:
		controlError(w, http.StatusConflict, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Sandbox) revokeToken(w http.ResponseWriter, r *http.Request) {
	v, ok := readTokenRequest(w, r)
	if !ok {
		return
	}
	answerToken(w, s.RevokeToken(v.Token))
}

// answerPay answers a pay control: 200 with the new status, 404 or 409.
func (s *Sandbox) answerPay(w http.ResponseWriter, uuid string, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		controlError(w, http.StatusNotFound, err)
	case err != nil:
		controlError(w, http.StatusConflict, err)
	default:
		page := s.page(uuid)
		writeJSON(w, http.StatusOK, map[string]string{"uuid": uuid, "status": page.Status})
	}
}

// checkoutPage is what the checkout shows of a reservation or an order.
type checkoutPage struct {
	UUID, Kind, Status, Amount, Message string
	Payable, Found                      bool
}

// page looks up what the checkout shows.
func (s *Sandbox) page(uuid string) checkoutPage {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := checkoutPage{UUID: uuid}
	if _, r := s.find(uuid, s.clock()); r != nil {
		p.Kind, p.Status, p.Amount, p.Found = "Reservation", r.status, money(r.grandTotal).String(), true
	} else if o := s.findOrder(uuid); o != nil {
		p.Kind, p.Status, p.Amount, p.Found = "Order", o.status, money(o.grandTotal).String(), true
	}
	p.Payable = p.Status == StatusSent
	return p
}

var checkoutTemplate = template.Must(template.New("checkout").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Front Payment sandbox checkout</title></head>
<body>
<h1>Sandbox checkout</h1>
{{if .Found}}<p>{{.Kind}} {{.UUID}}: NOK {{.Amount}}, status {{.Status}}</p>{{else}}<p>Nothing to pay for {{.UUID}}.</p>{{end}}
{{with .Message}}<p>{{.}}</p>{{end}}
{{if .Payable}}<form method="post" action="/checkout/{{.UUID}}"><button type="submit">Pay</button></form>{{end}}
</body></html>
`))

// checkout renders the checkout page with status (404 when nothing has the uuid), and a message
// after a payment attempt.
func (s *Sandbox) checkout(w http.ResponseWriter, uuid, message string, status int) {
	p := s.page(uuid)
	p.Message = message
	if !p.Found {
		status = http.StatusNotFound
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = checkoutTemplate.Execute(w, p)
}
