// Package connectorstest helps the connectors' tests.
package connectorstest

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
)

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
