package testworld

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Serve serves h over real HTTP until the test ends and returns its URL: another way in to a
// sandbox, e.g. one that counts a worker's own calls.
func Serve(tb testing.TB, h http.Handler) string {
	tb.Helper()
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv.URL
}

// Front is another way in to a handler, whose requests it counts: e.g. a worker's own way to a
// shared sandbox, so that its calls can be told apart from the others'.
type Front struct {
	URL   string
	Calls Calls
}

// NewFront serves h through a Front over real HTTP until the test ends.
func NewFront(tb testing.TB, h http.Handler) *Front {
	tb.Helper()
	f := &Front{}
	f.URL = Serve(tb, f.Calls.Wrap(h))
	return f
}

// Get sends a GET to url and returns the answer's status and body; a request that fails fails tb.
func Get(tb testing.TB, url string) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequestWithContext(Context(tb), http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, body
}
