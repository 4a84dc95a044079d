// Package frontpay is a client for Front Payment's "Connect" API: invoice orders and card
// reservations (submit, session, details, capture, charge, cancel, complete, resend, refund,
// history).
//
// Every request type mirrors the API documents field for field and checks their rules in
// Validate, so a bad request fails before it is sent. Numeric fields are Number, which takes what
// the API takes (1, 51.00, "0", "51.00") and keeps the exact text, so money is never rounded.
//
// Each call is one HTTP attempt. A failure is a *ValidationError (nothing sent) or an *Error
// mirroring the API's error envelope; Classify sorts it into Permanent, Retryable (nothing reached
// the API, or 429) and Ambiguous (sent, outcome unknown). Ambiguous matters for the calls that move
// money: read the reservation back before sending again.
//
// The client never sends an Idempotency-Key header and clears Request.GetBody, so net/http never
// resends a request with a body on its own (it may repeat a bodiless GET, a read); and the bearer
// token never appears in an error or a log value.
package frontpay
