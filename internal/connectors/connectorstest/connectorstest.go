// Package connectorstest helps the connectors' tests.
package connectorstest

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
)

// CheckOneWriteEach sends three requests with send, through a client on
// a WriteCountingTransport counting in writes, and fails unless each
// request took one write: headers and body leave together, so the
// upstream reads a request at once rather than waking for each part.
func CheckOneWriteEach(t *testing.T, writes *atomic.Int64, send func() error) {
	t.Helper()
	for i := range 3 {
		if err := send(); err != nil {
			t.Fatal(err)
		}
		if got := writes.Load(); got != int64(i+1) {
			t.Fatalf("after %d requests the connector wrote %d times, want one write a request", i+1, got)
		}
	}
}

// WriteCountingTransport is a transport whose connections count their
// writes in writes: a request sent in one write counts one.
func WriteCountingTransport(writes *atomic.Int64) *http.Transport {
	return &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return writeCounter{conn, writes}, nil
	}}
}

type writeCounter struct {
	net.Conn
	writes *atomic.Int64
}

func (c writeCounter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}
