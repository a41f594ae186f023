package connectors

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DirectTransport sends plain-HTTP requests (http://, the scheme of local
// inference servers: Ollama, vLLM, llama.cpp) over HTTP/1.1 connections it
// writes and reads on the calling goroutine, and hands every other request
// (https, an upgrade, CONNECT) to Next.
//
// net/http's Transport gives each request to a writer goroutine and each
// answer back from a reader goroutine. Against an upstream on the same
// machine, answering in tens of microseconds, those hand-offs and the
// threads they wake were a tenth of what `moat serve` spent on a call
// (BENCHMARKS.md). Over TLS to a remote vendor they are lost in the network
// time, and Next keeps HTTP/2 there.
//
// Connections are kept per host, at most Next.MaxIdleConnsPerHost (two
// when unset) and for at most Next.IdleConnTimeout (90 s when unset). One
// is reused only after a check that the server has not closed it meanwhile
// (where the platform allows: see connAlive), since no reader goroutine is
// there to notice. A request is never sent twice: a connection that fails
// is closed and the error returned, as net/http does for a request that is
// not idempotent, and the caller's retry policy decides.
type DirectTransport struct {
	Next *http.Transport

	mu   sync.Mutex
	idle map[string][]*directConn // by host:port, most recently used last
}

// NewDirectTransport returns a DirectTransport in front of next, which
// also supplies the dialer (and so the egress policy), the response header
// timeout and the limits on idle connections.
func NewDirectTransport(next *http.Transport) *DirectTransport {
	return &DirectTransport{Next: next}
}

// directConn is one kept connection with its buffers.
type directConn struct {
	net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	addr  string
	timer *time.Timer // closes the connection once idle too long; made when first kept
	// budget is how many more bytes br may take from the connection while
	// an answer's headers are read; -1 once they are.
	budget int64
}

// budgetedReader is what a directConn's buffer reads from: the
// connection, within its budget.
type budgetedReader struct{ c *directConn }

func (r budgetedReader) Read(p []byte) (int, error) {
	if r.c.budget == 0 {
		return 0, errHeadersTooLarge
	}
	if r.c.budget > 0 && int64(len(p)) > r.c.budget {
		p = p[:r.c.budget]
	}
	n, err := r.c.Conn.Read(p)
	if r.c.budget > 0 {
		r.c.budget -= int64(n)
	}
	return n, err
}

var errHeadersTooLarge = errors.New("connectors: the answer's headers are larger than allowed")

// defaultMaxHeaderBytes bounds an answer's headers when Next sets no
// bound: an AI service's are a few kilobytes, and net/http's default of
// 10 MB would let one answer hold that much memory.
const defaultMaxHeaderBytes = 1 << 20

// max1xxAnswers bounds the informational answers before the real one, as
// net/http does.
const max1xxAnswers = 5

// aLongTimeAgo is a deadline that has passed: setting it stops any read or
// write under way on the connection.
var aLongTimeAgo = time.Unix(1, 0)

// directBufferSize holds the headers and a few kilobytes of body, so that
// a chat request goes out in one write and its answer comes in one read.
const directBufferSize = 16 << 10

// RoundTrip implements http.RoundTripper.
func (t *DirectTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || req.Method == http.MethodConnect || req.Header.Get("Upgrade") != "" ||
		t.Next.Proxy != nil || !directSupported {
		return t.Next.RoundTrip(req)
	}
	if req.URL.Host == "" {
		CloseRequestBody(req)
		return nil, errors.New("connectors: request has no host")
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	ctx := req.Context()
	if ctx.Err() != nil { // nothing is sent for a call already given up
		CloseRequestBody(req)
		return nil, cancelledError(ctx)
	}
	c, err := t.conn(ctx, addr)
	if err != nil {
		CloseRequestBody(req)
		return nil, err
	}
	resp, err := t.exchange(ctx, req, c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return resp, nil
}

// exchange writes req on c and reads the answer's headers; the body is
// read by the caller, and c goes back to the pool once it has been read to
// the end.
func (t *DirectTransport) exchange(ctx context.Context, req *http.Request, c *directConn) (*http.Response, error) {
	b := &directBody{t: t, c: c, ctx: ctx}
	b.stop = context.AfterFunc(ctx, func() {
		b.cancelled.Store(true)
		_ = c.SetDeadline(aLongTimeAgo)
	})
	fail := func(err error) (*http.Response, error) {
		b.stop()
		if b.cancelled.Load() {
			return nil, cancelledError(ctx)
		}
		return nil, err
	}
	err := req.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		return fail(err)
	}
	if d := t.Next.ResponseHeaderTimeout; d > 0 {
		_ = c.SetReadDeadline(time.Now().Add(d))
	}
	// The budget counts what the buffer reads from here on (a kept
	// connection has nothing buffered).
	c.budget = int64(t.Next.MaxResponseHeaderBytes)
	if c.budget <= 0 {
		c.budget = defaultMaxHeaderBytes
	}
	resp, err := http.ReadResponse(c.br, req)
	// Informational answers (103 Early Hints) come before the real one.
	for n := 0; err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols; n++ {
		if n == max1xxAnswers {
			return fail(fmt.Errorf("connectors: more than %d informational answers", max1xxAnswers))
		}
		resp, err = http.ReadResponse(c.br, req)
	}
	c.budget = -1
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return fail(errors.New("connectors: the server switched protocols, which was not asked for"))
	}
	if t.Next.ResponseHeaderTimeout > 0 {
		_ = c.SetReadDeadline(time.Time{})
		if b.cancelled.Load() { // the deadline just cleared was the cancellation's
			_ = c.SetDeadline(aLongTimeAgo)
		}
	}
	b.body, b.keep, b.length = resp.Body, !resp.Close && !req.Close, resp.ContentLength
	resp.Body = b
	return resp, nil
}

// cancelledError is what a request whose context ended fails with.
func cancelledError(ctx context.Context) error {
	return fmt.Errorf("connectors: %w", context.Cause(ctx))
}

// directBody is an answer's body; reading it to the end returns the
// connection to the pool.
type directBody struct {
	t         *DirectTransport
	c         *directConn
	body      io.ReadCloser
	stop      func() bool // stops the cancellation's deadline
	cancelled atomic.Bool // the context ended during the exchange
	ctx       context.Context
	keep      bool  // the connection may carry another request
	length    int64 // the Content-Length, or -1

	// mu guards what follows, but is not held while reading the
	// connection, so that Close can end a Read blocked on it (as
	// net/http's bodies allow).
	mu      sync.Mutex
	reading bool
	read    int64
	done    bool  // the exchange is over: the connection was kept or closed
	err     error // what Read answers once it is
}

var errBodyClosed = errors.New("connectors: read on a closed response body")

func (b *directBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.done {
		defer b.mu.Unlock()
		return 0, b.err
	}
	b.reading = true
	b.mu.Unlock()
	n, err := b.body.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading = false
	b.read += int64(n)
	switch {
	case b.done: // closed meanwhile, and the connection with it
		if err == nil {
			err = errBodyClosed
		}
	case err == io.EOF:
		b.finish(true, io.EOF)
	case err != nil:
		if b.cancelled.Load() {
			err = cancelledError(b.ctx)
		}
		b.finish(false, err)
	}
	return n, err
}

// Close ends the exchange. A body read to its end, or whose known length
// is already buffered, leaves the connection reusable; any other closes
// it rather than wait for the rest (a chunked body's end cannot be told
// from what is buffered without possibly waiting), which also ends a Read
// blocked on it.
func (b *directBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		b.err = errBodyClosed
		return nil
	}
	atEOF := false
	if !b.reading && b.length >= 0 && b.length-b.read <= int64(b.c.br.Buffered()) {
		n, err := io.Copy(io.Discard, b.body)
		b.read += n
		atEOF = err == nil
	}
	b.finish(atEOF, errBodyClosed)
	return nil
}

// finish ends the exchange, keeping the connection only when the answer
// was read to a clean end. The caller holds b.mu.
func (b *directBody) finish(atEOF bool, after error) {
	b.done, b.err = true, after
	stopped := b.stop()
	if atEOF && b.keep && stopped && b.c.br.Buffered() == 0 {
		b.t.put(b.c)
		return
	}
	b.c.Close()
}

// conn returns a kept connection to addr that is still open, or a new one.
func (t *DirectTransport) conn(ctx context.Context, addr string) (*directConn, error) {
	for {
		t.mu.Lock()
		list := t.idle[addr]
		if len(list) == 0 {
			t.mu.Unlock()
			break
		}
		c := list[len(list)-1]
		list[len(list)-1] = nil
		t.idle[addr] = list[:len(list)-1]
		t.mu.Unlock()
		// A timer that already fired is closing the connection.
		if c.timer.Stop() && connAlive(c.Conn) {
			return c, nil
		}
		c.Close()
	}
	dial := t.Next.DialContext
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &directConn{Conn: nc, addr: addr, bw: bufio.NewWriterSize(nc, directBufferSize), budget: -1}
	c.br = bufio.NewReaderSize(budgetedReader{c}, directBufferSize)
	return c, nil
}

// put keeps c for the next request to its host, or closes it when the
// host already has as many kept as allowed.
func (t *DirectTransport) put(c *directConn) {
	limit := t.Next.MaxIdleConnsPerHost
	if limit <= 0 {
		limit = http.DefaultMaxIdleConnsPerHost
	}
	idleFor := t.Next.IdleConnTimeout
	if idleFor <= 0 {
		idleFor = 90 * time.Second
	}
	t.mu.Lock()
	if t.idle == nil {
		t.idle = map[string][]*directConn{}
	}
	if len(t.idle[c.addr]) >= limit {
		t.mu.Unlock()
		c.Close()
		return
	}
	t.idle[c.addr] = append(t.idle[c.addr], c)
	if c.timer == nil {
		c.timer = time.AfterFunc(idleFor, func() { t.expire(c) })
	} else {
		c.timer.Reset(idleFor)
	}
	t.mu.Unlock()
}

// expire closes c, kept too long, and forgets it.
func (t *DirectTransport) expire(c *directConn) {
	t.mu.Lock()
	list := t.idle[c.addr]
	if i := slices.Index(list, c); i >= 0 {
		// slices.Delete clears the freed slot, so the list does not keep
		// the closed connection reachable.
		t.idle[c.addr] = slices.Delete(list, i, i+1)
	}
	t.mu.Unlock()
	c.Close()
}

// CloseIdleConnections closes the connections kept here and in Next.
func (t *DirectTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.timer.Stop()
			c.Close()
		}
	}
	t.Next.CloseIdleConnections()
}

// CloseRequestBody closes what a RoundTripper must close even when it
// sends nothing.
func CloseRequestBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
