// Package status publishes the status events of CONTRACT.md section 8: reservation.status.changed
// and order.status.changed, learnt from Front Payment's callbacks (GET /callbacks/frontpay) and
// from the reservation history poll (FRONTPAY_HISTORY_POLL), which catches changes whose callback
// never came.
//
// # One change, one event
//
// A callback carries its time in seconds, the history endpoint in minutes ("21.01.2024 04:00").
// So that both paths name the same change the same way, a change is canonicalised as
//
//	(uuid, status in lower case, amount with two decimals, at)
//
// where at is the time of the change truncated to the minute, in RFC 3339 UTC
// ("2024-01-21T04:00:00Z"). The event's id is EventID: schemas.StatusID(uuid, status, at+"/"+amount),
// a name-based UUID. The amount is folded into the id so that two changes of one reservation in the
// same minute with different amounts (two partial captures, say) stay two events; the contract's
// "id derived from UUID, status and time" still holds, the amount only refines it.
//
// Documented limitation: two changes of one reservation with the same status and the same amount
// within the same minute (two captures of 50.00 at 10:04:05 and 10:04:40) are one event. The history
// endpoint cannot tell them apart either.
//
// On the callback path the time of the change is taken from the reservation as read back
// (paymentHistory.reserved/captured/charged[].at of the matching entry, the one closest to the
// callback's timestamp), not from the callback's timestamp, which is when the callback was sent and
// may fall into the next minute. Only when the read-back has no readable time is the callback's
// timestamp used.
//
// # Deduplication
//
// Before publishing, the state bucket is asked for the key "status.<id>" (the id is itself a hash
// of the canonical change). If it is there the change was published before and is skipped.
// Otherwise the event is published with Nats-Msg-Id = id and then the key is created. A crash
// between the two publishes the event again later with the same id: within JetStream's duplicate
// window the server drops the copy; later the stored copy is the same event (same id), which a
// consumer dedupes by id. Two replicas racing on one change both publish the same id and one Create
// wins; the other's ErrKeyExists is ignored. Keys live as long as the bucket's TTL (100 days).
//
// # Callbacks
//
// Nothing in a callback is trusted until the reservation has been read back with the details call:
// the handler checks the parameters, answers 202 at once and verifies in the background (at most
// Config.MaxInFlight verifications; beyond that, and after Close, it answers 503 so that Front
// Payment tries again). Read-backs have a bounded share of the API rate and are shared by the
// callbacks of one reservation (share.go): a callback that would have to wait too long for its
// share is answered 503 as well. An event is published only if the read-back agrees:
//
//   - reserved: isPaid and a paymentHistory.reserved entry of the amount;
//   - captured: a paymentHistory.captured entry of the amount;
//   - charged: a paymentHistory.charged entry of the amount.
//
// The event carries only what was confirmed: the uuid, status, amount and time. A callback's
// paymentMethod is covered by neither the details (which have no such field) nor the checksum,
// so it is checked for form and left out (CONTRACT.md section 8); only history events, the API's
// own account, carry a payment method. A forged one is therefore never published, and the
// history poll, finding the change published, is right that nothing is missing.
//
// A read-back that fails transiently or disagrees is tried again (Config.ReadBackAttempts, with a
// doubling delay from Config.ReadBackDelay), since a callback may overtake the state it reports.
// A 404 ends the verification at once: the uuid is not a reservation and no event is published.
// Whatever a callback misses this way, the history poll still finds if it happened.
//
// Order callbacks (status paid or invoiced) cannot be read back: none of the project's twelve
// operations reads an order. They are published as order.status.changed only when a callback
// secret is configured (and, as for every callback with a secret, the checksum matched); without
// a secret they are answered 202 and then rejected with a warning in the log. A reservation status
// (reserved, captured, charged) for a uuid the details call answers 404 for is not taken for an
// order: orders have no such statuses, so it is rejected like any unknown reservation.
//
// With a secret, the checksum hex(HMAC-SHA256(secret, orderUuid|status|amount|timestamp)), over
// the values exactly as sent, is required and compared in constant time; without one a checksum is
// ignored. The handler never logs the query, the checksum or the secret, and never fetches a URL
// the request names.
//
// # History poll
//
// Poll reads the history from the checkpoint minus two minutes (the history's minute precision,
// and changes recorded a little late) to now, the first time the last 24 hours, in windows of at
// most 24 hours. Entries titled reserved, captured or charged become reservation.status.changed
// events with source "history", canonicalised as above; the history is the API's own account, so
// it needs no read-back. After each window the checkpoint (the window's end, Unix seconds) is
// stored under "checkpoint.history" with compare-and-swap, never moving it back; a replica that
// loses the race keeps the newer value. If a publication fails the checkpoint stays, and the next
// poll reads the window again.
package status
