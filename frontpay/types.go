package frontpay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
)

// Lines is a `products` member. The documents send it as a JSON object keyed "0", "1", … and
// Laravel's `products.*` rules accept an array just as well, so Lines reads either and writes the
// documented object form.
type Lines[T any] []T

// MarshalJSON writes {"0": …, "1": …}; an empty or nil Lines is written as {}... except nil, which is
// null so that a missing products member stays missing.
func (l Lines[T]) MarshalJSON() ([]byte, error) {
	if l == nil {
		return []byte("null"), nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, item := range l {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%d":`, i)
		v, err := json.Marshal(item)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads an array, or an object whose members are taken in the order of their keys
// (numerically where every key is a number).
func (l *Lines[T]) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*l = nil
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		var items []T
		if err := json.Unmarshal(b, &items); err != nil {
			return err
		}
		*l = items
		return nil
	}
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("want an object or an array of products, got %s", jsonKind(b))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, errA := strconv.Atoi(keys[i])
		c, errC := strconv.Atoi(keys[j])
		if errA == nil && errC == nil {
			return a < c
		}
		return keys[i] < keys[j]
	})
	items := make([]T, len(keys))
	for i, k := range keys {
		if err := json.Unmarshal(m[k], &items[i]); err != nil {
			return fmt.Errorf("products.%s: %w", k, err)
		}
	}
	*l = items
	return nil
}

// Address is a customer's postal address.
type Address struct {
	Street  string `json:"street"`
	Zip     string `json:"zip"`
	City    string `json:"city"`
	Country string `json:"country"` // ISO 3166-1 alpha-2
}

// Customer is `customerDetails` of a reservation submit or session. UUID is only documented for
// submit (sent empty for a new customer).
type Customer struct {
	UUID              *string  `json:"uuid,omitempty"`
	Type              string   `json:"type"` // private or corporate
	CountryCode       string   `json:"countryCode"`
	MSISDN            string   `json:"msisdn"`
	Email             string   `json:"email"`
	Name              string   `json:"name"`
	PreferredLanguage string   `json:"preferredLanguage"`
	PersonalNumber    *string  `json:"personalNumber"`
	OrganizationID    *string  `json:"organizationId"`
	Address           *Address `json:"address"`
}

// LogValue keeps personal data out of logs: only the customer type is shown.
func (c Customer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("type", c.Type), slog.String("personal_data", "redacted"))
}

// OrderCustomer is `customerDetails` of an invoice order. Contact fields may be null there.
type OrderCustomer struct {
	CustomerUUID      *string  `json:"customerUuid,omitempty"`
	Type              string   `json:"type"`
	CountryCode       *string  `json:"countryCode"`
	MSISDN            *string  `json:"msisdn"`
	Email             *string  `json:"email"`
	Name              string   `json:"name"`
	PreferredLanguage string   `json:"preferredLanguage"`
	PersonalNumber    *string  `json:"personalNumber"`
	OrganizationID    *string  `json:"organizationId"`
	Address           *Address `json:"address"`
}

// LogValue keeps personal data out of logs: only the customer type is shown.
func (c OrderCustomer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("type", c.Type), slog.String("personal_data", "redacted"))
}

// SendOrderBy says how the payment link goes out. Invoice is only documented for orders.
type SendOrderBy struct {
	SMS     *bool `json:"sms"`
	Email   *bool `json:"email"`
	Invoice *bool `json:"invoice,omitempty"`
}

// ReservationProduct is one line of a reservation submit or session, and of a charge.
type ReservationProduct struct {
	Name      string  `json:"name"`
	ProductID *string `json:"productId"`
	Rate      Number  `json:"rate"`
	Tax       Number  `json:"tax"`
	Amount    Number  `json:"amount"`
}

// ReservationSummary is `orderSummary` of a reservation submit or session.
type ReservationSummary struct {
	SubTotal   Number `json:"subTotal"`
	TotalTax   Number `json:"totalTax"`
	GrandTotal Number `json:"grandTotal"`
}

// Settings are a reservation's optional settings.
type Settings struct {
	SecureDetails               *bool `json:"secureDetails,omitempty"`
	IsChargePartiallyRefundable *bool `json:"isChargePartiallyRefundable,omitempty"`
}

// Callback holds the URLs Front Payment calls or redirects to. Success and Failure are only
// documented for a session.
type Callback struct {
	CallbackURL string `json:"callbackUrl,omitempty"`
	Success     string `json:"success,omitempty"`
	Failure     string `json:"failure,omitempty"`
}

// SubmitReservationRequest is the body of POST /reservations/submit.
type SubmitReservationRequest struct {
	CustomerDetails       *Customer                 `json:"customerDetails"`
	OrderDate             string                    `json:"orderDate"`             // Unix seconds
	DueDateForPaymentLink string                    `json:"dueDateForPaymentLink"` // Unix seconds, not in the past
	ReferenceNo           *string                   `json:"referenceNo"`
	CustomerReference     *string                   `json:"customerReference"`
	SendOrderBy           *SendOrderBy              `json:"sendOrderBy"`
	Products              Lines[ReservationProduct] `json:"products"`
	OrderSummary          *ReservationSummary       `json:"orderSummary"`
	ChargeValidity        *string                   `json:"chargeValidity"`
	CustomerNotes         *string                   `json:"customerNotes"`
	TNC                   *string                   `json:"tnc"`
	Settings              *Settings                 `json:"settings,omitempty"`
	Callback              *Callback                 `json:"callback,omitempty"`
}

// SubmitPayment preselects the card scheme of a session.
type SubmitPayment struct {
	Via string `json:"via"` // visa or mastercard
}

// CreateSessionRequest is the body of POST /reservations/create: a reservation and its payment
// session in one call.
type CreateSessionRequest struct {
	CustomerDetails       *Customer                 `json:"customerDetails"`
	OrderDate             string                    `json:"orderDate"`
	DueDateForPaymentLink string                    `json:"dueDateForPaymentLink"`
	ReferenceNo           *string                   `json:"referenceNo"`
	CustomerReference     *string                   `json:"customerReference"`
	SendOrderBy           *SendOrderBy              `json:"sendOrderBy"`
	Products              Lines[ReservationProduct] `json:"products"`
	OrderSummary          *ReservationSummary       `json:"orderSummary"`
	ChargeValidity        *string                   `json:"chargeValidity"`
	CustomerNotes         *string                   `json:"customerNotes"`
	TNC                   *string                   `json:"tnc"`
	SubmitPayment         *SubmitPayment            `json:"submitPayment"`
	Callback              *Callback                 `json:"callback,omitempty"`
	Settings              *Settings                 `json:"settings,omitempty"`
}

// SubmitReservationResult is the data of a submitted reservation.
type SubmitReservationResult struct {
	CustomerUUID    string `json:"customerUuid"`
	ReservationUUID string `json:"reservationUuid"`
	CheckoutURL     string `json:"checkoutUrl"`
}

// SessionResult is the data of a created session.
type SessionResult struct {
	CustomerUUID    string `json:"customerUuid"`
	ReservationUUID string `json:"reservationUuid"`
	PaymentURL      string `json:"paymentUrl"`
}

// CaptureLine names a reservation product (its `id` from the details) and the amount to capture or
// refund from it.
type CaptureLine struct {
	ID     Number `json:"id"`
	Amount Number `json:"amount"`
}

// CaptureRequest is the body of POST /reservations/capture/{uuid}.
type CaptureRequest struct {
	Products       Lines[CaptureLine] `json:"products"`
	GrandTotal     Number             `json:"grandTotal"`
	AdditionalText *string            `json:"additionalText,omitempty"`
}

// ChargeRequest is the body of POST /reservations/charge/{uuid}: a merchant-initiated payment on the
// customer's stored card, outside the reserved amount.
type ChargeRequest struct {
	Products       Lines[ReservationProduct] `json:"products"`
	GrandTotal     Number                    `json:"grandTotal"`
	AdditionalText *string                   `json:"additionalText,omitempty"`
}

// PaymentResult is the data of a capture or charge: the reference that a refund names.
type PaymentResult struct {
	UUID string `json:"uuid"`
}

// NoteRequest is the body of cancel and complete.
type NoteRequest struct {
	Note string `json:"note"`
}

// ResendRequest is the body of both resend calls: SMS needs CountryCode and MSISDN, e-mail needs
// Email.
type ResendRequest struct {
	CountryCode *string `json:"countryCode"`
	MSISDN      *string `json:"msisdn"`
	Email       *string `json:"email"`
}

// LogValue keeps the phone number and address out of logs.
func (r ResendRequest) LogValue() slog.Value {
	return slog.GroupValue(slog.Bool("sms", r.MSISDN != nil), slog.Bool("email", r.Email != nil))
}

// RefundRequest is the body of POST /reservations/refund/{uuid}. Unlike the other calls, the
// documents send its products as an array.
type RefundRequest struct {
	Type       string        `json:"type"` // "reservation"
	GrandTotal Number        `json:"grandTotal"`
	Products   []CaptureLine `json:"products"`
	Source     string        `json:"source"`    // captured or charged
	Reference  string        `json:"reference"` // the capture's or charge's uuid
}

// OrderProduct is one line of an invoice order.
type OrderProduct struct {
	Name      string  `json:"name"`
	ProductID *string `json:"productId"`
	Quantity  Number  `json:"quantity"`
	Rate      Number  `json:"rate"`
	Discount  Number  `json:"discount"`
	Tax       Number  `json:"tax"`
	Amount    Number  `json:"amount"`
}

// OrderSummary is `orderSummary` of an invoice order.
type OrderSummary struct {
	SubTotal      Number `json:"subTotal"`
	TotalTax      Number `json:"totalTax"`
	TotalDiscount Number `json:"totalDiscount"`
	GrandTotal    Number `json:"grandTotal"`
}

// InvoiceReferences are printed on the invoice.
type InvoiceReferences struct {
	ReferenceNo       *string `json:"referenceNo"`
	CustomerReference *string `json:"customerReference"`
	ReceiptNo         *string `json:"receiptNo"`
	CustomerNotes     *string `json:"customerNotes"`
	TNC               *string `json:"tnc"`
}

// InternalReferences stay with the merchant.
type InternalReferences struct {
	ReferenceNo *string `json:"referenceNo"`
	Notes       *string `json:"notes"`
}

// CreateOrderRequest is the body of POST /orders/invoice/create.
type CreateOrderRequest struct {
	Products               Lines[OrderProduct] `json:"products"`
	OrderSummary           *OrderSummary       `json:"orderSummary"`
	OrderDate              string              `json:"orderDate"`             // free text, e.g. "5 Dec, 2023"
	DueDateForPaymentLink  string              `json:"dueDateForPaymentLink"` // Unix seconds
	SendOrderBy            *SendOrderBy        `json:"sendOrderBy"`
	InvoiceAsPaymentOption *bool               `json:"invoiceAsPaymentOption"`
	IsCreditCheckAvailable *bool               `json:"isCreditCheckAvailable"`
	CustomerDetails        *OrderCustomer      `json:"customerDetails"`
	InvoiceReferences      *InvoiceReferences  `json:"invoiceReferences,omitempty"`
	InternalReferences     *InternalReferences `json:"internalReferences,omitempty"`
}

// CreateOrderResult is the data of a created order. The document shows `data: null`; where an
// API answers with identifiers they are decoded here.
type CreateOrderResult struct {
	OrderUUID    string `json:"orderUuid,omitempty"`
	CustomerUUID string `json:"customerUuid,omitempty"`
	PaymentURL   string `json:"paymentUrl,omitempty"`
}

// Reservation is the data of GET /reservations/details/{uuid}.
type Reservation struct {
	ReservationUUID     string               `json:"reservationUuid"`
	Status              string               `json:"status"`
	IsPaid              bool                 `json:"isPaid"`
	ProductList         []DetailsProduct     `json:"productList"`
	GrandTotal          Number               `json:"grandTotal"`
	ReservationDate     Text                 `json:"reservationDate"`
	PaymentLinkDueDate  Text                 `json:"paymentLinkDueDate"`
	SendOrderBy         *SendOrderBy         `json:"sendOrderBy"`
	CustomerDetails     *DetailsCustomer     `json:"customerDetails"`
	ReferenceNumber     *string              `json:"referenceNumber"`
	ChargeValidity      *string              `json:"chargeValidity"`
	CustomerReference   *string              `json:"customerReference"`
	CustomerNotes       *string              `json:"customerNotes"`
	TermsAndCondition   *string              `json:"termsAndCondition"`
	PaymentDetails      *PaymentDetails      `json:"paymentDetails"`
	OrganizationDetails *OrganizationDetails `json:"organizationDetails"`
	TranslationKey      string               `json:"translationKey"`
	PaymentHistory      *PaymentHistory      `json:"paymentHistory"`
}

// DetailsProduct is one line of a reservation as the details show it; ID is what capture and
// refund name.
type DetailsProduct struct {
	ID        Number  `json:"id"`
	Name      string  `json:"name"`
	ProductID *string `json:"productId"`
	Quantity  Number  `json:"quantity"`
	Rate      Number  `json:"rate"`
	Discount  Number  `json:"discount"`
	Tax       Number  `json:"tax"`
	Amount    Number  `json:"amount"`
	Reserved  Number  `json:"reserved"`
	Captured  Number  `json:"captured"`
}

// DetailsCustomer is the customer as the details show it.
type DetailsCustomer struct {
	CountryCode string   `json:"countryCode"`
	MSISDN      string   `json:"msisdn"`
	Email       string   `json:"email"`
	Name        string   `json:"name"`
	Address     *Address `json:"address"`
}

// LogValue keeps personal data out of logs.
func (DetailsCustomer) LogValue() slog.Value { return slog.StringValue("redacted") }

// PaymentDetails sums up a reservation's money.
type PaymentDetails struct {
	ReservedAt     Text           `json:"reservedAt"`
	ReservedAmount Number         `json:"reservedAmount"`
	CapturedAmount Number         `json:"capturedAmount"`
	ChargedAmount  Number         `json:"chargedAmount"`
	AmountRefunded AmountRefunded `json:"amountRefunded"`
}

// AmountRefunded splits refunds by their source.
type AmountRefunded struct {
	FromCaptured Number `json:"fromCaptured"`
	FromCharge   Number `json:"fromCharge"`
}

// OrganizationDetails is the merchant.
type OrganizationDetails struct {
	Name           string          `json:"name"`
	BillingAddress *BillingAddress `json:"billingAddress"`
}

// BillingAddress is the merchant's billing address.
type BillingAddress struct {
	CountryCode string `json:"countryCode"`
	MSISDN      string `json:"msisdn"`
	Email       string `json:"email"`
	Street      string `json:"street"`
	Zip         string `json:"zip"`
	City        string `json:"city"`
	Country     string `json:"country"`
}

// PaymentHistory lists every money movement of a reservation.
type PaymentHistory struct {
	Reserved []HistoryAmount  `json:"reserved"`
	Captured []HistoryPayment `json:"captured"`
	Charged  []HistoryPayment `json:"charged"`
	Refunded []HistoryRefund  `json:"refunded"`
}

// HistoryAmount is one reservation of money.
type HistoryAmount struct {
	At     Text   `json:"at"`
	Amount Number `json:"amount"`
}

// HistoryPayment is one capture or charge; Reference is its uuid.
type HistoryPayment struct {
	At             Text    `json:"at"`
	Amount         Number  `json:"amount"`
	Reference      string  `json:"reference"`
	IsRefunded     bool    `json:"isRefunded"`
	Refunded       Number  `json:"refunded"`
	AdditionalText *string `json:"additionalText"`
}

// HistoryRefund is one refund; Reference is the capture or charge it came from.
type HistoryRefund struct {
	At         Text   `json:"at"`
	Amount     Number `json:"amount"`
	Reference  string `json:"reference"`
	IsRefunded bool   `json:"isRefunded"`
	IsPartial  bool   `json:"isPartial"`
}

// HistoryEvent is one entry of GET /reservations/history/{start}/{end}.
type HistoryEvent struct {
	UUID          string  `json:"uuid"`
	Title         string  `json:"title"`
	Datetime      string  `json:"datetime"` // "21.01.2024 04:00"
	SentTo        string  `json:"sentTo"`
	ActionBy      *string `json:"actionBy"`
	Note          *string `json:"note"`
	PaymentMethod *string `json:"paymentMethod"`
	IsRefundable  bool    `json:"isRefundable"`
	Amount        Number  `json:"amount"`
}

// LogValue leaves out SentTo, which holds a phone number or e-mail address.
func (e HistoryEvent) LogValue() slog.Value {
	return slog.GroupValue(slog.String("uuid", e.UUID), slog.String("title", e.Title), slog.String("datetime", e.Datetime))
}
