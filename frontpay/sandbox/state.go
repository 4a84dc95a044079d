package sandbox

import (
	"strconv"
	"strings"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// Reservation statuses as the details show them.
const (
	StatusSent      = "SENT"
	StatusReserved  = "RESERVED"
	StatusCaptured  = "CAPTURED"
	StatusCharged   = "CHARGED"
	StatusCompleted = "COMPLETED"
	StatusCancelled = "CANCELLED"
	StatusExpired   = "EXPIRED"
	StatusPaid      = "PAID" // orders only
)

// Payment sources, as a refund names them.
const (
	sourceCaptured = "captured"
	sourceCharged  = "charged"
)

// defaultChargeValidityDays applies when a reservation has no chargeValidity.
const defaultChargeValidityDays = 90

// reservation is one reservation and everything that happened to it.
type reservation struct {
	uuid           string
	token          string // the token that made it, for the effects no call causes
	customerUUID   string
	status         string
	paymentMethod  string
	customer       *frontpay.Customer
	orderDate      time.Time
	due            time.Time
	referenceNo    *string
	customerRef    *string
	sendOrderBy    *frontpay.SendOrderBy
	chargeValidity *string
	customerNotes  *string
	tnc            *string
	settings       *frontpay.Settings
	callbackURL    string
	grandTotal     int64 // cents
	lines          []*line
	reservedAt     time.Time // zero until the customer pays
	payments       []*payment
	refunds        []refundEntry
	refundedFrom   map[string]int64 // source → cents
}

// line is one product line: a reserved one from submit, or one a charge added.
type line struct {
	id        int64
	name      string
	productID *string
	rate      int64
	tax       frontpay.Number
	amount    int64
	reserved  int64
	captured  int64
}

// payment is one capture or charge.
type payment struct {
	uuid           string
	source         string // captured or charged
	at             time.Time
	amount         int64
	additionalText *string
	lines          map[int64]int64 // product id → cents in this payment
	refunded       map[int64]int64 // product id → cents refunded
	refundedTotal  int64
}

// refundEntry is one refund.
type refundEntry struct {
	at        time.Time
	amount    int64
	reference string
	partial   bool
}

// order is one invoice order.
type order struct {
	uuid       string
	token      string // the token that made it
	status     string
	grandTotal int64
	createdAt  time.Time
}

// historyEvent is one entry of the history endpoint.
type historyEvent struct {
	uuid          string
	title         string
	at            time.Time
	sentTo        string
	note          *string
	paymentMethod *string
	refundable    bool
	amount        int64
}

// newID returns prefix followed by ten random digits, not handed out before.
func (s *Sandbox) newID(prefix string) string {
	for {
		id := prefix + strconv.FormatInt(1_000_000_000+s.idRng.Int64N(9_000_000_000), 10)
		if !s.ids[id] {
			s.ids[id] = true
			return id
		}
	}
}

// lineID returns the next product line id, unique across the sandbox.
func (s *Sandbox) lineID() int64 {
	id := s.nextLineID
	s.nextLineID++
	return id
}

// addEvent appends a history event of the account.
func (a *account) addEvent(e historyEvent) {
	a.events = append(a.events, e)
}

// lookup finds a reservation of the account and brings its status up to date with the clock: a
// SENT reservation whose payment link is past due is EXPIRED.
func (a *account) lookup(uuid string, now time.Time) *reservation {
	r := a.reservations[uuid]
	if r != nil && r.status == StatusSent && now.After(r.due) {
		r.status = StatusExpired
		a.addEvent(historyEvent{uuid: r.uuid, title: "expired", at: r.due, amount: r.grandTotal})
	}
	return r
}

// expireAll brings the status of every reservation of the account up to date.
func (a *account) expireAll(now time.Time) {
	for uuid := range a.reservations {
		a.lookup(uuid, now)
	}
}

// paid reports whether the customer has paid (a card is on file).
func (r *reservation) paid() bool { return !r.reservedAt.IsZero() }

// line finds a product line by id.
func (r *reservation) line(id int64) *line {
	for _, l := range r.lines {
		if l.id == id {
			return l
		}
	}
	return nil
}

// payment finds a capture or charge of the reservation by its uuid and source.
func (r *reservation) payment(uuid, source string) *payment {
	for _, p := range r.payments {
		if p.uuid == uuid && p.source == source {
			return p
		}
	}
	return nil
}

// total sums the payments of a source.
func (r *reservation) total(source string) int64 {
	var sum int64
	for _, p := range r.payments {
		if p.source == source {
			sum += p.amount
		}
	}
	return sum
}

// contact is where the payment link went: the e-mail address, else the phone number.
func contact(email, countryCode, msisdn *string) string {
	switch {
	case email != nil && *email != "":
		return *email
	case msisdn != nil && *msisdn != "":
		return deref(countryCode) + *msisdn
	}
	return ""
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// money writes cents as a JSON number with two decimals.
func money(c int64) frontpay.Number { return frontpay.FromCents(c) }

// rfc3339 writes a time for the details, "" when zero.
func rfc3339(t time.Time) frontpay.Text {
	if t.IsZero() {
		return ""
	}
	return frontpay.Text(t.UTC().Format(time.RFC3339))
}

// view renders the reservation as the details endpoint shows it.
func (r *reservation) view() frontpay.Reservation {
	v := frontpay.Reservation{
		ReservationUUID:    r.uuid,
		Status:             r.status,
		IsPaid:             r.paid(),
		ProductList:        make([]frontpay.DetailsProduct, 0, len(r.lines)),
		GrandTotal:         money(r.grandTotal),
		ReservationDate:    rfc3339(r.orderDate),
		PaymentLinkDueDate: rfc3339(r.due),
		SendOrderBy:        r.sendOrderBy,
		CustomerDetails: &frontpay.DetailsCustomer{
			CountryCode: r.customer.CountryCode,
			MSISDN:      r.customer.MSISDN,
			Email:       r.customer.Email,
			Name:        r.customer.Name,
			Address:     r.customer.Address,
		},
		ReferenceNumber:   r.referenceNo,
		ChargeValidity:    r.chargeValidity,
		CustomerReference: r.customerRef,
		CustomerNotes:     r.customerNotes,
		TermsAndCondition: r.tnc,
		PaymentDetails: &frontpay.PaymentDetails{
			ReservedAt:     rfc3339(r.reservedAt),
			CapturedAmount: money(r.total(sourceCaptured)),
			ChargedAmount:  money(r.total(sourceCharged)),
			ReservedAmount: money(0),
			AmountRefunded: frontpay.AmountRefunded{
				FromCaptured: money(r.refundedFrom[sourceCaptured]),
				FromCharge:   money(r.refundedFrom[sourceCharged]),
			},
		},
		OrganizationDetails: &organization,
		TranslationKey:      "reservation.status." + strings.ToLower(r.status),
		PaymentHistory: &frontpay.PaymentHistory{
			Reserved: []frontpay.HistoryAmount{},
			Captured: []frontpay.HistoryPayment{},
			Charged:  []frontpay.HistoryPayment{},
			Refunded: []frontpay.HistoryRefund{},
		},
	}
	for _, l := range r.lines {
		v.ProductList = append(v.ProductList, frontpay.DetailsProduct{
			ID: frontpay.Num(strconv.FormatInt(l.id, 10)), Name: l.name, ProductID: l.productID,
			Quantity: money(100), Rate: money(l.rate), Discount: money(0), Tax: l.tax,
			Amount: money(l.amount), Reserved: money(l.reserved), Captured: money(l.captured),
		})
	}
	h := v.PaymentHistory
	if r.paid() {
		v.PaymentDetails.ReservedAmount = money(r.grandTotal)
		h.Reserved = append(h.Reserved, frontpay.HistoryAmount{At: rfc3339(r.reservedAt), Amount: money(r.grandTotal)})
	}
	for _, p := range r.payments {
		hp := frontpay.HistoryPayment{
			At: rfc3339(p.at), Amount: money(p.amount), Reference: p.uuid,
			IsRefunded: p.refundedTotal > 0 && p.refundedTotal == p.amount, Refunded: money(p.refundedTotal),
			AdditionalText: p.additionalText,
		}
		if p.source == sourceCaptured {
			h.Captured = append(h.Captured, hp)
		} else {
			h.Charged = append(h.Charged, hp)
		}
	}
	for _, f := range r.refunds {
		h.Refunded = append(h.Refunded, frontpay.HistoryRefund{
			At: rfc3339(f.at), Amount: money(f.amount), Reference: f.reference, IsRefunded: true, IsPartial: f.partial,
		})
	}
	return v
}

// organization is the sandbox's merchant.
var organization = frontpay.OrganizationDetails{
	Name: "Sandbox Merchant AS",
	BillingAddress: &frontpay.BillingAddress{
		CountryCode: "+47", MSISDN: "40000000", Email: "merchant@sandbox.invalid",
		Street: "Sandveien 1", Zip: "0150", City: "Oslo", Country: "NO",
	},
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func itoa(i int) string { return strconv.Itoa(i) }
