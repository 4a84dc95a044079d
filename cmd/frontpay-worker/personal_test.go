package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nordpay/frontpay-worker/consumer"
)

// TestRetentionVariables: the retentions default to consumer's constants, refuse values that
// would lose commands or money safety, each error naming its variable, and set the streams'
// MaxAge and the bucket's TTL, also on streams that exist.
func TestRetentionVariables(t *testing.T) {
	t.Setenv("FRONTPAY_API_TOKEN", "tok")
	cfg, err := LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if topo := cfg.topology(); topo.CommandRetention != consumer.CommandRetention || topo.ResultRetention != consumer.ResultRetention ||
		topo.DeadLetterRetention != consumer.DeadLetterRetention || topo.StateTTL != consumer.StateTTL {
		t.Errorf("defaults %+v", topo)
	}
	for _, tc := range []struct{ name, value, want string }{
		{"FRONTPAY_COMMAND_RETENTION", "1h", "is lost without a result"},
		{"FRONTPAY_RESULT_RETENTION", "12h", "replay can only re-publish"},
		{"FRONTPAY_DEADLETTER_RETENTION", "-1h", "at least 24h"},
		{"FRONTPAY_STATE_TTL", "720h", "charge or capture twice"},
		{"FRONTPAY_STATE_TTL", "100d", "a duration"},
		{"FRONTPAY_RESULT_RETENTION", "2401h", "not be longer than FRONTPAY_STATE_TTL"},
		{"FRONTPAY_COMMAND_RETENTION", "2401h", "not be longer than FRONTPAY_STATE_TTL"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			t.Setenv(tc.name, tc.value)
			_, err := LoadConfig()
			if err == nil || !strings.Contains(err.Error(), tc.name+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %s: %q", err, tc.name, tc.want)
			}
		})
	}
	t.Run("longer, and 0 for the default", func(t *testing.T) {
		t.Setenv("FRONTPAY_STATE_TTL", "4000h")
		t.Setenv("FRONTPAY_RESULT_RETENTION", "3000h")
		t.Setenv("FRONTPAY_COMMAND_RETENTION", "0s")
		cfg, err := LoadConfig()
		if err != nil {
			t.Fatal(err)
		}
		if topo := cfg.topology(); topo.StateTTL != 4000*time.Hour || topo.ResultRetention != 3000*time.Hour || topo.CommandRetention != consumer.CommandRetention {
			t.Errorf("topology %+v", topo)
		}
	})

	// The worker sets them on its streams and bucket, and sets them again on its next start.
	sb := newSandbox(t)
	dir := t.TempDir()
	check := func(cmds, results, deadLetters, ttl time.Duration) {
		t.Helper()
		m := startMain(t, sb.URL, func(c *Config) {
			c.DataDir, c.CommandRetention, c.ResultRetention, c.DeadLetterRetention, c.StateTTL = dir, cmds, results, deadLetters, ttl
		})
		defer m.Close()
		nc, err := nats.Connect(m.NATSURL)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]time.Duration{"FRONTPAY_COMMANDS": cmds, "FRONTPAY_RESULTS": results, "FRONTPAY_DEADLETTER": deadLetters, "KV_frontpay_state": ttl} {
			s, err := js.Stream(t.Context(), name)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.CachedInfo().Config.MaxAge; got != want {
				t.Errorf("%s: MaxAge %s, want %s", name, got, want)
			}
		}
	}
	check(48*time.Hour, 72*time.Hour, 36*time.Hour, 2200*time.Hour)
	check(consumer.CommandRetention, consumer.ResultRetention, consumer.DeadLetterRetention, consumer.StateTTL)
}
