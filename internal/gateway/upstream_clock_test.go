package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/connectors"
)

// clockedUpstream is an HTTP transport on a fake clock: the exchange takes
// exchange, and each Read of the answer's body read.
type clockedUpstream struct {
	clock          *fakeClock
	exchange, read time.Duration
}

func (u clockedUpstream) RoundTrip(req *http.Request) (*http.Response, error) {
	u.clock.Advance(u.exchange)
	return &http.Response{StatusCode: 200, Request: req, Header: http.Header{},
		Body: io.NopCloser(&clockedReader{Reader: strings.NewReader("answer"), clock: u.clock, each: u.read})}, nil
}

type clockedReader struct {
	io.Reader
	clock *fakeClock
	each  time.Duration
}

func (r *clockedReader) Read(p []byte) (int, error) {
	r.clock.Advance(r.each)
	return r.Reader.Read(p)
}

// busyConnector spends own before and after its HTTP exchange, on the
// fake clock, as an SDK building a request and decoding an answer does;
// with no client it makes no exchange at all.
type busyConnector struct {
	client *http.Client
	clock  *fakeClock
	own    time.Duration
	reply  string // "ok" when empty
}

func (c busyConnector) Kind() string { return "fake" }

func (c busyConnector) Chat(ctx context.Context, _ connectors.Request) (connectors.Response, error) {
	c.clock.Advance(c.own)
	if c.client != nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://upstream.test/v1/chat/completions", nil)
		if err != nil {
			return connectors.Response{}, err
		}
		resp, err := c.client.Do(req)
		if err != nil {
			return connectors.Response{}, err
		}
		defer resp.Body.Close()
		if _, err := io.ReadAll(resp.Body); err != nil {
			return connectors.Response{}, err
		}
	}
	c.clock.Advance(c.own)
	if c.reply == "" {
		return connectors.Response{Content: "ok"}, nil
	}
	return connectors.Response{Content: c.reply}, nil
}

// An attempt's Waited is its time in HTTP exchanges with the upstream
// (the round trip and each read of the answer), not the connector's own
// work around them; a connector that makes no exchange is all upstream.
func TestAttemptWaitedIsTheUpstreamExchange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                 string
		http                 bool
		wantDuration, waited time.Duration
	}{
		// 2×7 ms own, 30 ms exchange, two reads of 4 ms (the data, then the end).
		{"http connector", true, 52 * time.Millisecond, 38 * time.Millisecond},
		{"in-process connector", false, 14 * time.Millisecond, 14 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, clock, _ := newTestCaller(CallerConfig{})
			conn := busyConnector{clock: clock, own: 7 * time.Millisecond}
			if tc.http {
				conn.client = timeUpstream(&http.Client{Transport: clockedUpstream{clock: clock, exchange: 30 * time.Millisecond, read: 4 * time.Millisecond}})
			}
			_, rep, err := c.Call(context.Background(), []Target{{Name: "fake/m", Model: "m", Connector: conn}}, connectors.Request{})
			if err != nil {
				t.Fatal(err)
			}
			if a := rep.Attempts[0]; a.Duration != tc.wantDuration || a.Waited != tc.waited {
				t.Fatalf("attempt took %v of which %v waiting on the upstream; want %v and %v", a.Duration, a.Waited, tc.wantDuration, tc.waited)
			}
		})
	}
}

// Outside an attempt (no clock in the request's context) the transport
// only passes the exchange on.
func TestTimedTransportWithoutAnAttempt(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	client := timeUpstream(&http.Client{Transport: clockedUpstream{clock: clock, exchange: time.Millisecond}})
	resp, err := client.Get("http://upstream.test/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, ok := resp.Body.(*timedBody); ok {
		t.Fatal("a body outside any attempt was timed")
	}
}

// x-moat-overhead-us (Result.Overhead) holds a connector's own work around
// its HTTP exchange, and not the exchange; in a stream, not the time the
// caller took to take each piece either.
func TestOverheadHoldsTheConnectorsOwnWork(t *testing.T) {
	t.Parallel()
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
			// Long enough that part of it is checked and handed on
			// during the attempt.
			reply := strings.Repeat("The parcel will be replaced. ", 40)
			conn := busyConnector{clock: clock, own: 7 * time.Millisecond, reply: reply,
				client: timeUpstream(&http.Client{Transport: clockedUpstream{clock: clock, exchange: 30 * time.Millisecond, read: 4 * time.Millisecond}})}
			g := newInProcessGateway(t, func(cfg *Config) {
				cfg.Now, cfg.Caller.Now = clock.Now, clock.Now
				cfg.Recorder = discardRecorder{}
			}, conn)
			req := Request{Identity: keyIdentity(), Model: "fake-chat", Messages: []Message{userMsg("hello")}}
			var res Result
			var err error
			if stream {
				var got strings.Builder
				res, err = g.ChatStream(context.Background(), req, func(s string) error {
					if got.Len() == 0 {
						clock.Advance(5 * time.Millisecond) // a slow reader
					}
					got.WriteString(s)
					return nil
				})
				if err == nil && got.String() != reply {
					t.Fatalf("the caller got %q", got.String())
				}
			} else {
				res, err = g.Chat(context.Background(), req)
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := 14 * time.Millisecond; res.Overhead != want || res.Record.Overhead != want {
				t.Fatalf("overhead %v (record %v), want the connector's own %v", res.Overhead, res.Record.Overhead, want)
			}
		})
	}
}

// The wait before a retry (a backoff, or the upstream's Retry-After) is not
// the gateway's own time either.
func TestOverheadLeavesOutTheBackoff(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	conn := &scripted{script: []error{upErr(connectors.ErrUnavailable, 2*time.Second), nil},
		onCall: func() { clock.Advance(3 * time.Millisecond) }}
	g := newInProcessGateway(t, func(cfg *Config) {
		cfg.Now, cfg.Caller.Now = clock.Now, clock.Now
		cfg.Caller.Sleep = func(_ context.Context, d time.Duration) error { clock.Advance(d); return nil }
		cfg.Recorder = discardRecorder{}
	}, conn)
	res, err := g.Chat(context.Background(), Request{Identity: keyIdentity(), Model: "fake-chat", Messages: []Message{userMsg("hello")}})
	if err != nil {
		t.Fatal(err)
	}
	if a := res.Record.Attempts; len(a) != 2 || a[0].Backoff != 2*time.Second || a[1].Backoff != 0 {
		t.Fatalf("attempts %+v: want two, the first followed by the 2s the upstream asked for", a)
	}
	if res.Overhead != 0 || res.Record.Latency != 2*time.Second+6*time.Millisecond {
		t.Fatalf("overhead %v of %v; want none: the clock moved only in the connector and the backoff", res.Overhead, res.Record.Latency)
	}
}
