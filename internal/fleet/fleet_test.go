package fleet

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFile writes content to a file of the test's directory and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	tok1 := writeFile(t, dir, "shop1", "token-one\n")
	tok2 := writeFile(t, dir, "shop2", "  token-two  ")
	sec := writeFile(t, dir, "shop2-callback", "s3cret")
	path := writeFile(t, dir, "merchants.yaml", `merchants:
  - id: shop1
    tokenFile: `+tok1+`
  - id: shop2
    tokenFile: `+tok2+`
    apiUrl: https://apigo.frontpayment.no
    rate: 60
    callbackSecretFile: `+sec+`
`)
	ms, err := Load(path, "https://demo-api.frontpayment.no", 240)
	if err != nil {
		t.Fatal(err)
	}
	want := []Merchant{
		{ID: "shop1", APIURL: "https://demo-api.frontpayment.no", Rate: 240, Token: "token-one"},
		{ID: "shop2", APIURL: "https://apigo.frontpayment.no", Rate: 60, Token: "token-two", CallbackSecret: "s3cret"},
	}
	if fmt.Sprint(len(ms)) != "2" || ms[0] != want[0] || ms[1] != want[1] {
		t.Errorf("got %+v", ms)
	}
	if s := fmt.Sprintf("%v %+v %#v %s", ms[1], ms[1], ms[1], ms[1]); strings.Contains(s, "token-two") || strings.Contains(s, "s3cret") {
		t.Errorf("a merchant prints its secrets: %s", s)
	}
}

// TestLoadNamesEveryFault: a file with a fault in every field is refused with one message for
// each, naming the merchant and the field, and never a secret.
func TestLoadNamesEveryFault(t *testing.T) {
	dir := t.TempDir()
	tok := writeFile(t, dir, "token", "a-token-never-shown")
	empty := writeFile(t, dir, "empty", "\n")
	path := writeFile(t, dir, "merchants.yaml", `merchants:
  - id: Shop1
    tokenFile: `+tok+`
  - id: shop2
    tokenFile: `+filepath.Join(dir, "missing")+`
  - id: shop2
    tokenFile: `+tok+`
    apiUrl: ftp://example.org
    rate: -1
  - id: frontpay
    tokenFile: `+empty+`
  - id: shop5
    callbackSecretFile: `+filepath.Join(dir, "missing-too")+`
`)
	_, err := Load(path, "https://demo-api.frontpayment.no", 240)
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"merchants[0] (Shop1): id: must be lower-case",
		"merchants[1] (shop2): tokenFile: cannot read the file",
		"merchants[2] (shop2): id: also the id of merchants[1]",
		"merchants[2] (shop2): apiUrl: must be an absolute http(s) URL",
		"merchants[2] (shop2): rate: must be 0 (no limit) or more",
		`merchants[3] (frontpay): id: "frontpay" is the first token`,
		"merchants[3] (frontpay): tokenFile: the file must hold one non-empty line",
		"merchants[4] (shop5): tokenFile: is required",
		"merchants[4] (shop5): callbackSecretFile: cannot read the file",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not say %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "a-token-never-shown") {
		t.Errorf("the error shows a token:\n%s", msg)
	}
	bad := writeFile(t, dir, "unknown.yaml", "merchants:\n  - id: shop1\n    tokenfile: "+tok+"\n")
	if _, err := Load(bad, "https://demo-api.frontpayment.no", 240); err == nil || !strings.Contains(err.Error(), "tokenfile") {
		t.Errorf("a misspelt field: %v", err)
	}
}

// TestAssign: 30 merchants over 3 replicas, 10 each; every replica computes the same from the
// same members in any order; with a replica gone, the other two share all 30.
func TestAssign(t *testing.T) {
	var merchants []string
	for i := range 30 {
		merchants = append(merchants, fmt.Sprintf("shop%02d", i))
	}
	members := []string{"replica-a", "replica-b", "replica-c"}
	got := assign(merchants, members)
	load := map[string]int{}
	for _, m := range merchants {
		load[got[m]]++
	}
	for _, r := range members {
		if load[r] != 10 {
			t.Errorf("%s runs %d merchants, want 10: %v", r, load[r], load)
		}
	}
	again := assign(merchants, []string{"replica-c", "replica-a", "replica-b"})
	for _, m := range merchants {
		if again[m] != got[m] {
			t.Errorf("%s: %s, then %s from the same members in another order", m, got[m], again[m])
		}
	}
	two := assign(merchants, members[:2])
	load = map[string]int{}
	for _, m := range merchants {
		load[two[m]]++
	}
	if load["replica-a"] != 15 || load["replica-b"] != 15 {
		t.Errorf("two replicas: %v", load)
	}
}
