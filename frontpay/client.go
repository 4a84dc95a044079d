package frontpay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultBaseURL is Front Payment's demo API.
const DefaultBaseURL = "https://demo-api.frontpayment.no"

// maxResponseBytes bounds what the client reads of one answer.
const maxResponseBytes = 8 << 20

// Client calls the Front Payment Connect API. Each method makes one HTTP attempt, bounded by the
// client's timeout; retrying is the caller's decision, guided by Classify. (net/http itself may
// repeat a bodiless GET, a read, on a reused connection the server closed; it never repeats a
// request with a body.) A Client is safe for concurrent use.
type Client struct {
	base    *url.URL
	token   string
	http    *http.Client
	timeout time.Duration
	now     func() time.Time
	limit   *limiter
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client. Its Timeout should be zero: the per-attempt limit is
// WithTimeout's.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithTimeout bounds one HTTP attempt, from sending to reading the whole answer (default 30s; a
// non-positive d keeps the default).
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithClock sets the clock that validation compares due dates with.
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// New returns a client for the API at baseURL (such as DefaultBaseURL) with the bearer token.
func New(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("frontpay: base URL %q is not an absolute http(s) URL", baseURL)
	}
	if token == "" {
		return nil, errors.New("frontpay: empty API token")
	}
	c := &Client{
		base:    u,
		token:   token,
		http:    &http.Client{Transport: DefaultTransport()},
		timeout: 30 * time.Second,
		now:     time.Now,
		limit:   &limiter{},
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// DefaultTransport is the transport of a client without WithHTTPClient: net/http's default, with
// more idle connections per host. Wrap it to instrument the client (e.g. with otelhttp).
func DefaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 256
	return t
}

// String names the client without its token (also for a copy of the Client value).
func (c Client) String() string { return "frontpay.Client(" + c.base.String() + ")" }

// GoString names the client without its token, for %#v.
func (c Client) GoString() string { return c.String() }

// LogValue logs the client without its token.
func (c Client) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Response is a successful answer: its HTTP status, the envelope's fields and its `data` member
// exactly as returned (JSON null when there was none).
type Response struct {
	HTTPStatus    int
	StatusMessage string
	Message       string
	Raw           json.RawMessage
}

// Result is a Response with its data decoded.
type Result[T any] struct {
	Response
	Data T
}

// envelope is every answer's body.
type envelope struct {
	StatusCode    int             `json:"status_code"`
	StatusMessage string          `json:"status_message"`
	Message       string          `json:"message"`
	IsData        *bool           `json:"is_data,omitempty"`
	Data          json.RawMessage `json:"data,omitempty"`
	IsError       *bool           `json:"is_error,omitempty"`
	Errors        json.RawMessage `json:"errors,omitempty"`
}

// Do makes one call of op. params fill the endpoint's path placeholders in order; body, when not
// nil, is validated and sent as JSON. It is the single path every typed method takes, and the one
// a dispatcher uses when it holds an Operation.
//
// Failures are a *ValidationError (nothing sent), or an *Error whose Class says what may follow.
func (c *Client) Do(ctx context.Context, op Operation, params []string, body Validator) (*Response, error) {
	ep, ok := endpoints[op]
	if !ok {
		return nil, fmt.Errorf("frontpay %s: %w", op, fieldError("operation", "in", "is not an operation of the API"))
	}
	for i, name := range ep.Params {
		if i < len(params) && name != "start" && name != "end" {
			if err := ValidateUUID(name, params[i]); err != nil {
				return nil, fmt.Errorf("frontpay %s: %w", op, err)
			}
		}
	}
	path, err := ep.path(params...)
	if err != nil {
		return nil, fmt.Errorf("frontpay %s: %w", op, err)
	}
	var payload []byte
	if v := reflect.ValueOf(body); body != nil && v.Kind() == reflect.Pointer && v.IsNil() {
		return nil, fmt.Errorf("frontpay %s: %w", op, fieldError("body", "required", "is required"))
	}
	if body != nil {
		if err := body.Validate(c.now()); err != nil {
			return nil, fmt.Errorf("frontpay %s: %w", op, err)
		}
		if payload, err = json.Marshal(body); err != nil {
			return nil, fmt.Errorf("frontpay %s: %w", op, fieldError("body", "json", err.Error()))
		}
	}
	if ctx.Value(waitedKey{}) == nil {
		if err := c.Wait(ctx); err != nil {
			return nil, &Error{Op: op, Err: fmt.Errorf("wait for rate limit: %w", err)}
		}
	}
	return c.send(ctx, op, ep.Method, path, payload)
}

// waitedKey marks a context whose call has had its turn of the limiter already.
type waitedKey struct{}

// Wait blocks until the client's rate limit (WithRateLimit) and any 429's pause let a call go;
// nil at once without either. A caller that must record "about to send" only once the call can
// really leave waits here first and then calls with AfterWait(ctx).
func (c *Client) Wait(ctx context.Context) error { return c.limit.wait(ctx) }

// AfterWait returns a context telling the client that the caller has waited for the limiter for
// this one call (Client.Wait), so the call does not wait again.
func AfterWait(ctx context.Context) context.Context { return context.WithValue(ctx, waitedKey{}, true) }

// send makes the HTTP attempt. It tracks whether a connection was handed to the request: before
// that nothing can have reached the API, after it the request counts as sent.
func (c *Client) send(ctx context.Context, op Operation, method, path string, payload []byte) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	var sentFlag atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { sentFlag.Store(true) },
	})
	var bodyReader io.Reader
	if payload != nil {
		bodyReader = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, bodyReader)
	if err != nil {
		return nil, &Error{Op: op, Err: err}
	}
	// Without GetBody, net/http never sends the request a second time on its own (it would for
	// the GET of cancel, which has a body). One call is one attempt.
	req.GetBody = nil
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "frontpay-worker")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &Error{Op: op, Sent: sentFlag.Load(), Err: stripURL(err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err == nil && len(raw) > maxResponseBytes {
		err = fmt.Errorf("answer larger than %d bytes", maxResponseBytes)
	}
	var env envelope
	if err == nil {
		err = json.Unmarshal(raw, &env)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if err != nil {
			return nil, &Error{Op: op, HTTPStatus: resp.StatusCode, Sent: true, Err: fmt.Errorf("read %d answer: %w", resp.StatusCode, stripURL(err))}
		}
		data := env.Data
		if len(data) == 0 {
			data = json.RawMessage("null")
		}
		return &Response{HTTPStatus: resp.StatusCode, StatusMessage: env.StatusMessage, Message: env.Message, Raw: data}, nil
	}
	fe := &Error{Op: op, HTTPStatus: resp.StatusCode, Sent: true, StatusMessage: env.StatusMessage, Message: env.Message}
	if len(env.Errors) > 0 && string(env.Errors) != "null" {
		fe.Errors = env.Errors
	}
	if err != nil {
		fe.Err = fmt.Errorf("read %d answer: %w", resp.StatusCode, stripURL(err))
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		// The client pauses itself, so that every caller of it (the worker's commands, the status
		// service's reads) obeys the API's throttle.
		fe.RetryAfter = c.limit.pause(retryAfter(resp.Header.Get("Retry-After"), time.Now()))
	}
	return nil, fe
}

// stripURL drops the request URL from a *url.Error: the operation already names the call, and a
// path holds identifiers that logs need not repeat.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// retryAfter reads a Retry-After header: seconds or an HTTP date. Zero when absent or unreadable.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// decode turns a Response into a typed Result.
func decode[T any](op Operation, resp *Response, err error) (*Result[T], error) {
	if err != nil {
		return nil, err
	}
	r := &Result[T]{Response: *resp}
	if string(resp.Raw) != "null" {
		if err := json.Unmarshal(resp.Raw, &r.Data); err != nil {
			return nil, &Error{Op: op, HTTPStatus: resp.HTTPStatus, Sent: true, Err: fmt.Errorf("decode data: %w", err)}
		}
	}
	return r, nil
}
