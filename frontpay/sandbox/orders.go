package sandbox

import (
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// OrderInfo is an invoice order as the test controls show it. The create answer carries data
// null, as documented, so tests find orders here.
type OrderInfo struct {
	Token           string    `json:"token"` // the token that created it
	UUID            string    `json:"uuid"`
	Status          string    `json:"status"` // SENT or PAID
	GrandTotalCents int64     `json:"grandTotalCents"`
	CreatedAt       time.Time `json:"createdAt"`
}

// createOrder creates an invoice order: POST /orders/invoice/create.
func (s *Sandbox) createOrder(c *call) answer {
	var q frontpay.CreateOrderRequest
	if a, ok := c.decode(&q); !ok {
		return a
	}
	o := &order{uuid: s.newID("ODR"), token: c.token, status: StatusSent, grandTotal: cents(q.OrderSummary.GrandTotal), createdAt: c.now}
	c.acct.orders[o.uuid] = o
	s.orderList = append(s.orderList, o)
	s.record(c, o.uuid, "", o.grandTotal)
	return success(201, "orderAddedSuccessfully", false, nil)
}

// resendOrder sends an order's payment link again: POST /orders/resend/{uuid}.
func (s *Sandbox) resendOrder(c *call) answer {
	var q frontpay.ResendRequest
	if a, ok := c.decode(&q); !ok {
		return a
	}
	o := c.acct.orders[c.params[0]]
	switch {
	case o == nil:
		return c.refuse("orderNotFound")
	case o.status == StatusPaid:
		return c.refuse("orderStatusAlreadyPaid")
	case o.status == StatusCancelled:
		return c.refuse("orderStatusAlreadyCancelled")
	}
	s.record(c, o.uuid, "", 0)
	return success(202, "resentOrderSuccessfully", true, nil)
}

// Orders lists the invoice orders of every account in the order they were created.
func (s *Sandbox) Orders() []OrderInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]OrderInfo, 0, len(s.orderList))
	for _, o := range s.orderList {
		out = append(out, OrderInfo{Token: o.token, UUID: o.uuid, Status: o.status, GrandTotalCents: o.grandTotal, CreatedAt: o.createdAt})
	}
	return out
}
