package gateway

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/connectors"
)

// Streaming: an answer reaches the caller piece by piece, but no piece
// leaves before it has been checked, and a token split across chunks is
// restored whole.

// maxTokenBody is the longest token body tokenMatches accepts: '<', up to
// 40 letters, digits or underscores, '>'.
const maxTokenBody = 40

// streamRestorer restores tokens in a text that arrives in pieces, giving
// exactly what Tokenizer.Restore gives on the whole text. It holds back a
// suffix that may still become a token ("<EMA" before "IL_1>" arrives).
type streamRestorer struct {
	tokens  *Tokenizer
	allow   func(class string) bool
	pending string
}

// Write takes the next piece and returns the restored text that is decided.
func (r *streamRestorer) Write(piece string) string {
	text := r.pending + piece
	cut := undecidedTokenStart(text)
	r.pending = text[cut:]
	out, _ := r.tokens.Restore(text[:cut], r.allow)
	return out
}

// Flush returns what was held back, restored: the text has ended.
func (r *streamRestorer) Flush() string {
	out, _ := r.tokens.Restore(r.pending, r.allow)
	r.pending = ""
	return out
}

func (r *streamRestorer) reset() { r.pending = "" }

// undecidedTokenStart is where the suffix of text begins that more text
// could still turn into a token: a last '<' followed only by token
// characters, at most maxTokenBody of them. Anything before it is decided,
// since a token holds no '<' and so cannot span it. It is len(text) when
// there is no such suffix.
func undecidedTokenStart(text string) int {
	i := strings.LastIndexByte(text, '<')
	if i < 0 || len(text)-i > maxTokenBody+1 {
		return len(text)
	}
	for j := i + 1; j < len(text); j++ {
		if c := text[j]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return len(text)
		}
	}
	return i
}

// Stream hold-back: an emitted piece must have been checked, and the last
// streamHoldBack bytes of the checked text wait for the next check, so that
// a value split across a check boundary is seen whole before any of it
// leaves. Checks run when the answer has grown by streamCheckEvery bytes
// or by a quarter of its length, whichever is more: every check reads the
// whole answer (a leak can be spread over it), and growing the interval
// with the answer keeps the total work linear in its length.
const (
	streamHoldBack   = 64
	streamCheckEvery = 256
)

// streamGate sits between a streaming upstream and the caller: it gathers
// the answer, checks it as it grows, restores tokens and passes on only
// what has been checked. One gate serves one call; attempts before
// anything was emitted start it afresh.
type streamGate struct {
	each func(string) error
	// buffered: the answer is emitted only once it is whole and checked
	// (a schema or label answer is judged as a whole).
	buffered bool
	checker  *Checker
	maxBytes int
	restorer streamRestorer

	raw     strings.Builder
	checked int // bytes of raw the partial checks have seen
	fed     int // bytes of raw given to the restorer
	emitted bool
	// received is set by the first chunk of an attempt; it is read by the
	// attempt's timeout watcher on another goroutine.
	received atomic.Bool
	// clock is the attempt's: handing text to each is not the gateway's
	// own time. Nil outside an attempt.
	clock *upstreamClock
	// stop is the error that ended the stream for good: an attempt after
	// it returns it again, so no retry restarts a stopped stream.
	stop error
}

// reset starts a new attempt; only valid while nothing has been emitted.
func (g *streamGate) reset() {
	g.raw.Reset()
	g.checked, g.fed = 0, 0
	g.restorer.reset()
	g.received.Store(false)
}

// push takes the next chunk of the answer.
func (g *streamGate) push(piece string) error {
	if g.raw.Len()+len(piece) > g.maxBytes {
		return g.fail(&Error{Stage: "check", Code: CodeCheckFailed,
			Message: fmt.Sprintf("the answer failed its checks: size: answer is over the limit of %d bytes", g.maxBytes)})
	}
	g.raw.WriteString(piece)
	if g.buffered {
		return nil
	}
	text := g.raw.String()
	if grown := len(text) - g.checked; grown >= max(streamCheckEvery, g.checked/4) {
		if probs := streamProblems(g.checker, text); len(probs) > 0 {
			return g.fail(checkFailed(probs))
		}
		g.checked = len(text)
	}
	safe := g.checked - streamHoldBack
	for safe > g.fed && safe < len(text) && !utf8.RuneStart(text[safe]) {
		safe--
	}
	if safe <= g.fed {
		return nil
	}
	out := g.restorer.Write(text[g.fed:safe])
	g.fed = safe
	return g.emit(out)
}

// finish emits the rest of a whole, fully checked answer.
func (g *streamGate) finish() error {
	text := g.raw.String()
	out := g.restorer.Write(text[g.fed:]) + g.restorer.Flush()
	g.fed = len(text)
	return g.emit(out)
}

func (g *streamGate) emit(out string) error {
	if out == "" {
		return nil
	}
	g.emitted = true
	var start time.Time
	if g.clock != nil {
		start = g.clock.now()
	}
	err := g.each(out)
	if g.clock != nil {
		g.clock.addDelivery(start)
	}
	if err != nil {
		return g.fail(&Error{Stage: "stream", Code: CodeUnavailable, Message: "the receiver stopped taking the stream", Err: err})
	}
	return nil
}

func (g *streamGate) fail(err error) error {
	if g.stop == nil {
		g.stop = err
	}
	return g.stop
}

// streamProblems runs the checks that can judge a partial answer: the
// canary, secrets, personal data that was not in the prompt, and unknown
// tokens. Schema, labels and size are judged on the whole answer. A value
// still arriving is not seen yet; the hold-back window keeps it in until
// it is.
func streamProblems(c *Checker, text string) []CheckProblem {
	var probs problemList
	if c.Canary.Leaked(text) {
		probs.add(ProblemCanary, "answer reveals the call's confidential canary marker: the system prompt leaked", nil)
	}
	c.checkFindings(text, &probs)
	c.checkTokens(text, &probs)
	return probs.list()
}

// streamTarget makes a streaming connector look like a plain one to the
// Caller, so streams get the same retries, breaker and fallback, but only
// until the first piece reached the caller: after that an attempt fails for
// good (its error is no connectors sentinel, so the Caller stops).
type streamTarget struct {
	conn   connectors.Connector
	gate   *streamGate
	parent context.Context
}

func (s *streamTarget) Kind() string { return s.conn.Kind() }

func (s *streamTarget) Chat(actx context.Context, req connectors.Request) (connectors.Response, error) {
	if s.gate.stop != nil {
		return connectors.Response{}, s.gate.stop
	}
	if s.gate.emitted {
		return connectors.Response{}, s.gate.fail(errStreamInterrupted())
	}
	s.gate.reset()
	s.gate.clock = callScopeFrom(actx).upstream
	st, ok := s.conn.(connectors.Streamer)
	if !ok {
		// No streaming here: the whole answer comes as one piece.
		resp, err := s.conn.Chat(actx, req)
		if err != nil {
			return resp, err
		}
		if err := s.gate.push(resp.Content); err != nil {
			return connectors.Response{}, err
		}
		return resp, nil
	}
	// The attempt's timeout bounds the wait for the first chunk; after it
	// the connector's own idle timeout bounds each wait, so a long answer
	// that keeps coming is not cut off. The stream's context is not the
	// attempt's, so the attempt's scope goes with it: credential transports
	// read the run, workflow and model from it, and report a refusal to it.
	sctx, cancel := context.WithCancel(withCallScope(s.parent, callScopeFrom(actx)))
	defer cancel()
	stopWatch := context.AfterFunc(actx, func() {
		if !s.gate.received.Load() {
			cancel()
		}
	})
	defer stopWatch()

	resp := connectors.Response{Model: req.Model}
	err := st.ChatStream(sctx, req, func(ch connectors.Chunk) error {
		s.gate.received.Store(true)
		if ch.Content != "" {
			if err := s.gate.push(ch.Content); err != nil {
				return err
			}
		}
		if ch.Done {
			resp.FinishReason, resp.Usage = ch.FinishReason, ch.Usage
		}
		return nil
	})
	resp.Content = s.gate.raw.String()
	if err != nil {
		if s.gate.stop != nil {
			return resp, s.gate.stop
		}
		if s.gate.emitted {
			return resp, s.gate.fail(errStreamInterrupted())
		}
		if !s.gate.received.Load() && actx.Err() != nil && s.parent.Err() == nil {
			return resp, fmt.Errorf("gateway: stream: no first chunk before the attempt's timeout: %w", context.DeadlineExceeded)
		}
		return resp, err
	}
	return resp, nil
}

// errStreamInterrupted is the error of a stream that broke after part of it
// reached the caller. It wraps no connectors sentinel, on purpose: the
// Caller must not retry what the caller has partly received.
func errStreamInterrupted() *Error {
	return &Error{Stage: "call", Code: CodeUnavailable,
		Message: "the upstream's stream broke after part of the answer was sent; the answer is incomplete"}
}
