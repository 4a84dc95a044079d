package fleet

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Merchant is one Front Payment account the deployment serves (CONTRACT.md section 9): from
// FRONTPAY_MERCHANTS_FILE, or the one merchant (ID "") of the environment without it.
type Merchant struct {
	ID     string
	APIURL string
	// Rate is the most API requests a minute to the merchant's token, over the whole deployment;
	// 0 means no limit.
	Rate           int
	Token          string
	CallbackSecret string
}

// LogValue logs a merchant by its id and URL: never its token or secret.
func (m Merchant) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", m.ID), slog.String("apiUrl", m.APIURL), slog.Int("rate", m.Rate))
}

// String names the merchant without its token or secret.
func (m Merchant) String() string { return "merchant " + m.ID }

// GoString hides the token and secret from %#v too.
func (m Merchant) GoString() string { return m.String() }

// idPattern is a merchant's id: the first token of its subjects.
var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// reserved are ids a merchant cannot have: the first token of the worker's own subjects.
var reserved = map[string]bool{"frontpay": true}

// fields are the names of a merchant's fields in the file.
var fields = []string{"id", "tokenFile", "apiUrl", "rate", "callbackSecretFile"}

// fileMerchant is a merchant as the file writes it.
type fileMerchant struct {
	ID                 string `json:"id"`
	TokenFile          string `json:"tokenFile"`
	APIURL             string `json:"apiUrl"`
	Rate               *int   `json:"rate"`
	CallbackSecretFile string `json:"callbackSecretFile"`
}

// Load reads a merchants file (YAML: `merchants:`, a list of id, tokenFile, apiUrl, rate,
// callbackSecretFile) and the files it names. A merchant without apiUrl or rate gets defaultURL
// or defaultRate. It returns every fault at once, each naming the merchant and the field.
func Load(path, defaultURL string, defaultRate int) ([]Merchant, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("FRONTPAY_MERCHANTS_FILE: %w", err)
	}
	var file struct {
		Merchants []fileMerchant `json:"merchants"`
	}
	if err := yaml.UnmarshalStrict(raw, &file); err != nil {
		return nil, fmt.Errorf("FRONTPAY_MERCHANTS_FILE %s: %w", path, err)
	}
	var errs []error
	// encoding/json matches member names regardless of case: a misspelt "tokenfile" would be
	// taken for tokenFile. Names must be exactly the file's.
	var names struct {
		Merchants []map[string]any `json:"merchants"`
	}
	_ = yaml.Unmarshal(raw, &names)
	for i, m := range names.Merchants {
		for k := range m {
			if !slices.Contains(fields, k) {
				errs = append(errs, fmt.Errorf("FRONTPAY_MERCHANTS_FILE: merchants[%d]: unknown field %q (the fields are %s)", i, k, strings.Join(fields, ", ")))
			}
		}
	}
	seen := map[string]int{}
	out := make([]Merchant, 0, len(file.Merchants))
	for i, fm := range file.Merchants {
		name := fmt.Sprintf("merchants[%d]", i)
		if fm.ID != "" {
			name += " (" + fm.ID + ")"
		}
		bad := func(field, format string, args ...any) {
			errs = append(errs, fmt.Errorf("FRONTPAY_MERCHANTS_FILE: %s: %s: %s", name, field, fmt.Sprintf(format, args...)))
		}
		m := Merchant{ID: fm.ID, APIURL: fm.APIURL, Rate: defaultRate}
		switch j, dup := seen[fm.ID]; {
		case !idPattern.MatchString(fm.ID):
			bad("id", "must be lower-case letters, digits, - and _, at most 32, starting with a letter or digit; got %q", fm.ID)
		case reserved[fm.ID]:
			bad("id", "%q is the first token of the worker's own subjects", fm.ID)
		case dup:
			bad("id", "also the id of merchants[%d]", j)
		}
		seen[fm.ID] = i
		if m.APIURL == "" {
			m.APIURL = defaultURL
		}
		if u, err := url.Parse(m.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("apiUrl", "must be an absolute http(s) URL, got %q", m.APIURL)
		}
		if fm.Rate != nil {
			if m.Rate = *fm.Rate; m.Rate < 0 {
				bad("rate", "must be 0 (no limit) or more, got %d", m.Rate)
			}
		}
		if fm.TokenFile == "" {
			bad("tokenFile", "is required")
		} else if m.Token, err = secret(fm.TokenFile); err != nil {
			bad("tokenFile", "%v", err)
		}
		if fm.CallbackSecretFile != "" {
			if m.CallbackSecret, err = secret(fm.CallbackSecretFile); err != nil {
				bad("callbackSecretFile", "%v", err)
			}
		}
		out = append(out, m)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// secret reads a file holding a secret: its content less surrounding white space, not empty.
func secret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read the file: %w", err)
	}
	s := string(bytes.TrimSpace(b))
	if s == "" || strings.ContainsAny(s, "\r\n") {
		return "", errors.New("the file must hold one non-empty line")
	}
	return s, nil
}
