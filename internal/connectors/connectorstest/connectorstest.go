// Package connectorstest helps the connectors' tests.
package connectorstest

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// CheckOneWriteEach builds a connector with connect, on a client whose
// connections count their writes, sends three requests with the function
// it returns, and fails unless each request took one write: headers and
// body leave together, so the upstream reads a request at once rather
// than waking for each part.
func CheckOneWriteEach(t *testing.T, connect func(*http.Client) (send func() error)) {
	t.Helper()
	var writes atomic.Int64
	transport := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return writeCounter{conn, &writes}, nil
	}}
	t.Cleanup(transport.CloseIdleConnections)
	send := connect(&http.Client{Transport: transport})
	for i := range 3 {
		if err := send(); err != nil {
			t.Fatal(err)
		}
		if got := writes.Load(); got != int64(i+1) {
			t.Fatalf("after %d requests the connector wrote %d times, want one write a request", i+1, got)
		}
	}
}

type writeCounter struct {
	net.Conn
	writes *atomic.Int64
}

func (c writeCounter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// HeaderCall is one call for CheckHeadersSent: the server answers it with
// Answer, and Send makes it through a connector on baseURL and hc.
type HeaderCall struct {
	Answer http.HandlerFunc
	Send   func(baseURL string, hc *http.Client) error
}

// CheckHeadersSent makes each call against a server of its own, and fails
// t if the headers the server received hold an SDK telemetry header
// (connectors.DropSDKTelemetry) or lack any of need.
func CheckHeadersSent(t *testing.T, calls map[string]HeaderCall, need ...string) {
	t.Helper()
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var (
				mu  sync.Mutex
				got http.Header
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				got = r.Header.Clone()
				mu.Unlock()
				call.Answer(w, r)
			}))
			t.Cleanup(srv.Close)
			if err := call.Send(srv.URL, srv.Client()); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			for name := range got {
				if strings.HasPrefix(name, "X-Stainless") {
					t.Errorf("header %s: %q reached the upstream", name, got.Get(name))
				}
			}
			for _, name := range need {
				if got.Get(name) == "" {
					t.Errorf("header %s is missing", name)
				}
			}
		})
	}
}
