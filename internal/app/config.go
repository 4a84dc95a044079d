package app

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/internal/fleet"
)

// NATSConfig is how to reach NATS and which subjects are ours: all the tools need of the
// environment.
type NATSConfig struct {
	NATSURL       string `envconfig:"NATS_URL"`
	NATSCreds     string `envconfig:"NATS_CREDS"`
	NATSNKey      string `envconfig:"NATS_NKEY"`
	NATSTLSCA     string `envconfig:"NATS_TLS_CA"`
	NATSTLSCert   string `envconfig:"NATS_TLS_CERT"`
	NATSTLSKey    string `envconfig:"NATS_TLS_KEY"`
	SubjectPrefix string `envconfig:"FRONTPAY_SUBJECT_PREFIX"`
	// MerchantsFile is FRONTPAY_MERCHANTS_FILE: several merchants in one deployment (CONTRACT.md
	// section 9), read and checked by internal/fleet. The tools only need to know it is set: the
	// subjects then name the merchant.
	MerchantsFile string `envconfig:"FRONTPAY_MERCHANTS_FILE"`
}

// Config is the worker's configuration, read from the environment (CONTRACT.md section 7, and the
// variables the README adds).
type Config struct {
	NATSConfig

	APIURL       string        `envconfig:"FRONTPAY_API_URL" default:"https://demo-api.frontpayment.no"`
	APIToken     Secret        `envconfig:"FRONTPAY_API_TOKEN"`
	APITokenFile string        `envconfig:"FRONTPAY_API_TOKEN_FILE"`
	APITimeout   time.Duration `envconfig:"FRONTPAY_API_TIMEOUT" default:"30s"`
	MaxAttempts  int           `envconfig:"FRONTPAY_MAX_ATTEMPTS" default:"8"`
	RetryInitial time.Duration `envconfig:"FRONTPAY_RETRY_INITIAL" default:"1s"`
	RetryMax     time.Duration `envconfig:"FRONTPAY_RETRY_MAX" default:"5m"`
	APIRate      int           `envconfig:"FRONTPAY_API_RATE" default:"240"`
	// ReadbackMarker is "on" (the read-back marker in a capture's or charge's additionalText; ""
	// in a Config built in code means the same) or "off" (a baseline read before the request).
	ReadbackMarker string `envconfig:"FRONTPAY_READBACK_MARKER" default:"on"`

	CallbackSecret     Secret        `envconfig:"FRONTPAY_CALLBACK_SECRET"`
	CallbackSecretFile string        `envconfig:"FRONTPAY_CALLBACK_SECRET_FILE"`
	CallbackShare      int           `envconfig:"FRONTPAY_CALLBACK_SHARE" default:"10"`
	HistoryPoll        time.Duration `envconfig:"FRONTPAY_HISTORY_POLL" default:"5m"`
	HTTPAddr           string        `envconfig:"FRONTPAY_HTTP_ADDR" default:"127.0.0.1:8080"`
	DataDir            string        `envconfig:"FRONTPAY_DATA_DIR" default:"./data"`
	LogFormat          string        `envconfig:"FRONTPAY_LOG_FORMAT" default:"text"`
	LogLevel           string        `envconfig:"FRONTPAY_LOG_LEVEL" default:"info"`

	Concurrency  int           `envconfig:"FRONTPAY_CONCURRENCY" default:"64"`
	AckWait      time.Duration `envconfig:"FRONTPAY_ACK_WAIT" default:"5m"`
	PinnedTTL    time.Duration `envconfig:"FRONTPAY_PIN_TTL" default:"10s"`
	DrainTimeout time.Duration `envconfig:"FRONTPAY_DRAIN_TIMEOUT" default:"20s"`
	LeaseMargin  time.Duration `envconfig:"FRONTPAY_LEASE_MARGIN" default:"10s"`
	Replicas     int           `envconfig:"FRONTPAY_REPLICAS" default:"1"`
	WorkerName   string        `envconfig:"FRONTPAY_WORKER_NAME" default:"frontpay-worker"`

	// How long the streams keep their messages and the bucket its records, personal data
	// included (README, "Personal data"). 0 means the default, consumer's constant of the same
	// name (also in a Config built in code): Config.topology applies it.
	CommandRetention    time.Duration `envconfig:"FRONTPAY_COMMAND_RETENTION" default:"744h"`
	ResultRetention     time.Duration `envconfig:"FRONTPAY_RESULT_RETENTION" default:"2232h"`
	DeadLetterRetention time.Duration `envconfig:"FRONTPAY_DEADLETTER_RETENTION" default:"2232h"`
	StateTTL            time.Duration `envconfig:"FRONTPAY_STATE_TTL" default:"2400h"`
}

// The shortest retentions the worker accepts (README, "Personal data").
const (
	// minRetention: a stream keeps its messages at least a day.
	minRetention = 24 * time.Hour
	// minStateTTL is the longest window the API has: a reservation can be charged up to 90 days
	// after it was made. A key's record must outlive it, or a duplicate could take money again.
	minStateTTL = 90 * 24 * time.Hour
)

// Secret is a configuration value that never shows in logs or printed configuration.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString hides the secret from %#v too.
func (s Secret) GoString() string { return s.String() }

// LoadConfig reads the environment and checks every value. It reports every problem at once,
// each naming its variable: values that do not parse, and values that parse but are wrong.
func LoadConfig() (*Config, error) {
	var c Config
	failed, err := process(&c)
	if err := errors.Join(err, withoutVariables(c.Validate(), failed)); err != nil {
		return nil, err
	}
	return &c, nil
}

// process reads the variables of every field of the struct spec points to, as envconfig.Process
// does, but goes on past a value that does not parse: it returns every such error, each naming
// its variable, and the variables concerned. (envconfig stops at the first.) Each field is read
// on its own, as the one field of a struct made for it with the same tags.
func process(spec any) (failed []string, err error) {
	v := reflect.ValueOf(spec).Elem()
	var errs []error
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if f.Anonymous {
			more, err := process(v.Field(i).Addr().Interface())
			failed, errs = append(failed, more...), append(errs, err)
			continue
		}
		one := reflect.New(reflect.StructOf([]reflect.StructField{{Name: f.Name, Type: f.Type, Tag: f.Tag}}))
		err := envconfig.Process("", one.Interface())
		var pe *envconfig.ParseError
		switch {
		case errors.As(err, &pe):
			failed = append(failed, pe.KeyName)
			errs = append(errs, fmt.Errorf("%s: %q is not %s", pe.KeyName, pe.Value, kindOf(f.Type)))
		case err != nil:
			errs = append(errs, err)
		default:
			v.Field(i).Set(one.Elem().Field(0))
		}
	}
	return failed, errors.Join(errs...)
}

// kindOf says what a value of a configuration field's type looks like, for an error message.
func kindOf(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "a duration such as 30s, 500ms or 5m"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "a whole number"
	}
	return "a " + t.String()
}

// withoutVariables drops from err (a join of "VARIABLE: problem" errors) those about the
// variables given: a value that did not parse is reported once, not again as its zero value.
func withoutVariables(err error, names []string) error {
	var keep []error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if name, _, _ := strings.Cut(err.Error(), ":"); !slices.Contains(names, name) {
			keep = append(keep, err)
		}
	}
	if err != nil {
		walk(err)
	}
	return errors.Join(keep...)
}

// Validate checks the values and reads the secret files; it returns every problem at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	if c.APIToken == "" && c.APITokenFile == "" && c.MerchantsFile == "" {
		bad("FRONTPAY_API_TOKEN", "required (or FRONTPAY_API_TOKEN_FILE, or FRONTPAY_MERCHANTS_FILE)")
	}
	if c.MerchantsFile != "" {
		if _, err := fleet.Load(c.MerchantsFile, c.APIURL, c.APIRate); err != nil {
			errs = append(errs, err)
		}
	}
	if c.MerchantsFile != "" && c.SubjectPrefix == "" {
		// JetStream refuses a stream over "*.<op>.requested": the subjects overlap its API.
		bad("FRONTPAY_SUBJECT_PREFIX", "required with FRONTPAY_MERCHANTS_FILE: the merchant is the first token after it, "+
			"and a stream over subjects whose first token is any merchant needs a prefix before it (e.g. \"frontpay.\")")
	}
	if err := readSecretFile(&c.APIToken, c.APITokenFile, "FRONTPAY_API_TOKEN"); err != nil {
		errs = append(errs, err)
	}
	if err := readSecretFile(&c.CallbackSecret, c.CallbackSecretFile, "FRONTPAY_CALLBACK_SECRET"); err != nil {
		errs = append(errs, err)
	}
	if !strings.HasPrefix(c.APIURL, "http://") && !strings.HasPrefix(c.APIURL, "https://") {
		bad("FRONTPAY_API_URL", "must be an http(s) URL, got %q", c.APIURL)
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			bad(name, "must be positive, got %s", d)
		}
	}
	positive("FRONTPAY_API_TIMEOUT", c.APITimeout)
	positive("FRONTPAY_RETRY_INITIAL", c.RetryInitial)
	positive("FRONTPAY_RETRY_MAX", c.RetryMax)
	positive("FRONTPAY_ACK_WAIT", c.AckWait)
	if c.PinnedTTL < 3*time.Second {
		bad("FRONTPAY_PIN_TTL", "must be at least 3s (the owner pulls every third of it, at least every second), got %s", c.PinnedTTL)
	}
	if c.ReadbackMarker != "on" && c.ReadbackMarker != "off" && c.ReadbackMarker != "" {
		bad("FRONTPAY_READBACK_MARKER", "must be on or off, got %q", c.ReadbackMarker)
	}
	positive("FRONTPAY_DRAIN_TIMEOUT", c.DrainTimeout)
	positive("FRONTPAY_LEASE_MARGIN", c.LeaseMargin)
	if c.RetryMax < c.RetryInitial {
		bad("FRONTPAY_RETRY_MAX", "must not be shorter than FRONTPAY_RETRY_INITIAL (%s)", c.RetryInitial)
	}
	if c.MaxAttempts < 1 {
		bad("FRONTPAY_MAX_ATTEMPTS", "must be at least 1, got %d", c.MaxAttempts)
	}
	if c.APIRate < 0 {
		bad("FRONTPAY_API_RATE", "must be 0 (no limit) or more, got %d", c.APIRate)
	}
	if c.CallbackShare < 1 || c.CallbackShare > 100 {
		bad("FRONTPAY_CALLBACK_SHARE", "must be a percentage of FRONTPAY_API_RATE from 1 to 100, got %d", c.CallbackShare)
	}
	if c.HistoryPoll < 0 {
		bad("FRONTPAY_HISTORY_POLL", "must be 0 (off) or positive, got %s", c.HistoryPoll)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("FRONTPAY_LOG_FORMAT", "must be text or json, got %q", c.LogFormat)
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		bad("FRONTPAY_LOG_LEVEL", "%v", err)
	}
	if c.Concurrency < 1 {
		bad("FRONTPAY_CONCURRENCY", "must be at least 1, got %d", c.Concurrency)
	}
	if c.Replicas != 1 && c.Replicas != 3 && c.Replicas != 5 {
		bad("FRONTPAY_REPLICAS", "must be 1, 3 or 5, got %d", c.Replicas)
	}
	errs = append(errs, c.validateRetention())
	if c.NATSURL == "" && c.DataDir == "" {
		bad("FRONTPAY_DATA_DIR", "required when NATS_URL is empty (the embedded server's store)")
	}
	errs = append(errs, c.NATSConfig.Validate())
	return errors.Join(errs...)
}

// topology is the consumer topology the configuration makes, its zero retentions replaced by
// consumer's defaults.
func (c *Config) topology() consumer.Topology {
	return consumer.Topology{
		Prefix: c.SubjectPrefix, Replicas: c.Replicas, AckWait: c.AckWait, PinnedTTL: c.PinnedTTL,
		Merchants:           c.MerchantsFile != "",
		CommandRetention:    cmp.Or(c.CommandRetention, consumer.CommandRetention),
		ResultRetention:     cmp.Or(c.ResultRetention, consumer.ResultRetention),
		DeadLetterRetention: cmp.Or(c.DeadLetterRetention, consumer.DeadLetterRetention),
		StateTTL:            cmp.Or(c.StateTTL, consumer.StateTTL),
	}
}

// validateRetention checks the retentions (0 is the default), each against what it is for.
func (c *Config) validateRetention() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	t := c.topology()
	if t.CommandRetention < minRetention {
		bad("FRONTPAY_COMMAND_RETENTION", "must be at least %s, got %s: a command that ages out before a worker "+
			"answers it (while no worker runs, say) is lost without a result", minRetention, t.CommandRetention)
	}
	if t.ResultRetention < minRetention {
		bad("FRONTPAY_RESULT_RETENTION", "must be at least %s, got %s: result events are how publishers learn "+
			"outcomes, and replay can only re-publish a failed command while its failure event is kept", minRetention, t.ResultRetention)
	}
	if t.DeadLetterRetention < minRetention {
		bad("FRONTPAY_DEADLETTER_RETENTION", "must be at least %s, got %s: time to look at what was not a command",
			minRetention, t.DeadLetterRetention)
	}
	if t.StateTTL < minStateTTL {
		bad("FRONTPAY_STATE_TTL", "must be at least %s (90 days), got %s: an idempotency record is what stops a "+
			"second call, and one forgotten before the API's longest window closes (a charge up to 90 days after "+
			"the reservation) lets a duplicate of its key charge or capture twice", minStateTTL, t.StateTTL)
		return errors.Join(errs...)
	}
	if t.CommandRetention > t.StateTTL {
		bad("FRONTPAY_COMMAND_RETENTION", "must not be longer than FRONTPAY_STATE_TTL (%s), got %s: a command "+
			"delivered again after its key's record expired would be sent again", t.StateTTL, t.CommandRetention)
	}
	if t.ResultRetention > t.StateTTL {
		bad("FRONTPAY_RESULT_RETENTION", "must not be longer than FRONTPAY_STATE_TTL (%s), got %s: a failure "+
			"replayed after its key's record expired would be sent as a new command, and an outcome_unknown "+
			"replayed so could take money twice", t.StateTTL, t.ResultRetention)
	}
	return errors.Join(errs...)
}

// readSecretFile reads the secret of variable name from file, where file is set: name and
// name_FILE are a pair of which only one may be set. The file's content, less surrounding white
// space, is the secret; an empty one is an error.
func readSecretFile(secret *Secret, file, name string) error {
	if file == "" {
		return nil
	}
	if *secret != "" {
		return fmt.Errorf("%s_FILE: set only one of %s and %s_FILE", name, name, name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%s_FILE: cannot read the file: %w", name, err)
	}
	if *secret = Secret(strings.TrimSpace(string(b))); *secret == "" {
		return fmt.Errorf("%s_FILE: the file %s is empty", name, file)
	}
	return nil
}

// ParseLevel reads FRONTPAY_LOG_LEVEL: debug, info, warn or error, in any case.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("must be debug, info, warn or error, got %q", s)
	}
	return l, nil
}

// LoadNATSConfig reads what the operators' tools need of the environment.
func LoadNATSConfig() (*NATSConfig, error) {
	var c NATSConfig
	failed, err := process(&c)
	if err := errors.Join(err, withoutVariables(c.Validate(), failed)); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks the NATS variables and the subject prefix.
func (c *NATSConfig) Validate() error {
	var errs []error
	if p := c.SubjectPrefix; p != "" && (!strings.HasSuffix(p, ".") || strings.ContainsAny(p, " *>\t") || strings.Contains(p, "..") || p == ".") {
		errs = append(errs, fmt.Errorf("FRONTPAY_SUBJECT_PREFIX: must be empty or subject tokens ending in a dot, like \"shop1.\", got %q", p))
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		errs = append(errs, errors.New("NATS_TLS_CERT: NATS_TLS_CERT and NATS_TLS_KEY go together"))
	}
	if c.NATSCreds != "" && c.NATSNKey != "" {
		errs = append(errs, errors.New("NATS_NKEY: set only one of NATS_CREDS and NATS_NKEY"))
	}
	return errors.Join(errs...)
}
