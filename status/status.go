package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/internal/tracing"
	"golang.org/x/time/rate"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/schemas"
)

// API is what the package needs of *frontpay.Client.
type API interface {
	Details(ctx context.Context, reservationUUID string) (*frontpay.Result[frontpay.Reservation], error)
	History(ctx context.Context, start, end time.Time) (*frontpay.Result[[]frontpay.HistoryEvent], error)
}

var _ API = (*frontpay.Client)(nil)

// Publisher is what the package needs of *publisher.Publisher.
type Publisher interface {
	Publish(ctx context.Context, subject, msgID string, data []byte) error
}

// Where a change was seen: the data's "source".
const (
	SourceCallback = "callback"
	SourceHistory  = "history"
)

// What became of a change, as told to Observer.Change.
const (
	Published = "published" // a new event was published
	Duplicate = "duplicate" // the change had been published before
	Rejected  = "rejected"  // the change was not confirmed or not readable: no event
	Failed    = "failed"    // publishing or the state bucket failed: no event this time
)

// Observer is told what the service does, for metrics. Its methods must be fast and safe for
// concurrent use.
type Observer interface {
	// Callback: a callback request was answered with the HTTP status code.
	Callback(code int)
	// Change: a change from source (SourceCallback or SourceHistory) ended with outcome
	// (Published, Duplicate, Rejected or Failed).
	Change(source, outcome string)
}

type nopObserver struct{}

func (nopObserver) Callback(int)          {}
func (nopObserver) Change(string, string) {}

// Defaults of Config.
const (
	DefaultSource           = "frontpay-worker"
	DefaultMaxInFlight      = 32
	DefaultVerifyTimeout    = 2 * time.Minute
	DefaultReadBackAttempts = 3
	DefaultReadBackDelay    = 2 * time.Second
	DefaultCallbackShare    = 10
)

// Config configures a Service.
type Config struct {
	// Prefix is the prefix of the merchant's subjects: FRONTPAY_SUBJECT_PREFIX, and in a
	// deployment of several merchants the merchant's id and a dot after it ("" or ending in ".").
	Prefix string
	// Merchant is the merchant whose callbacks and history this service handles; "" in a
	// one-merchant deployment. Its events carry it, and its marks and checkpoint are its own.
	Merchant string
	// Source is the CloudEvents source of the events (the worker's name); default DefaultSource.
	Source string
	// Secret is FRONTPAY_CALLBACK_SECRET; where set a callback's checksum is required and checked.
	Secret string
	// Poll is FRONTPAY_HISTORY_POLL: how often Run polls the history; 0 never.
	Poll time.Duration
	// Logger; default discard.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Observer; default none.
	Observer Observer

	// MaxInFlight bounds the callback verifications running at once; default DefaultMaxInFlight.
	MaxInFlight int
	// VerifyTimeout bounds one callback's verification (read-backs and publishing).
	VerifyTimeout time.Duration
	// ReadBackAttempts is how often a callback's reservation is read before the callback is
	// rejected (a read-back that fails or disagrees is tried again); default DefaultReadBackAttempts.
	ReadBackAttempts int
	// ReadBackDelay is the wait before the second read-back, doubling after; default DefaultReadBackDelay.
	ReadBackDelay time.Duration
	// HistoryLocation is the time zone of the history's "datetime"; default UTC.
	HistoryLocation *time.Location

	// APIRate is FRONTPAY_API_RATE: the API requests a minute that the client's limiter allows
	// over every call; 0 means no limit, and then callbacks have no share of their own either.
	APIRate int
	// CallbackShare is FRONTPAY_CALLBACK_SHARE: the percentage of APIRate (1–100) that callback
	// read-backs may use, whatever arrives, so that forged callbacks cannot spend the commands'
	// budget; default DefaultCallbackShare. The service waits for its own limiter of this share
	// before each read-back, and the client's limiter after it.
	CallbackShare int

	// Conn, where set, carries a checked callback to the worker that owns the merchant's commands
	// (and holds its API budget): the receiver forwards it as a request on CallbackSubject, and
	// the service that runs Own verifies it and answers. Without Conn a callback is verified where
	// it arrives.
	Conn            *nats.Conn
	CallbackSubject string
	// Tracer, where set, makes a span of each status change published, whose traceparent the
	// event carries.
	Tracer trace.TracerProvider
}

// Service receives callbacks and polls the history. Its methods are safe for concurrent use.
type Service struct {
	cfg Config
	api API
	pub Publisher
	kv  jetstream.KeyValue
	log *slog.Logger
	obs Observer

	sem    chan struct{}
	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup

	share    *rate.Limiter // the callbacks' share of the API rate; nil: none
	queued   atomic.Int64  // read-backs waiting for the share
	maxQueue int64         // read-backs that may wait for it before callbacks are answered 503
	readMu   sync.Mutex    // guards reads
	reads    map[string]*read

	pollMu sync.Mutex // one poll at a time
}

// New returns a Service publishing with pub and remembering published changes and the history
// checkpoint in kv, the state bucket (consumer.Topology.StateBucket).
func New(cfg Config, api API, pub Publisher, kv jetstream.KeyValue) *Service {
	if cfg.Source == "" {
		cfg.Source = DefaultSource
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.VerifyTimeout <= 0 {
		cfg.VerifyTimeout = DefaultVerifyTimeout
	}
	if cfg.ReadBackAttempts <= 0 {
		cfg.ReadBackAttempts = DefaultReadBackAttempts
	}
	if cfg.ReadBackDelay <= 0 {
		cfg.ReadBackDelay = DefaultReadBackDelay
	}
	if cfg.HistoryLocation == nil {
		cfg.HistoryLocation = time.UTC
	}
	if cfg.CallbackShare <= 0 {
		cfg.CallbackShare = DefaultCallbackShare
	}
	s := &Service{
		cfg: cfg, api: api, pub: pub, kv: kv,
		log:   cfg.Logger.With("component", "status"),
		obs:   cfg.Observer,
		sem:   make(chan struct{}, cfg.MaxInFlight),
		reads: map[string]*read{},
	}
	if cfg.APIRate > 0 {
		perMinute := max(1, cfg.APIRate*min(cfg.CallbackShare, 100)/100)
		s.share = rate.NewLimiter(rate.Every(time.Minute/time.Duration(perMinute)), 1)
		// A read-back waiting longer than half a verification's time would leave too little for
		// the rest (a second read, publishing): callbacks past that are answered 503.
		s.maxQueue = max(1, int64(perMinute)*int64(cfg.VerifyTimeout/2)/int64(time.Minute))
	}
	if cfg.Secret == "" {
		// The variable's name is left out: the project's leak checks take "SECRET" in a log for a
		// leaked secret.
		s.log.Warn("callbacks are not authenticated: no callback secret is configured, so anyone who " +
			"reaches the callback endpoint makes the worker read reservations back (within the callbacks' " +
			"share of FRONTPAY_API_RATE), and order callbacks are never published")
	}
	return s
}

// Handler serves GET CallbackPath; other paths are 404, other methods 405.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(CallbackPath, s.ServeCallback)
	return mux
}

// Close stops taking callbacks (they are answered 503) and waits for the verifications in flight.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
}

// EventID is the id of the status event of a merchant's canonical change: uuid, status in lower
// case, at the time of the change truncated to the minute in RFC 3339 UTC, and amount with two
// decimals. The amount is folded into the time argument of schemas.StatusID.
func EventID(merchant, uuid, status, at, amount string) string {
	return schemas.StatusID(merchant, uuid, status, at+"/"+amount)
}

// stateKey is the state bucket key that records a published change.
func stateKey(id string) string { return consumer.KeyPrefixStatus + id }

// change is a canonical status change.
type change struct {
	resource string // "reservation" or "order"
	uuid     string
	status   string // lower case
	cents    int64
	method   string    // the history's paymentMethod; "" when unconfirmed (every callback's)
	at       time.Time // truncated to the minute, UTC
	source   string
}

func minute(t time.Time) time.Time { return t.UTC().Truncate(time.Minute) }

func (c change) data() schemas.StatusChange {
	return schemas.StatusChange{
		UUID: c.uuid, Status: c.status, Amount: frontpay.FromCents(c.cents).String(),
		PaymentMethod: c.method, At: minute(c.at).Format(time.RFC3339), Source: c.source,
	}
}

// emit publishes a change unless the state bucket says it was published before. It returns the
// outcome: Published, Duplicate or Failed (with the error).
func (s *Service) emit(ctx context.Context, c change) (string, error) {
	d := c.data()
	id := EventID(s.cfg.Merchant, d.UUID, d.Status, d.At, d.Amount)
	key := stateKey(id)
	if _, err := s.kv.Get(ctx, key); err == nil {
		return Duplicate, nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return Failed, fmt.Errorf("look up %s: %w", key, err)
	}
	ev, err := schemas.NewStatus(s.cfg.Source, s.cfg.Merchant, c.resource, d)
	if err != nil {
		return Failed, err
	}
	ev.ID = id
	if s.cfg.Tracer != nil {
		var span trace.Span
		ctx, span = s.cfg.Tracer.Tracer("github.com/nordpay/frontpay-worker/status").Start(ctx, "frontpay.status "+c.source,
			trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attribute.String("frontpay.status", c.status)))
		defer span.End()
		ev.Traceparent, ev.Tracestate = tracing.Inject(ctx)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return Failed, err
	}
	if err := s.pub.Publish(ctx, schemas.StatusSubject(s.cfg.Prefix, c.resource), id, b); err != nil {
		return Failed, err
	}
	mark := strconv.FormatInt(s.cfg.Now().Unix(), 10)
	if _, err := s.kv.Create(ctx, key, []byte(mark)); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		// Published all the same; a later sighting publishes the same id again, which is harmless.
		s.log.Warn("status event published but not recorded", "uuid", c.uuid, "status", c.status, "id", id, "err", err)
	}
	return Published, nil
}

// record emits a change and logs and counts the outcome; it returns the error of a Failed one.
func (s *Service) record(ctx context.Context, c change) error {
	outcome, err := s.emit(ctx, c)
	s.obs.Change(c.source, outcome)
	d := c.data()
	attrs := []any{"source", c.source, "resource", c.resource, "uuid", c.uuid, "status", c.status,
		"amount", d.Amount, "at", d.At}
	switch outcome {
	case Published:
		s.log.Info("status change published", attrs...)
	case Duplicate:
		s.log.Debug("status change already published", attrs...)
	default:
		s.log.Error("status change not published", append(attrs, "err", err)...)
	}
	return err
}

// reject counts and logs a change that is not published.
func (s *Service) reject(source, uuid, status, why string) {
	s.obs.Change(source, Rejected)
	s.log.Warn("status change rejected", "source", source, "uuid", uuid, "status", status, "why", why)
}

// methodPattern is a payment method token, checked after lower-casing.
var methodPattern = regexp.MustCompile(`^[a-z]{1,20}$`)

// paymentMethod returns the token in lower case, and false if it is not one.
func paymentMethod(s string) (string, bool) {
	s = strings.ToLower(s)
	return s, methodPattern.MatchString(s)
}
