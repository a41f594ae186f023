package gateway

import (
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// upstreamClock adds up the time one attempt spends waiting on its
// upstream: inside the HTTP transport's RoundTrip (sending the request and
// waiting for the answer's head) and inside each Read of the answer's
// body; and, in a stream, handing checked text to the caller (a slow
// reader's time is not the gateway's either). What a connector does
// besides (the SDK's request building, encoding the body, decoding the
// answer, a stream's chunks being checked) is the gateway's own time,
// which x-moat-overhead-us reports.
type upstreamClock struct {
	now       func() time.Time
	exchange  atomic.Int64 // nanoseconds
	delivery  atomic.Int64 // nanoseconds
	exchanged atomic.Bool
}

func (c *upstreamClock) addExchange(start time.Time) {
	c.exchanged.Store(true)
	c.exchange.Add(int64(c.now().Sub(start)))
}

func (c *upstreamClock) addDelivery(start time.Time) {
	c.delivery.Add(int64(c.now().Sub(start)))
}

// waited is the part of the whole attempt that was not the gateway's
// work: its HTTP exchanges and deliveries, or the whole attempt for a
// connector that made no exchange (an in-process model is the upstream
// itself).
func (c *upstreamClock) waited(whole time.Duration) time.Duration {
	if !c.exchanged.Load() {
		return whole
	}
	return min(time.Duration(c.exchange.Load()+c.delivery.Load()), whole)
}

// timedTransport times a connector's HTTP exchanges for the attempt whose
// scope their requests carry.
type timedTransport struct{ next http.RoundTripper }

// timeUpstream is c with its exchanges timed.
func timeUpstream(c *http.Client) *http.Client {
	out := *c
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	out.Transport = timedTransport{next: next}
	return &out
}

func (t timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	clock := callScopeFrom(req.Context()).upstream
	if clock == nil {
		return t.next.RoundTrip(req)
	}
	start := clock.now()
	resp, err := t.next.RoundTrip(req)
	clock.addExchange(start)
	if err == nil && resp.Body != nil && resp.Body != http.NoBody {
		resp.Body = &timedBody{ReadCloser: resp.Body, clock: clock}
	}
	return resp, err
}

func (t timedTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type timedBody struct {
	io.ReadCloser
	clock *upstreamClock
}

func (b *timedBody) Read(p []byte) (int, error) {
	start := b.clock.now()
	n, err := b.ReadCloser.Read(p)
	b.clock.addExchange(start)
	return n, err
}
