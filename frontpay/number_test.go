package frontpay

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestNumberRoundTrip(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`1`, `51.00`, `"0"`, `"51.00"`, `1000.00`, `-3`, `"1e2"`, `0.10`, `null`} {
		var n Number
		if err := json.Unmarshal([]byte(in), &n); err != nil {
			t.Fatalf("unmarshal %s: %v", in, err)
		}
		out, err := json.Marshal(n)
		if err != nil {
			t.Fatalf("marshal %s: %v", in, err)
		}
		if string(out) != in {
			t.Errorf("%s came back as %s", in, out)
		}
	}
}

func TestNumberRejects(t *testing.T) {
	t.Parallel()
	long := `"` + strings.Repeat("1", MaxNumberText+1) + `"`
	for _, in := range []string{`"abc"`, `true`, `{}`, `[]`, `""`, `"1,5"`, `"0x10"`, `" 1"`, `1e100`, `"-1e999999"`, long} {
		var n Number
		if err := json.Unmarshal([]byte(in), &n); err == nil {
			t.Errorf("%s: accepted as %q", in, n)
		}
	}
}

func TestNumberCents(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"51.00", 5100, true},
		{"0.1", 10, true},
		{"1e2", 10000, true},
		{"-2.5", -250, true},
		{"0.001", 0, false},
		{"99999999999999999999", 0, false},
		// Far beyond float64 precision, and still exact.
		{"90071992547409.93", 9007199254740993, true},
	}
	for _, c := range cases {
		got, err := Num(c.in).Cents()
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("Cents(%s) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
	if got := FromCents(-1205).String(); got != "-12.05" {
		t.Errorf("FromCents(-1205) = %s", got)
	}
	if Str("5").Cmp(Num("5.00")) != 0 || Num("5").Cmp(Num("5.01")) != -1 {
		t.Error("Cmp compares text, not value")
	}
}

func TestLinesAcceptsObjectAndArray(t *testing.T) {
	t.Parallel()
	var fromObject, fromArray Lines[CaptureLine]
	if err := json.Unmarshal([]byte(`{"10":{"id":3,"amount":1},"2":{"id":2,"amount":1},"0":{"id":1,"amount":1}}`), &fromObject); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(`[{"id":1,"amount":1},{"id":2,"amount":1},{"id":3,"amount":1}]`), &fromArray); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if fromObject[i].ID != fromArray[i].ID {
			t.Fatalf("line %d: object gave id %s, array %s", i, fromObject[i].ID, fromArray[i].ID)
		}
	}
	out, _ := json.Marshal(fromArray)
	if string(out) != `{"0":{"id":1,"amount":1},"1":{"id":2,"amount":1},"2":{"id":3,"amount":1}}` {
		t.Errorf("marshalled as %s", out)
	}
	if err := json.Unmarshal([]byte(`"x"`), &fromArray); err == nil {
		t.Error("a string was taken as products")
	}
}

func TestTextAcceptsStringOrNumber(t *testing.T) {
	t.Parallel()
	var v struct{ A, B, C Text }
	if err := json.Unmarshal([]byte(`{"A":"21.01.2024 04:00","B":1706674723,"C":null}`), &v); err != nil {
		t.Fatal(err)
	}
	if v.A != "21.01.2024 04:00" || v.B != "1706674723" || v.C != "" {
		t.Errorf("got %+v", v)
	}
	if err := json.Unmarshal([]byte(`{"A":true}`), &v); err == nil {
		t.Error("a boolean was taken as text")
	}
}
