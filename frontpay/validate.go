package frontpay

import (
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Validator is a request that checks the documented rules. now is the time that "not in the past"
// rules compare with.
type Validator interface {
	Validate(now time.Time) error
}

var (
	digitsPattern         = regexp.MustCompile(`^[0-9]+$`)
	countryCodePattern    = regexp.MustCompile(`^\+[0-9]{1,4}$`)
	msisdnPattern         = regexp.MustCompile(`^[0-9]{4,15}$`)
	personalNumberPattern = regexp.MustCompile(`^[0-9]{11}$`)
	uuidPattern           = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// Languages are the documented values of preferredLanguage.
var Languages = []string{"en", "no", "sv", "da", "de"}

// dueDateGrace is how far in the past a payment link's due date may lie, so that a command built a
// moment ago with "now" as due date is not refused for the seconds it spent in transit.
const dueDateGrace = 5 * time.Minute

// rules collects broken rules under a field prefix.
type rules struct {
	now    time.Time
	prefix string
	errs   *[]FieldError
}

func newRules(now time.Time) rules {
	return rules{now: now, errs: new([]FieldError)}
}

func (r rules) in(prefix string) rules {
	r.prefix = r.prefix + prefix + "."
	return r
}

func (r rules) fail(field, rule, format string, args ...any) {
	*r.errs = append(*r.errs, FieldError{Field: r.prefix + field, Rule: rule, Message: fmt.Sprintf(format, args...)})
}

func (r rules) err() error {
	if len(*r.errs) == 0 {
		return nil
	}
	return &ValidationError{Fields: *r.errs}
}

// present fails a required object that is missing and reports whether it is there.
func (r rules) present(field string, ok bool) bool {
	if !ok {
		r.fail(field, "required", "is required")
	}
	return ok
}

func (r rules) required(field, v string) bool {
	if strings.TrimSpace(v) == "" {
		r.fail(field, "required", "is required")
		return false
	}
	return true
}

func (r rules) requiredBool(field string, v *bool) {
	r.present(field, v != nil)
}

func (r rules) oneOf(field, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	r.fail(field, "in", "must be one of %s", strings.Join(allowed, ", "))
}

func (r rules) email(field, v string) {
	a, err := mail.ParseAddress(v)
	if err != nil || a.Address != v || a.Name != "" || !strings.Contains(v[strings.LastIndexByte(v, '@')+1:], ".") {
		r.fail(field, "email", "must be a valid email address")
	}
}

func (r rules) pattern(field, v string, p *regexp.Regexp, rule, msg string) {
	if !p.MatchString(v) {
		r.fail(field, rule, "%s", msg)
	}
}

func (r rules) url(field, v string) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		r.fail(field, "url", "must be an absolute http or https URL")
	}
}

// optURL checks a URL only where one is given.
func (r rules) optURL(field, v string) {
	if v != "" {
		r.url(field, v)
	}
}

// number checks a required numeric field and reports whether it is there.
func (r rules) number(field string, n Number) bool {
	if n.IsZero() {
		r.fail(field, "required", "is required")
		return false
	}
	return true
}

// money checks a required amount: not negative, at most two decimals (whole øre).
func (r rules) money(field string, n Number) {
	if !r.number(field, n) {
		return
	}
	if n.Sign() < 0 {
		r.fail(field, "min", "must not be negative")
		return
	}
	if _, err := n.Cents(); err != nil {
		r.fail(field, "decimals", "must have at most two decimals")
	}
}

// positiveMoney is money that must be above zero, for the amount a call moves.
func (r rules) positiveMoney(field string, n Number) {
	r.money(field, n)
	if !n.IsZero() && n.Sign() == 0 {
		r.fail(field, "gt", "must be greater than 0")
	}
}

// taxRate checks a required tax rate: a percentage from 0 to 100.
func (r rules) taxRate(field string, n Number) {
	if !r.number(field, n) {
		return
	}
	if n.Sign() < 0 || n.Cmp(Num("100")) > 0 {
		r.fail(field, "between", "must be between 0 and 100")
	}
}

// unixTime checks a required Unix timestamp in seconds and returns it.
func (r rules) unixTime(field, v string) (time.Time, bool) {
	if !r.required(field, v) {
		return time.Time{}, false
	}
	s, err := strconv.ParseInt(v, 10, 64)
	if err != nil || s < 0 || !digitsPattern.MatchString(v) {
		r.fail(field, "digits", "must be a Unix timestamp in seconds")
		return time.Time{}, false
	}
	return time.Unix(s, 0), true
}

// dueDate checks that a payment link's due date is a Unix timestamp, now or later.
func (r rules) dueDate(field, v string) {
	if t, ok := r.unixTime(field, v); ok && t.Before(r.now.Add(-dueDateGrace)) {
		r.fail(field, "after_or_equal", "must be the current time or later")
	}
}

func (r rules) address(field string, a *Address) {
	if !r.present(field, a != nil) {
		return
	}
	ar := r.in(field)
	ar.required("street", a.Street)
	ar.required("zip", a.Zip)
	ar.required("city", a.City)
	if ar.required("country", a.Country) && !IsISOAlpha2(a.Country) {
		ar.fail("country", "iso_alpha2", "must be an ISO 3166-1 alpha-2 country code")
	}
}

// party checks what customers of orders and reservations share: type, name, language, personal
// number, organisation number and address.
func (r rules) party(typ, name, lang string, personalNumber, organizationID *string, orgMax int, addr *Address) {
	if r.required("type", typ) {
		r.oneOf("type", typ, "private", "corporate")
	}
	r.required("name", name)
	if r.required("preferredLanguage", lang) {
		r.oneOf("preferredLanguage", lang, Languages...)
	}
	if personalNumber != nil && *personalNumber != "" {
		r.pattern("personalNumber", *personalNumber, personalNumberPattern, "digits", "must be exactly 11 digits")
	}
	switch {
	case organizationID != nil && *organizationID != "":
		r.pattern("organizationId", *organizationID, digitsPattern, "digits", "must contain digits only")
		if orgMax > 0 && len(*organizationID) > orgMax {
			r.fail("organizationId", "max", "must be at most %d digits", orgMax)
		}
	case typ == "corporate":
		r.fail("organizationId", "required_if", "is required when type is corporate")
	}
	r.address("address", addr)
}

func (r rules) customer(c *Customer) {
	if !r.present("customerDetails", c != nil) {
		return
	}
	cr := r.in("customerDetails")
	if cr.required("countryCode", c.CountryCode) {
		cr.pattern("countryCode", c.CountryCode, countryCodePattern, "regex", `must be "+" and 1 to 4 digits, e.g. "+47"`)
	}
	if cr.required("msisdn", c.MSISDN) {
		cr.pattern("msisdn", c.MSISDN, msisdnPattern, "digits", "must be 4 to 15 digits without the country code")
	}
	if cr.required("email", c.Email) {
		cr.email("email", c.Email)
	}
	cr.party(c.Type, c.Name, c.PreferredLanguage, c.PersonalNumber, c.OrganizationID, 0, c.Address)
}

func (r rules) sendOrderBy(s *SendOrderBy, invoice bool) {
	if !r.present("sendOrderBy", s != nil) {
		return
	}
	sr := r.in("sendOrderBy")
	sr.requiredBool("sms", s.SMS)
	sr.requiredBool("email", s.Email)
	if invoice {
		sr.requiredBool("invoice", s.Invoice)
	}
}

func (r rules) reservationProducts(products Lines[ReservationProduct]) {
	if len(products) == 0 {
		r.fail("products", "required", "must list at least one product")
		return
	}
	for i, p := range products {
		pr := r.in("products." + strconv.Itoa(i))
		pr.required("name", p.Name)
		pr.money("rate", p.Rate)
		pr.taxRate("tax", p.Tax)
		pr.money("amount", p.Amount)
	}
}

func (r rules) reservationSummary(s *ReservationSummary) {
	if !r.present("orderSummary", s != nil) {
		return
	}
	sr := r.in("orderSummary")
	sr.money("subTotal", s.SubTotal)
	sr.money("totalTax", s.TotalTax)
	sr.positiveMoney("grandTotal", s.GrandTotal)
}

func (r rules) reservationCommon(c *Customer, orderDate, due string, send *SendOrderBy, products Lines[ReservationProduct],
	summary *ReservationSummary, chargeValidity *string, cb *Callback) {
	r.customer(c)
	r.unixTime("orderDate", orderDate)
	r.dueDate("dueDateForPaymentLink", due)
	r.sendOrderBy(send, false)
	r.reservationProducts(products)
	r.reservationSummary(summary)
	if chargeValidity != nil && *chargeValidity != "" {
		r.pattern("chargeValidity", *chargeValidity, digitsPattern, "digits", "must contain digits only")
	}
	if cb != nil {
		r.optURL("callback.callbackUrl", cb.CallbackURL)
		r.optURL("callback.success", cb.Success)
		r.optURL("callback.failure", cb.Failure)
	}
}

// Validate checks the documented rules of a reservation submit.
func (q *SubmitReservationRequest) Validate(now time.Time) error {
	r := newRules(now)
	r.reservationCommon(q.CustomerDetails, q.OrderDate, q.DueDateForPaymentLink, q.SendOrderBy, q.Products,
		q.OrderSummary, q.ChargeValidity, q.Callback)
	return r.err()
}

// Validate checks the documented rules of a session, which also needs submitPayment.via.
func (q *CreateSessionRequest) Validate(now time.Time) error {
	r := newRules(now)
	r.reservationCommon(q.CustomerDetails, q.OrderDate, q.DueDateForPaymentLink, q.SendOrderBy, q.Products,
		q.OrderSummary, q.ChargeValidity, q.Callback)
	if r.present("submitPayment", q.SubmitPayment != nil) && r.required("submitPayment.via", q.SubmitPayment.Via) {
		r.oneOf("submitPayment.via", q.SubmitPayment.Via, "visa", "mastercard")
	}
	return r.err()
}

// captureLines checks product lines that name a reservation product by id, and that the grand
// total is their sum.
func (r rules) captureLines(lines []CaptureLine, grandTotal Number) {
	r.positiveMoney("grandTotal", grandTotal)
	if len(lines) == 0 {
		r.fail("products", "required", "must list at least one product")
		return
	}
	var sum int64
	sumOK := true
	for i, l := range lines {
		lr := r.in("products." + strconv.Itoa(i))
		if lr.number("id", l.ID) {
			if _, err := strconv.ParseUint(l.ID.String(), 10, 63); err != nil {
				lr.fail("id", "integer", "must be a product id from the reservation details")
			}
		}
		lr.money("amount", l.Amount)
		c, err := l.Amount.Cents()
		sum += c
		sumOK = sumOK && err == nil
	}
	r.sumIs(sum, sumOK, grandTotal)
}

// sumIs fails grandTotal when it is not the sum of the product amounts.
func (r rules) sumIs(sum int64, sumOK bool, grandTotal Number) {
	if gt, err := grandTotal.Cents(); sumOK && err == nil && gt > 0 && gt != sum {
		r.fail("grandTotal", "sum", "must equal the sum of the products' amounts (%s)", FromCents(sum))
	}
}

// Validate checks a capture: product ids and amounts, and a grand total that is their sum.
func (q *CaptureRequest) Validate(time.Time) error {
	r := newRules(time.Time{})
	r.captureLines(q.Products, q.GrandTotal)
	return r.err()
}

// Validate checks a charge: named product lines and a grand total that is the sum of their amounts.
func (q *ChargeRequest) Validate(time.Time) error {
	r := newRules(time.Time{})
	r.positiveMoney("grandTotal", q.GrandTotal)
	r.reservationProducts(q.Products)
	var sum int64
	sumOK := true
	for _, p := range q.Products {
		c, err := p.Amount.Cents()
		sum += c
		sumOK = sumOK && err == nil
	}
	r.sumIs(sum, sumOK, q.GrandTotal)
	return r.err()
}

// Validate checks a refund: type, source, reference, lines and total.
func (q *RefundRequest) Validate(time.Time) error {
	r := newRules(time.Time{})
	if r.required("type", q.Type) {
		r.oneOf("type", q.Type, "reservation")
	}
	if r.required("source", q.Source) {
		r.oneOf("source", q.Source, "captured", "charged")
	}
	r.required("reference", q.Reference)
	r.captureLines(q.Products, q.GrandTotal)
	return r.err()
}

// Validate checks that the note of a cancel or complete is there.
func (q *NoteRequest) Validate(time.Time) error {
	r := newRules(time.Time{})
	r.required("note", q.Note)
	return r.err()
}

// Validate checks that the link can go somewhere: by SMS (countryCode and msisdn) or e-mail.
func (q *ResendRequest) Validate(time.Time) error {
	r := newRules(time.Time{})
	has := func(s *string) bool { return s != nil && strings.TrimSpace(*s) != "" }
	if has(q.CountryCode) {
		r.pattern("countryCode", *q.CountryCode, countryCodePattern, "regex", `must be "+" and 1 to 4 digits, e.g. "+47"`)
	}
	if has(q.MSISDN) {
		r.pattern("msisdn", *q.MSISDN, msisdnPattern, "digits", "must be 4 to 15 digits without the country code")
	}
	if has(q.Email) {
		r.email("email", *q.Email)
	}
	switch {
	case has(q.CountryCode) != has(q.MSISDN):
		if !has(q.CountryCode) {
			r.fail("countryCode", "required_with", "is required with msisdn")
		} else {
			r.fail("msisdn", "required_with", "is required with countryCode")
		}
	case !has(q.MSISDN) && !has(q.Email):
		r.fail("email", "required_without", "is required unless countryCode and msisdn are given")
	}
	return r.err()
}

// Validate checks the documented rules of an invoice order.
func (q *CreateOrderRequest) Validate(now time.Time) error {
	r := newRules(now)
	if len(q.Products) == 0 {
		r.fail("products", "required", "must list at least one product")
	}
	for i, p := range q.Products {
		pr := r.in("products." + strconv.Itoa(i))
		pr.required("name", p.Name)
		if pr.number("quantity", p.Quantity) && p.Quantity.Sign() <= 0 {
			pr.fail("quantity", "gt", "must be greater than 0")
		}
		pr.money("rate", p.Rate)
		if !p.Discount.IsZero() {
			pr.money("discount", p.Discount)
		}
		pr.taxRate("tax", p.Tax)
		pr.money("amount", p.Amount)
	}
	if r.present("orderSummary", q.OrderSummary != nil) {
		sr := r.in("orderSummary")
		sr.money("subTotal", q.OrderSummary.SubTotal)
		sr.money("totalTax", q.OrderSummary.TotalTax)
		sr.money("totalDiscount", q.OrderSummary.TotalDiscount)
		sr.positiveMoney("grandTotal", q.OrderSummary.GrandTotal)
	}
	r.required("orderDate", q.OrderDate)
	r.dueDate("dueDateForPaymentLink", q.DueDateForPaymentLink)
	r.sendOrderBy(q.SendOrderBy, true)
	r.requiredBool("isCreditCheckAvailable", q.IsCreditCheckAvailable)
	r.requiredBool("invoiceAsPaymentOption", q.InvoiceAsPaymentOption)
	if c := q.CustomerDetails; r.present("customerDetails", c != nil) {
		cr := r.in("customerDetails")
		has := func(s *string) bool { return s != nil && *s != "" }
		if has(c.CountryCode) {
			cr.pattern("countryCode", *c.CountryCode, countryCodePattern, "regex", `must be "+" and 1 to 4 digits, e.g. "+47"`)
		}
		if has(c.MSISDN) {
			cr.pattern("msisdn", *c.MSISDN, msisdnPattern, "digits", "must be 4 to 15 digits without the country code")
		}
		if has(c.Email) {
			cr.email("email", *c.Email)
		}
		if s := q.SendOrderBy; s != nil && s.SMS != nil && *s.SMS && !(has(c.CountryCode) && has(c.MSISDN)) {
			cr.fail("msisdn", "required_if", "and countryCode are required when sendOrderBy.sms is true")
		}
		if s := q.SendOrderBy; s != nil && s.Email != nil && *s.Email && !has(c.Email) {
			cr.fail("email", "required_if", "is required when sendOrderBy.email is true")
		}
		cr.party(c.Type, c.Name, c.PreferredLanguage, c.PersonalNumber, c.OrganizationID, 9, c.Address)
	}
	return r.err()
}

// ValidateUUID checks a path value such as a reservation or order UUID: 1 to 64 letters, digits,
// '-' or '_', so that it names one resource and cannot steer the request elsewhere.
func ValidateUUID(field, v string) error {
	r := newRules(time.Time{})
	if r.required(field, v) {
		r.pattern(field, v, uuidPattern, "alpha_dash", "must be 1 to 64 letters, digits, '-' or '_'")
	}
	return r.err()
}
