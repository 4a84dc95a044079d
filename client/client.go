package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nordpay/frontpay-worker/publisher"
	"github.com/nordpay/frontpay-worker/schemas"
)

// ErrNotPublished means Await was given the id of a command that this Client did not publish, or
// whose result came more than Retention ago without being awaited.
var ErrNotPublished = errors.New("client: no command of this id was published by this client")

// Retention is how long a Client keeps the result of a command that nobody awaits, and how long it
// keeps waiting for the result of a command nobody awaits.
const Retention = time.Hour

// Client publishes commands and receives their results. It is safe for concurrent use.
type Client struct {
	nc      *nats.Conn
	pub     *publisher.Publisher
	prefix  string // the subject prefix, with the merchant
	subs    []*nats.Subscription
	mu      sync.Mutex
	pending map[string]*pending // by command id
	byKey   map[string][]*pending
	pruned  time.Time // when pending was last looked through for what is past Retention
}

// pending is a published command and, once it came, its result event.
type pending struct {
	cmd     *Command
	since   time.Time     // published, or the result came
	waiters int           // Await calls waiting for it, which keep it past Retention
	done    chan struct{} // closed when result is set
	result  []byte
}

// Option configures a Client.
type Option func(*options)

type options struct {
	prefix, merchant string
	log              *slog.Logger
}

// WithPrefix sets the subject prefix: the worker's FRONTPAY_SUBJECT_PREFIX, empty or ending in a
// dot, such as "shop1.". Without it the prefix is empty.
func WithPrefix(prefix string) Option { return func(o *options) { o.prefix = prefix } }

// WithMerchant sets the merchant of a deployment that serves several (CONTRACT.md section 9): the
// merchant's id in FRONTPAY_MERCHANTS_FILE. Commands then go to <prefix><merchant>.<op>.requested
// and results come from <prefix><merchant>.<op>.succeeded and .failed.
func WithMerchant(id string) Option { return func(o *options) { o.merchant = id } }

// WithLogger logs the publisher's retries (default: none).
func WithLogger(log *slog.Logger) Option { return func(o *options) { o.log = log } }

// New returns a Client on the connection nc, which it does not close. It subscribes to the
// results at once, so that Await sees every result published after Publish.
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := schemas.CheckPrefix(o.prefix); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	prefix := o.prefix
	if o.merchant != "" {
		var err error
		if prefix, err = schemas.MerchantPrefix(o.prefix, o.merchant); err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c := &Client{
		nc: nc, pub: publisher.New(js, o.log, 0), prefix: prefix,
		pending: map[string]*pending{}, byKey: map[string][]*pending{},
	}
	// Every result subject of the prefix: <prefix><resource>.<action>.succeeded and .failed.
	for _, subject := range []string{prefix + "*.*.succeeded", prefix + "*.*.failed"} {
		sub, err := nc.Subscribe(subject, c.receive)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("client: subscribe to results: %w", err)
		}
		c.subs = append(c.subs, sub)
	}
	// The subscriptions are in place at the server before the first Publish.
	if err := nc.Flush(); err != nil {
		c.Close()
		return nil, fmt.Errorf("client: subscribe to results: %w", err)
	}
	return c, nil
}

// Close ends the result subscriptions; Await then waits in vain.
func (c *Client) Close() {
	for _, sub := range c.subs {
		_ = sub.Unsubscribe()
	}
}

// Subject is where the client publishes commands of cmd's operation.
func (c *Client) Subject(cmd *Command) string { return schemas.CommandSubject(c.prefix, cmd.op) }

// Publish publishes cmd with Nats-Msg-Id set to its id and returns once the command stream
// stored it. It retries while NATS or the stream cannot take it (no responders while a server
// restarts, a timeout) until ctx ends: give ctx a deadline. Publishing the same command again is
// harmless: the stream drops a copy within its duplicate window, and the worker answers a copy
// after it with the same result.
func (c *Client) Publish(ctx context.Context, cmd *Command) error {
	c.track(cmd)
	if err := c.pub.Publish(ctx, c.Subject(cmd), cmd.ID(), cmd.raw); err != nil {
		return fmt.Errorf("client: publish %s %s: %w", cmd.op, cmd.ID(), err)
	}
	return nil
}

// track registers cmd before it is published, so that its result cannot come unseen, and drops
// what has been kept longer than Retention.
func (c *Client) track(cmd *Command) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if now.Sub(c.pruned) > Retention/60 {
		c.pruned = now
		for id, p := range c.pending {
			if p.waiters == 0 && now.Sub(p.since) > Retention {
				c.forget(id, p)
			}
		}
	}
	if _, ok := c.pending[cmd.ID()]; ok {
		return
	}
	p := &pending{cmd: cmd, since: now, done: make(chan struct{})}
	c.pending[cmd.ID()] = p
	c.byKey[cmd.Key()] = append(c.byKey[cmd.Key()], p)
}

// forget drops a pending command; c.mu is held.
func (c *Client) forget(id string, p *pending) {
	delete(c.pending, id)
	key := p.cmd.Key()
	rest := c.byKey[key][:0]
	for _, q := range c.byKey[key] {
		if q != p {
			rest = append(rest, q)
		}
	}
	if len(rest) == 0 {
		delete(c.byKey, key)
	} else {
		c.byKey[key] = rest
	}
}

// receive hands a result event to the commands it answers: the command it names as its cause,
// and, unless it is an idempotency_conflict (which answers only its cause), every command of the
// same key and operation still waiting, since the worker answers a command whose key already has
// an outcome with that outcome's event again.
func (c *Client) receive(m *nats.Msg) {
	var e struct {
		schemas.Event
		Data struct {
			Reason schemas.Reason `json:"reason"`
		} `json:"data"`
	}
	if json.Unmarshal(m.Data, &e) != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.byKey[e.IdempotencyKey] {
		answers := p.cmd.ID() == e.CausationID || e.Data.Reason != schemas.IdempotencyConflict
		if p.result == nil && answers && schemas.ResultSubject(c.prefix, p.cmd.op, !strings.HasSuffix(e.Type, ".failed")) == m.Subject {
			p.result = m.Data
			p.since = time.Now()
			close(p.done)
		}
	}
}

// Await waits for the result of the command with id id, which this Client published, and returns
// it: a *Result when the command succeeded, a *Failure error when it failed, ctx's error when ctx
// ends first (Await may then be called again), ErrNotPublished for an id it does not know. A
// command whose key had an outcome already gets that outcome, as the worker answers it. Once
// Await has returned a command's result, the Client forgets the command.
//
// Results come over the Client's subscription (core NATS), which sees even the copy of an earlier
// result that the result stream drops as a duplicate; a result lost to a reconnect at the wrong
// moment is still in the result stream, where Await does not look.
func (c *Client) Await(ctx context.Context, id string) (*Result, error) {
	c.mu.Lock()
	p, ok := c.pending[id]
	if ok {
		p.waiters++
	}
	c.mu.Unlock()
	if !ok {
		return nil, ErrNotPublished
	}
	var err error
	select {
	case <-p.done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.mu.Lock()
	p.waiters--
	if err == nil {
		c.forget(id, p)
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return outcome(p.cmd.op, p.result)
}
