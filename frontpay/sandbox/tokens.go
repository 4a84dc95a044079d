package sandbox

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nordpay/frontpay-worker/frontpay"
)

var (
	// ErrUnknownToken means the sandbox was never told of the token.
	ErrUnknownToken = errors.New("sandbox: unknown token")
	// ErrTokenTaken means AddToken or RotateToken was given a token the sandbox knows already,
	// revoked or not.
	ErrTokenTaken = errors.New("sandbox: token already known")
)

// account is one merchant's world at Front Payment: its reservations, orders and history. A token
// reads and changes its own account's only; a rotated token shares its account with the new one.
type account struct {
	reservations map[string]*reservation
	orders       map[string]*order
	events       []historyEvent
	secret       string // callback checksum key; "" sends no checksum
}

// tokenState is one bearer token: the account it opens, its rate limit window, its faults and
// the count of its requests.
type tokenState struct {
	token   string
	acct    *account
	revoked bool
	limit   int                          // per minute; < 0 off
	hits    []time.Time                  // requests let through in the last minute, for the limit
	recent  []time.Time                  // every request in the last minute, for Traffic.MaxPerMinute
	faults  map[frontpay.Operation]Fault // its own faults, ahead of the ones set for every token
	traffic Traffic
}

// Traffic is what the sandbox counted of one token's API requests. It counts every request that
// carried the token and was authenticated, whatever its answer, on real time as the rate limit does.
type Traffic struct {
	Token        string `json:"token"`
	Requests     int    `json:"requests"`     // all requests
	Limited      int    `json:"limited"`      // of those, refused 429 by the rate limit (not by a fault)
	MaxPerMinute int    `json:"maxPerMinute"` // the most requests in any sliding minute
}

// newAccount is an empty account whose callbacks are signed with secret.
func newAccount(secret string) *account {
	return &account{reservations: map[string]*reservation{}, orders: map[string]*order{}, secret: secret}
}

// addToken makes token open acct; s.mu is held.
func (s *Sandbox) addToken(token string, acct *account) error {
	if token == "" {
		return errors.New("sandbox: empty token")
	}
	if s.tokens[token] != nil {
		return ErrTokenTaken
	}
	if acct == nil {
		acct = newAccount(s.secret)
		s.accounts = append(s.accounts, acct)
	}
	t := &tokenState{token: token, acct: acct, limit: s.limit, faults: map[frontpay.Operation]Fault{}}
	t.traffic.Token = token
	s.tokens[token] = t
	s.tokenList = append(s.tokenList, t)
	return nil
}

// token finds a token, revoked or not; s.mu is held.
func (s *Sandbox) token(token string) (*tokenState, error) {
	t := s.tokens[token]
	if t == nil {
		return nil, ErrUnknownToken
	}
	return t, nil
}

// AddToken makes the sandbox accept token as an account of its own, with no reservations or
// orders, the rate limit in force for every token, and Options.CallbackSecret. An empty token or
// one the sandbox knows (even revoked) is an error.
func (s *Sandbox) AddToken(token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addToken(token, nil)
}

// RotateToken makes the sandbox accept newToken for oldToken's account, as Front Payment does when
// a merchant is issued a new token: both read and change the same reservations and orders until
// RevokeToken(oldToken). The new token has a rate limit window of its own and none of the old
// one's faults.
func (s *Sandbox) RotateToken(oldToken, newToken string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.token(oldToken)
	if err != nil {
		return err
	}
	return s.addToken(newToken, old.acct)
}

// RevokeToken makes the token answer 401 from now on. Its account stays, for the other tokens of
// the account, Pay and the ledger; a request already past authentication completes.
func (s *Sandbox) RevokeToken(token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.token(token)
	if err != nil {
		return err
	}
	t.revoked = true
	return nil
}

// SetCallbackSecret sets the key of the checksum on the callbacks of the token's account (every
// token of the account); "" sends callbacks without a checksum. Accounts start with
// Options.CallbackSecret.
func (s *Sandbox) SetCallbackSecret(token, secret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.token(token)
	if err != nil {
		return err
	}
	t.acct.secret = secret
	return nil
}

// TokenTraffic returns what the sandbox counted of the token's requests.
func (s *Sandbox) TokenTraffic(token string) (Traffic, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.token(token)
	if err != nil {
		return Traffic{}, err
	}
	return t.traffic, nil
}

// Traffic returns what the sandbox counted of every token's requests, in the order the tokens
// were added.
func (s *Sandbox) Traffic() []Traffic {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Traffic, 0, len(s.tokenList))
	for _, t := range s.tokenList {
		out = append(out, t.traffic)
	}
	return out
}

// authorized finds the request's bearer token among the tokens not revoked.
func (s *Sandbox) authorized(r *http.Request) (*tokenState, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, false
	}
	return s.lookupToken(strings.TrimSpace(token))
}

// lookupToken finds a token not revoked, comparing with every token in constant time.
func (s *Sandbox) lookupToken(token string) (*tokenState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found *tokenState
	for _, t := range s.tokenList {
		if subtle.ConstantTimeCompare([]byte(token), []byte(t.token)) == 1 {
			found = t
		}
	}
	return found, found != nil && !found.revoked
}

// firstToken is the first token the sandbox was given; s.mu is held.
func (s *Sandbox) firstToken() (*tokenState, error) {
	if len(s.tokenList) == 0 {
		return nil, fmt.Errorf("%w: the sandbox has no token", ErrUnknownToken)
	}
	return s.tokenList[0], nil
}

// find finds a reservation in any account and brings its status up to date; s.mu is held.
func (s *Sandbox) find(uuid string, now time.Time) (*account, *reservation) {
	for _, a := range s.accounts {
		if r := a.lookup(uuid, now); r != nil {
			return a, r
		}
	}
	return nil, nil
}

// findOrder finds an order in any account; s.mu is held.
func (s *Sandbox) findOrder(uuid string) *order {
	for _, a := range s.accounts {
		if o := a.orders[uuid]; o != nil {
			return o
		}
	}
	return nil
}
