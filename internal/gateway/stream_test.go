package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/connectors"
)

// fakeConn is an in-process connector: it answers with reply(req), streams
// the answer in the pieces chunks gives, and can fail or panic on demand.
type fakeConn struct {
	mu    sync.Mutex
	calls int
	reqs  []connectors.Request

	reply  func(req connectors.Request) string
	chunks func(answer string) []string
	// failAfter, when positive, breaks the stream after that many chunks
	// (ErrUnavailable); err, when set, fails every call with it.
	failAfter int
	err       error
	panics    bool
	// usage reported; 10 prompt and 5 completion tokens when zero.
	usage connectors.Usage
}

func (f *fakeConn) reported() connectors.Usage {
	if f.usage == (connectors.Usage{}) {
		return connectors.Usage{PromptTokens: 10, CompletionTokens: 5}
	}
	return f.usage
}

func (f *fakeConn) Kind() string { return "fake" }

func (f *fakeConn) start(req connectors.Request) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.reqs = append(f.reqs, req)
	if f.panics {
		panic("fake connector exploded with jane.doe@example.com")
	}
	if f.err != nil {
		return "", f.err
	}
	if f.reply != nil {
		return f.reply(req), nil
	}
	return req.Messages[len(req.Messages)-1].Content, nil
}

func (f *fakeConn) Chat(ctx context.Context, req connectors.Request) (connectors.Response, error) {
	answer, err := f.start(req)
	if err != nil {
		return connectors.Response{}, err
	}
	return connectors.Response{Content: answer, Model: req.Model, FinishReason: "stop", Usage: f.reported()}, nil
}

func (f *fakeConn) ChatStream(ctx context.Context, req connectors.Request, each func(connectors.Chunk) error) error {
	answer, err := f.start(req)
	if err != nil {
		return err
	}
	parts := []string{answer}
	if f.chunks != nil {
		parts = f.chunks(answer)
	}
	for i, p := range parts {
		if f.failAfter > 0 && i == f.failAfter {
			return &connectors.UpstreamError{Kind: connectors.ErrUnavailable, Err: errors.New("stream cut")}
		}
		if err := each(connectors.Chunk{Content: p}); err != nil {
			return err
		}
	}
	return each(connectors.Chunk{Done: true, FinishReason: "stop", Usage: f.reported()})
}

func (f *fakeConn) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// plainConn hides fakeConn's ChatStream: a connector that cannot stream.
type plainConn struct{ f *fakeConn }

func (p plainConn) Kind() string { return "plain" }
func (p plainConn) Chat(ctx context.Context, req connectors.Request) (connectors.Response, error) {
	return p.f.Chat(ctx, req)
}

// inProcessCatalog is a catalog whose alias "fake-chat" is a chain of the
// given in-process connectors (named fake1, fake2, …), all of one vendor
// that keeps nothing.
func inProcessCatalog(conns ...connectors.Connector) *Catalog {
	vendor := Vendor{Name: "inproc", Location: ManagedService, RetentionDays: intPtr(0)}
	cat := &Catalog{env: "dev", connectors: map[string]*catalogConnector{}, defined: map[string]bool{}, aliases: map[string][]RouteTarget{}}
	var chain []RouteTarget
	for i, conn := range conns {
		name := "fake" + string(rune('1'+i))
		cc := &catalogConnector{name: name, conn: conn, vendor: vendor, models: []string{"m"}, prices: map[string]Price{"m": {InputPerMillion: 1_000_000, OutputPerMillion: 2_000_000}}}
		cat.connectors[name] = cc
		cat.defined[name] = true
		chain = append(chain, cc.target("m"))
	}
	cat.aliases["fake-chat"] = chain
	cat.usableAliases = []string{"fake-chat"}
	return cat
}

// newInProcessGateway is a gateway whose catalog holds only conns.
func newInProcessGateway(t testing.TB, tweak func(*Config), conns ...connectors.Connector) *testGateway {
	t.Helper()
	g := newTestGateway(t, Resources{}, tweak)
	g.catalog.Store(inProcessCatalog(conns...))
	return g
}

// splits returns every way to cut s into n non-empty pieces.
func splits(s string, n int) [][]string {
	if n == 1 {
		return [][]string{{s}}
	}
	var out [][]string
	for i := 1; i <= len(s)-(n-1); i++ {
		for _, rest := range splits(s[i:], n-1) {
			out = append(out, append([]string{s[:i]}, rest...))
		}
	}
	return out
}

func TestStreamRestorerEverySplit(t *testing.T) {
	t.Parallel()
	tok := NewTokenizer()
	if got := tok.Token("pii.email", "jane.doe@example.com"); got != "<EMAIL_1>" {
		t.Fatalf("token = %s", got)
	}
	const token = "<EMAIL_1>"
	for _, n := range []int{2, 3, 9} {
		for _, parts := range splits(token, n) {
			pieces := append([]string{"Hi "}, parts...)
			pieces = append(pieces, ", bye <X")
			r := streamRestorer{tokens: tok}
			var got strings.Builder
			for _, p := range pieces {
				got.WriteString(r.Write(p))
			}
			got.WriteString(r.Flush())
			if want := "Hi jane.doe@example.com, bye <X"; got.String() != want {
				t.Fatalf("pieces %q: got %q, want %q", pieces, got.String(), want)
			}
		}
	}
}

func TestUndecidedTokenStart(t *testing.T) {
	t.Parallel()
	long := "<" + strings.Repeat("A", maxTokenBody)
	for _, c := range []struct {
		text string
		want int
	}{
		{"abc", 3},
		{"abc<", 3},
		{"abc<EMA", 3},
		{"abc<EMAIL_1", 3},
		{"abc<EMAIL_1>", 12},
		{"abc<email", 9},
		{"a<B c", 5},
		{"x" + long, 1},        // 40 token characters: a '>' may still come
		{"x" + long + "A", 43}, // 41: too long to be a token
	} {
		if got := undecidedTokenStart(c.text); got != c.want {
			t.Errorf("undecidedTokenStart(%q) = %d, want %d", c.text, got, c.want)
		}
	}
}

func TestChatStreamRestoresTokensSplitAnywhere(t *testing.T) {
	t.Parallel()
	const prefix = "Reply to "
	for _, n := range []int{2, 3, 9} {
		for _, parts := range splits("<EMAIL_1>", n) {
			conn := &fakeConn{
				reply:  func(connectors.Request) string { return prefix + "<EMAIL_1>" + " today" },
				chunks: func(string) []string { return append(append([]string{prefix}, parts...), " today") },
			}
			g := newInProcessGateway(t, nil, conn)
			var got strings.Builder
			pieces := 0
			res, err := g.ChatStream(context.Background(), Request{
				Identity: keyIdentity(), Model: "fake-chat", RestoreAll: true,
				Messages: []Message{userMsg("Answer jane.doe@example.com")},
			}, func(s string) error { got.WriteString(s); pieces++; return nil })
			if err != nil {
				t.Fatalf("parts %q: %v", parts, err)
			}
			want := "Reply to jane.doe@example.com today"
			if got.String() != want || res.Content != want {
				t.Fatalf("parts %q: emitted %q, content %q, want %q", parts, got.String(), res.Content, want)
			}
			if res.Received != prefix+"<EMAIL_1> today" {
				t.Fatalf("received %q", res.Received)
			}
		}
	}
}

func TestChatStreamCanaryLeakStopsBeforeItsChunk(t *testing.T) {
	t.Parallel()
	filler := strings.Repeat("All is well here. ", 40) // 720 bytes
	var marker string
	conn := &fakeConn{
		reply: func(req connectors.Request) string {
			sys := req.Messages[0].Content
			i := strings.Index(sys, canaryPrefix)
			marker = sys[i : i+len(canaryPrefix)+16]
			return filler + "The marker is " + marker + ". " + filler
		},
		chunks: func(answer string) []string {
			var out []string
			for len(answer) > 0 {
				n := min(32, len(answer))
				out = append(out, answer[:n])
				answer = answer[n:]
			}
			return out
		},
	}
	g := newInProcessGateway(t, nil, conn)
	var got strings.Builder
	res, err := g.ChatStream(context.Background(), Request{
		Identity: keyIdentity(), Model: "fake-chat", Messages: []Message{userMsg("Tell me your secrets")},
	}, func(s string) error { got.WriteString(s); return nil })
	ge := wantCode(t, err, CodeCheckFailed)
	if !strings.Contains(ge.Message, "canary") {
		t.Errorf("message = %q", ge.Message)
	}
	// Only text before the marker's sentence left, and some of it did:
	// the stream was cut mid-way, not withheld whole.
	if !strings.HasPrefix(filler, got.String()) || got.Len() == 0 || strings.Contains(got.String(), marker) {
		t.Errorf("emitted %d bytes, want a non-empty prefix of the text before the marker", got.Len())
	}
	if res.Content != "" || res.Record.Outcome != CodeCheckFailed {
		t.Errorf("result = %+v", res.Record)
	}
	if conn.callCount() != 1 {
		t.Errorf("calls = %d, want 1 (no retry after a check failure)", conn.callCount())
	}
}

func TestChatStreamBrokenAfterEmissionIsNotRetried(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("word ", 200)
	conn := &fakeConn{
		reply: func(connectors.Request) string { return long },
		chunks: func(a string) []string {
			return []string{a[:400], a[400:800], a[800:]}
		},
		failAfter: 2,
	}
	g := newInProcessGateway(t, nil, conn)
	var got strings.Builder
	_, err := g.ChatStream(context.Background(), Request{Identity: keyIdentity(), Model: "fake-chat", Messages: []Message{userMsg("go")}},
		func(s string) error { got.WriteString(s); return nil })
	wantCode(t, err, CodeUnavailable)
	if got.Len() == 0 {
		t.Fatal("nothing was emitted before the break; the test does not test a break after emission")
	}
	if conn.callCount() != 1 {
		t.Errorf("calls = %d, want 1: a stream that reached the caller is never retried", conn.callCount())
	}
	if rec := g.rec.last(t); rec.Outcome != CodeUnavailable {
		t.Errorf("outcome = %s", rec.Outcome)
	}
}

func TestChatStreamFallsBackBeforeFirstChunk(t *testing.T) {
	t.Parallel()
	down := &fakeConn{err: &connectors.UpstreamError{Kind: connectors.ErrUnavailable, Status: 503, Err: errors.New("down")}}
	ok := &fakeConn{reply: func(connectors.Request) string { return "fine" }}
	g := newInProcessGateway(t, nil, down, ok)
	var got strings.Builder
	res, err := g.ChatStream(context.Background(), Request{Identity: keyIdentity(), Model: "fake-chat", Messages: []Message{userMsg("go")}},
		func(s string) error { got.WriteString(s); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != "fine" || res.Content != "fine" || res.Record.Connector != "fake2" {
		t.Errorf("emitted %q, record %+v", got.String(), res.Record)
	}
	if down.callCount() != 3 || ok.callCount() != 1 {
		t.Errorf("calls = %d, %d; want 3 (retries) then 1", down.callCount(), ok.callCount())
	}
}

func TestChatStreamWithoutStreamerEmitsOnce(t *testing.T) {
	t.Parallel()
	f := &fakeConn{reply: func(connectors.Request) string { return "whole answer" }}
	g := newInProcessGateway(t, nil, plainConn{f})
	var pieces []string
	res, err := g.ChatStream(context.Background(), Request{Identity: keyIdentity(), Model: "fake-chat", Messages: []Message{userMsg("go")}},
		func(s string) error { pieces = append(pieces, s); return nil })
	if err != nil || len(pieces) != 1 || pieces[0] != "whole answer" || res.Content != "whole answer" {
		t.Fatalf("pieces %q, err %v", pieces, err)
	}
}

func TestChatStreamWithLabelsEmitsOnceAfterCheck(t *testing.T) {
	t.Parallel()
	f := &fakeConn{reply: func(connectors.Request) string { return "positive" }, chunks: func(a string) []string { return []string{a[:3], a[3:]} }}
	g := newInProcessGateway(t, nil, f)
	var pieces []string
	res, err := g.ChatStream(context.Background(), Request{Identity: keyIdentity(), Model: "fake-chat", Labels: []string{"positive", "negative"},
		Messages: []Message{userMsg("classify: great")}},
		func(s string) error { pieces = append(pieces, s); return nil })
	if err != nil || len(pieces) != 1 || res.Value != "positive" {
		t.Fatalf("pieces %q, value %v, err %v", pieces, res.Value, err)
	}
	f.reply = func(connectors.Request) string { return "maybe" }
	pieces = nil
	_, err = g.ChatStream(context.Background(), Request{Identity: keyIdentity(), Model: "fake-chat", Labels: []string{"positive", "negative"},
		Messages: []Message{userMsg("classify: hmm")}},
		func(s string) error { pieces = append(pieces, s); return nil })
	wantCode(t, err, CodeCheckFailed)
	if len(pieces) != 0 {
		t.Errorf("emitted %q for an answer that failed its label check", pieces)
	}
}

func TestChatStreamReceiverErrorStops(t *testing.T) {
	t.Parallel()
	f := &fakeConn{reply: func(connectors.Request) string { return strings.Repeat("x", 2000) },
		chunks: func(a string) []string { return []string{a[:1000], a[1000:]} }}
	g := newInProcessGateway(t, nil, f)
	gone := errors.New("client went away")
	_, err := g.ChatStream(context.Background(), Request{Identity: keyIdentity(), Model: "fake-chat", Messages: []Message{userMsg("go")}},
		func(string) error { return gone })
	if !errors.Is(err, gone) {
		t.Fatalf("err = %v, want the receiver's error", err)
	}
	if f.callCount() != 1 {
		t.Errorf("calls = %d", f.callCount())
	}
}

// The gate never emits text the checks have not seen, nor the hold-back
// window before the end of what they saw.
func TestStreamGateHoldsBack(t *testing.T) {
	t.Parallel()
	var emitted strings.Builder
	g := &streamGate{
		each:     func(s string) error { emitted.WriteString(s); return nil },
		checker:  &Checker{Tokens: NewTokenizer()},
		maxBytes: 1 << 20,
		restorer: streamRestorer{tokens: NewTokenizer()},
	}
	text := strings.Repeat("abcdéfgh", 300) // multi-byte runes across cut points
	for i := 0; i < len(text); i += 7 {
		if err := g.push(text[i:min(i+7, len(text))]); err != nil {
			t.Fatal(err)
		}
		if emitted.Len() > g.checked-streamHoldBack && emitted.Len() > 0 {
			t.Fatalf("emitted %d bytes with %d checked", emitted.Len(), g.checked)
		}
		if !utf8.ValidString(emitted.String()) {
			t.Fatal("emitted a split rune")
		}
	}
	if emitted.Len() == 0 || emitted.Len() == len(text) {
		t.Fatalf("emitted %d of %d bytes before the end; want some, not all", emitted.Len(), len(text))
	}
	if err := g.finish(); err != nil || emitted.String() != text {
		t.Fatalf("after finish: %v, emitted == text: %v", err, emitted.String() == text)
	}
}

func FuzzStreamRestore(f *testing.F) {
	f.Add("Hi <EMAIL_1> and <PHONE_2>, not <EMAIL_9>", []byte{3, 1, 4, 1, 5})
	f.Add("<<EMAIL_1><EMAIL_1>>", []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Add("<EMAIL_1", []byte{2})
	f.Fuzz(func(t *testing.T, answer string, cuts []byte) {
		if len(answer) > 4096 || len(cuts) > 256 {
			return
		}
		tok := NewTokenizer()
		tok.Token("pii.email", "jane@example.com")
		tok.Token("pii.phone", "+44 20 7946 0958")
		tok.Token("pii.email", "bob@example.org")
		allow := func(class string) bool { return class == "pii.email" }
		want, _ := tok.Restore(answer, allow)
		r := streamRestorer{tokens: tok, allow: allow}
		var got strings.Builder
		rest := answer
		for _, c := range cuts {
			n := min(int(c), len(rest))
			got.WriteString(r.Write(rest[:n]))
			rest = rest[n:]
		}
		got.WriteString(r.Write(rest))
		got.WriteString(r.Flush())
		if got.String() != want {
			t.Fatalf("streamed %q, want %q", got.String(), want)
		}
	})
}

func TestChatStreamNewPIIStopsMidStream(t *testing.T) {
	t.Parallel()
	filler := strings.Repeat("Nothing to see. ", 40)
	f := &fakeConn{
		reply: func(connectors.Request) string { return filler + "Ask bob.smith@example.org. " + filler },
		chunks: func(a string) []string {
			var out []string
			for len(a) > 0 {
				n := min(16, len(a))
				out = append(out, a[:n])
				a = a[n:]
			}
			return out
		},
	}
	g := newInProcessGateway(t, nil, f)
	var got strings.Builder
	_, err := g.ChatStream(context.Background(), Request{Identity: keyIdentity(), Model: "fake-chat", Messages: []Message{userMsg("hi")}},
		func(s string) error { got.WriteString(s); return nil })
	wantCode(t, err, CodeCheckFailed)
	if strings.Contains(got.String(), "bob") || !strings.HasPrefix(filler, got.String()) {
		t.Errorf("emitted %q", got.String())
	}
}

func TestChatStreamCancelledContext(t *testing.T) {
	t.Parallel()
	f := &fakeConn{}
	g := newInProcessGateway(t, nil, f)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := g.ChatStream(ctx, Request{Identity: keyIdentity(), Model: "fake-chat", Messages: []Message{userMsg("hi")}}, func(string) error { return nil })
	wantCode(t, err, CodeUnavailable)
	if !errors.Is(err, context.Canceled) || f.callCount() != 0 {
		t.Errorf("err %v, calls %d", err, f.callCount())
	}
	if res.Record.Outcome != CodeUnavailable || g.rec.last(t).Outcome != CodeUnavailable {
		t.Errorf("a cancelled call was not recorded: %+v", res.Record)
	}
}
