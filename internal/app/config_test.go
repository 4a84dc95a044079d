package app

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/internal/testworld"
)

func TestConfigNamesEveryBadVariable(t *testing.T) {
	for name, value := range map[string]string{
		"FRONTPAY_API_TIMEOUT":    "soon",
		"FRONTPAY_MAX_ATTEMPTS":   "0",
		"FRONTPAY_API_RATE":       "-5",
		"FRONTPAY_CALLBACK_SHARE": "0",
		"FRONTPAY_SUBJECT_PREFIX": "shop1",
		"FRONTPAY_LOG_FORMAT":     "xml",
		"FRONTPAY_LOG_LEVEL":      "loud",
		"FRONTPAY_REPLICAS":       "2",
		"FRONTPAY_API_URL":        "ftp://x",
		"FRONTPAY_RETRY_MAX":      "1ms",
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("FRONTPAY_API_TOKEN", "tok-SECRET-123")
			t.Setenv(name, value)
			_, err := LoadConfig()
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("%s=%q: got %v, want an error naming %s", name, value, err, name)
			}
			if strings.Contains(err.Error(), "tok-SECRET-123") {
				t.Fatalf("the token leaked into %v", err)
			}
		})
	}
	t.Run("token missing", func(t *testing.T) {
		t.Setenv("FRONTPAY_API_TOKEN", "")
		if _, err := LoadConfig(); err == nil || !strings.Contains(err.Error(), "FRONTPAY_API_TOKEN") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("token from file", func(t *testing.T) {
		file := t.TempDir() + "/token"
		if err := os.WriteFile(file, []byte("tok-SECRET-123\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("FRONTPAY_API_TOKEN", "")
		t.Setenv("FRONTPAY_API_TOKEN_FILE", file)
		cfg, err := LoadConfig()
		if err != nil || cfg.APIToken != "tok-SECRET-123" {
			t.Fatalf("got %v", err)
		}
		for _, format := range []string{"%v", "%+v", "%#v"} {
			if s := fmt.Sprintf(format, cfg); strings.Contains(s, "tok-SECRET-123") {
				t.Fatalf("%s of the config shows the token: %s", format, s)
			}
		}
	})
}

// TestCallbackSecretFile: FRONTPAY_CALLBACK_SECRET_FILE is read like the token's file, and only
// one of the pair may be set.
func TestCallbackSecretFile(t *testing.T) {
	t.Setenv("FRONTPAY_API_TOKEN", "tok")
	dir := t.TempDir()
	file := filepath.Join(dir, "callback-secret")
	if err := os.WriteFile(file, []byte("cb-SECRET-42\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FRONTPAY_CALLBACK_SECRET_FILE", file)
	cfg, err := LoadConfig()
	if err != nil || cfg.CallbackSecret != "cb-SECRET-42" {
		t.Fatalf("got %v", err)
	}
	t.Setenv("FRONTPAY_CALLBACK_SECRET", "another")
	if _, err := LoadConfig(); err == nil || !strings.Contains(err.Error(), "FRONTPAY_CALLBACK_SECRET_FILE: set only one") {
		t.Fatalf("both set: %v", err)
	}
	t.Setenv("FRONTPAY_CALLBACK_SECRET", "")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{empty: "is empty", filepath.Join(dir, "missing"): "cannot read the file"} {
		t.Setenv("FRONTPAY_CALLBACK_SECRET_FILE", file)
		if _, err := LoadConfig(); err == nil || !strings.HasPrefix(err.Error(), "FRONTPAY_CALLBACK_SECRET_FILE: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", file, err)
		}
	}
}

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
		m := startMain(t, sb.URL, func(m *Main) {
			c := m.Config
			c.DataDir, c.CommandRetention, c.ResultRetention, c.DeadLetterRetention, c.StateTTL = dir, cmds, results, deadLetters, ttl
		})
		defer m.Close()
		_, js := testworld.Connect(t, m.NATSURL)
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
