package sandbox

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Checksum is the callback checksum the sandbox sends when the account has a secret
// (Options.CallbackSecret, SetCallbackSecret):
// hex(HMAC-SHA256(secret, orderUuid+"|"+status+"|"+amount+"|"+timestamp)).
func Checksum(secret, orderUUID, status, amount, timestamp string) string {
	m := hmac.New(sha256.New, []byte(secret))
	io.WriteString(m, orderUUID+"|"+status+"|"+amount+"|"+timestamp)
	return hex.EncodeToString(m.Sum(nil))
}

// notify tells the reservation's callbackUrl of a status change (reserved, captured, charged) of
// amount cents, with one GET in the background, signed with the account's secret; s.mu is held.
func (s *Sandbox) notify(a *account, r *reservation, status string, amount int64, now time.Time) {
	if r.callbackURL == "" || s.closed {
		return
	}
	u, err := url.Parse(r.callbackURL)
	if err != nil {
		s.log.Warn("sandbox callback: bad URL", "uuid", r.uuid, "err", err)
		return
	}
	amountText := money(amount).String()
	ts := strconv.FormatInt(now.Unix(), 10)
	q := u.Query()
	q.Set("orderUuid", r.uuid)
	q.Set("status", status)
	q.Set("amount", amountText)
	q.Set("paymentMethod", r.paymentMethod)
	q.Set("timestamp", ts)
	if a.secret != "" {
		q.Set("checksum", Checksum(a.secret, r.uuid, status, amountText, ts))
	}
	u.RawQuery = q.Encode()
	target := u.String()
	s.callbacks.Add(1)
	go func() {
		defer s.callbacks.Done()
		s.sendCallback(target, r.uuid, status)
	}()
}

// sendCallback makes the one attempt of a callback and logs a failure.
func (s *Sandbox) sendCallback(target, uuid, status string) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, target, nil)
	if err != nil {
		s.log.Warn("sandbox callback failed", "uuid", uuid, "status", status, "err", err)
		return
	}
	resp, err := s.httpClient.Do(req)
	if err != nil {
		s.log.Warn("sandbox callback failed", "uuid", uuid, "status", status, "err", err)
		return
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode >= 300 {
		s.log.Warn("sandbox callback refused", "uuid", uuid, "status", status, "http_status", resp.StatusCode)
	}
}
