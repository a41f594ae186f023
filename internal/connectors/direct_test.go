package connectors

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countedServer is a test server that counts the connections it accepts
// and closes.
type countedServer struct {
	*httptest.Server
	opened, closed atomic.Int32
	closedCh       chan struct{}
}

func newCountedServer(t *testing.T, h http.HandlerFunc, configure ...func(*http.Server)) *countedServer {
	t.Helper()
	s := &countedServer{closedCh: make(chan struct{}, 64)}
	s.Server = httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			s.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.closed.Add(1)
			s.closedCh <- struct{}{}
		}
	}
	for _, c := range configure {
		c(s.Config)
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func newDirectTransport(t *testing.T, next *http.Transport) *DirectTransport {
	t.Helper()
	if next == nil {
		next = &http.Transport{MaxIdleConnsPerHost: 4}
	}
	d := NewDirectTransport(next)
	t.Cleanup(d.CloseIdleConnections)
	return d
}

func echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-Method", r.Method)
	_, _ = w.Write(body)
}

func post(t *testing.T, d *DirectTransport, url, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.RoundTrip(req)
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	return resp
}

func readAllClose(t *testing.T, resp *http.Response) string {
	t.Helper()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestDirectTransportKeepsOneConnectionForSequentialRequests(t *testing.T) {
	s := newCountedServer(t, echo)
	d := newDirectTransport(t, nil)
	for i := range 20 {
		body := strings.Repeat("x", i*100)
		resp := post(t, d, s.URL+"/v1/chat", body)
		if got := readAllClose(t, resp); got != body {
			t.Fatalf("request %d: echoed %d bytes, sent %d", i, len(got), len(body))
		}
		if resp.Header.Get("X-Method") != http.MethodPost || resp.Header.Get("X-Host") != strings.TrimPrefix(s.URL, "http://") {
			t.Fatalf("request %d arrived as %s to %s", i, resp.Header.Get("X-Method"), resp.Header.Get("X-Host"))
		}
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("20 sequential requests opened %d connections, want 1", n)
	}
}

func TestDirectTransportReusesABodyReadToItsLengthThenClosed(t *testing.T) {
	s := newCountedServer(t, echo)
	d := newDirectTransport(t, nil)
	for range 3 {
		resp := post(t, d, s.URL, "hello")
		buf := make([]byte, resp.ContentLength)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("opened %d connections, want 1", n)
	}
}

func TestDirectTransportRedialsWhenTheServerClosedAKeptConnection(t *testing.T) {
	s := newCountedServer(t, echo, func(s *http.Server) { s.IdleTimeout = 10 * time.Millisecond })
	d := newDirectTransport(t, nil)
	readAllClose(t, post(t, d, s.URL, "one"))
	<-s.closedCh // the server's idle timeout closed the kept connection
	if got := readAllClose(t, post(t, d, s.URL, "two")); got != "two" {
		t.Fatalf("echoed %q", got)
	}
	if n := s.opened.Load(); n != 2 {
		t.Fatalf("opened %d connections, want 2", n)
	}
}

func TestDirectTransportDoesNotKeepAConnectionTheServerCloses(t *testing.T) {
	s := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		echo(w, r)
	})
	d := newDirectTransport(t, nil)
	for range 3 {
		if got := readAllClose(t, post(t, d, s.URL, "x")); got != "x" {
			t.Fatalf("echoed %q", got)
		}
	}
	if n := s.opened.Load(); n != 3 {
		t.Fatalf("opened %d connections, want 3", n)
	}
	if len(d.idle) != 0 {
		t.Fatalf("kept %d connections the server closed", len(d.idle))
	}
}

func TestDirectTransportClosesAConnectionWhoseBodyWasLeftUnread(t *testing.T) {
	s := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(strings.Repeat("y", 1<<20)))
	})
	d := newDirectTransport(t, nil)
	resp := post(t, d, s.URL, "")
	if _, err := io.ReadFull(resp.Body, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
		t.Fatal("a closed body could still be read")
	}
	if got := readAllClose(t, post(t, d, s.URL, "")); len(got) != 1<<20 {
		t.Fatalf("second answer has %d bytes", len(got))
	}
	if n := s.opened.Load(); n != 2 {
		t.Fatalf("opened %d connections, want 2", n)
	}
}

func TestDirectTransportStreamsTheBodyAsItComes(t *testing.T) {
	second := make(chan struct{})
	s := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-second
		_, _ = io.WriteString(w, "data: two\n\n")
	})
	d := newDirectTransport(t, nil)
	resp := post(t, d, s.URL, "")
	lines := bufio.NewReader(resp.Body)
	if l, err := lines.ReadString('\n'); err != nil || l != "data: one\n" {
		t.Fatalf("first event: %q, %v", l, err)
	}
	close(second) // the second event is sent only once the first was read
	rest, err := io.ReadAll(lines)
	if err != nil || string(rest) != "\ndata: two\n\n" {
		t.Fatalf("rest: %q, %v", rest, err)
	}
	resp.Body.Close()
	if got := readAllClose(t, post(t, d, s.URL, "again")); got != "data: one\n\ndata: two\n\n" {
		t.Fatalf("second answer: %q", got)
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("opened %d connections, want 1 (the chunked answer ended cleanly)", n)
	}
}

func TestDirectTransportStopsWhenTheContextIsCancelled(t *testing.T) {
	release := make(chan struct{})
	s := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			_, _ = io.WriteString(w, "start")
			w.(http.Flusher).Flush()
		}
		<-release
	})
	t.Cleanup(func() { close(release) }) // before the server's Close, which waits for its handlers
	d := newDirectTransport(t, nil)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/headers", nil)
	go cancel()
	if _, err := d.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting for headers: %v, want context.Canceled", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/body", nil)
	resp, err := d.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := resp.Body.Read(buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("reading the body: %v, want context.Canceled", err)
	}
	resp.Body.Close()
	if len(d.idle) != 0 {
		t.Fatal("a cancelled exchange's connection was kept")
	}
}

func TestDirectTransportTimesOutWaitingForHeaders(t *testing.T) {
	release := make(chan struct{})
	s := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) { <-release })
	t.Cleanup(func() { close(release) })
	d := newDirectTransport(t, &http.Transport{ResponseHeaderTimeout: 20 * time.Millisecond})
	req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
	_, err := d.RoundTrip(req)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("got %v, want a timeout", err)
	}
}

func TestDirectTransportLeavesTLSToNext(t *testing.T) {
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			t.Error("request arrived without TLS")
		}
		_, _ = io.WriteString(w, "over tls")
	}))
	t.Cleanup(s.Close)
	d := newDirectTransport(t, s.Client().Transport.(*http.Transport))
	req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
	resp, err := d.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAllClose(t, resp); got != "over tls" || resp.TLS == nil {
		t.Fatalf("answer %q, TLS state %v", got, resp.TLS != nil)
	}
}

func TestDirectTransportDialsWithNextsDialer(t *testing.T) {
	s := newCountedServer(t, echo)
	refused := errors.New("refused by the egress policy")
	d := newDirectTransport(t, &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return nil, refused
	}})
	req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader("secret"))
	if _, err := d.RoundTrip(req); !errors.Is(err, refused) {
		t.Fatalf("got %v, want the dialer's refusal", err)
	}
	if n := s.opened.Load(); n != 0 {
		t.Fatalf("the server saw %d connections", n)
	}
}

func TestDirectTransportKeepsAtMostTheIdleLimit(t *testing.T) {
	s := newCountedServer(t, echo)
	d := newDirectTransport(t, &http.Transport{MaxIdleConnsPerHost: 2})
	var resps []*http.Response
	for range 5 { // five at once: five connections
		resps = append(resps, post(t, d, s.URL, "x"))
	}
	for _, r := range resps {
		readAllClose(t, r)
	}
	for _, list := range d.idle {
		if len(list) != 2 {
			t.Fatalf("kept %d connections, want 2", len(list))
		}
	}
	for range 3 {
		<-s.closedCh
	}
}

func TestDirectTransportClosesConnectionsIdleTooLong(t *testing.T) {
	s := newCountedServer(t, echo)
	d := newDirectTransport(t, &http.Transport{IdleConnTimeout: 10 * time.Millisecond})
	readAllClose(t, post(t, d, s.URL, "x"))
	<-s.closedCh // closed by the client's idle timer, not by the test
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, list := range d.idle {
		if len(list) != 0 {
			t.Fatal("an expired connection is still kept")
		}
	}
}

// pipeDialer answers each connection's first request with answer.
func pipeDialer(answer []byte) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		go func() {
			defer server.Close()
			if _, err := http.ReadRequest(bufio.NewReader(server)); err != nil {
				return
			}
			_, _ = server.Write(answer)
		}()
		return client, nil
	}
}

func TestDirectTransportRefusesAMalformedAnswer(t *testing.T) {
	for _, answer := range []string{
		"garbage\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 6) + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\nContent-Length: 0\r\n\r\n",
		"",
	} {
		d := newDirectTransport(t, &http.Transport{DialContext: pipeDialer([]byte(answer))})
		req, _ := http.NewRequest(http.MethodGet, "http://upstream.test/", nil)
		resp, err := d.RoundTrip(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Errorf("answer %q: no error", answer)
		}
		if len(d.idle) != 0 {
			t.Errorf("answer %q: connection kept", answer)
		}
	}
}

func TestDirectTransportSkipsEarlyHints(t *testing.T) {
	answer := "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	d := newDirectTransport(t, &http.Transport{DialContext: pipeDialer([]byte(answer))})
	req, _ := http.NewRequest(http.MethodGet, "http://upstream.test/", nil)
	resp, err := d.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAllClose(t, resp); resp.StatusCode != 200 || got != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, got)
	}
}

func TestDirectTransportConcurrentRequests(t *testing.T) {
	s := newCountedServer(t, echo)
	d := newDirectTransport(t, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 25 {
				body := strings.Repeat("z", i*10+j)
				req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader(body))
				resp, err := d.RoundTrip(req)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(got) != body {
					t.Errorf("echo %d bytes of %d: %v", len(got), len(body), err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := s.opened.Load(); n > 8+4 {
		t.Fatalf("200 requests from 8 goroutines opened %d connections", n)
	}
}

// FuzzDirectTransportAnswer feeds the transport arbitrary answers: it
// must return an error or a response whose body ends, without panicking.
func FuzzDirectTransportAnswer(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\nuntil close"))
	f.Add([]byte("HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, answer []byte) {
		d := NewDirectTransport(&http.Transport{DialContext: pipeDialer(answer)})
		defer d.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodPost, "http://upstream.test/v1", strings.NewReader("{}"))
		resp, err := d.RoundTrip(req)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
	})
}

func TestDirectTransportBoundsTheAnswersHeaders(t *testing.T) {
	answer := "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\nContent-Length: 2\r\n\r\nok"
	for _, limit := range []int64{0, 32 << 10} {
		d := newDirectTransport(t, &http.Transport{DialContext: pipeDialer([]byte(answer)), MaxResponseHeaderBytes: limit})
		req, _ := http.NewRequest(http.MethodGet, "http://upstream.test/", nil)
		resp, err := d.RoundTrip(req)
		switch {
		case limit == 0 && err != nil:
			t.Errorf("64 KiB of headers under the default bound: %v", err)
		case limit == 0:
			readAllClose(t, resp)
		case !errors.Is(err, errHeadersTooLarge):
			t.Errorf("64 KiB of headers with a bound of %d: %v", limit, err)
		}
	}
}

func TestDirectTransportCloseEndsABlockedRead(t *testing.T) {
	release := make(chan struct{})
	s := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "start")
		w.(http.Flusher).Flush()
		<-release
	})
	t.Cleanup(func() { close(release) })
	d := newDirectTransport(t, nil)
	resp := post(t, d, s.URL, "")
	if _, err := io.ReadFull(resp.Body, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	read := make(chan error)
	go func() {
		_, err := resp.Body.Read(make([]byte, 10))
		read <- err
	}()
	body := resp.Body.(*directBody)
	for blocked := false; !blocked; {
		body.mu.Lock()
		blocked = body.reading
		body.mu.Unlock()
		runtime.Gosched()
	}
	resp.Body.Close()
	if err := <-read; err == nil {
		t.Fatal("the blocked Read returned no error")
	}
	if len(d.idle) != 0 {
		t.Fatal("a closed exchange's connection was kept")
	}
}

func TestDirectTransportSendsNothingForACancelledContext(t *testing.T) {
	var mu sync.Mutex
	var got []string
	s := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(body))
		mu.Unlock()
	})
	d := newDirectTransport(t, nil)
	readAllClose(t, post(t, d, s.URL, "warm")) // a kept connection, ready to write on
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, strings.NewReader("late"))
	if _, err := d.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	readAllClose(t, post(t, d, s.URL, "next"))
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != "warm,next" {
		t.Fatalf("the server received %q", got)
	}
}
