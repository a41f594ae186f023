package replay

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/moatproject/moat/internal/connectors"
)

// echo is a connector that answers with the last message, counting calls.
type echo struct {
	calls atomic.Int32
}

func (e *echo) Kind() string { return "echo" }

func (e *echo) Chat(_ context.Context, req connectors.Request) (connectors.Response, error) {
	e.calls.Add(1)
	if req.Model == "fail" {
		return connectors.Response{}, &connectors.UpstreamError{Kind: connectors.ErrUnavailable, Status: 503}
	}
	return connectors.Response{
		Content: "echo: " + req.Messages[len(req.Messages)-1].Content, Model: req.Model + "-1",
		FinishReason: "stop", Usage: connectors.Usage{PromptTokens: 3, CompletionTokens: 2},
	}, nil
}

type streamingEcho struct{ echo }

func (e *streamingEcho) ChatStream(ctx context.Context, req connectors.Request, each func(connectors.Chunk) error) error {
	res, err := e.Chat(ctx, req)
	if err != nil {
		return err
	}
	for _, w := range strings.SplitAfter(res.Content, " ") {
		if err := each(connectors.Chunk{Content: w}); err != nil {
			return err
		}
	}
	return each(connectors.Chunk{Done: true, FinishReason: "stop", Usage: res.Usage})
}

func req(text string) connectors.Request {
	t := 0.0
	return connectors.Request{
		Model:       "m",
		Messages:    []connectors.Message{{Role: connectors.User, Content: text}},
		Labels:      []string{"a", "b"},
		Schema:      map[string]any{"type": "object", "properties": map[string]any{"x": map[string]any{"type": "string"}}},
		MaxTokens:   10,
		Temperature: &t,
	}
}

func TestRecordThenPlay(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "c.json")
	inner := &echo{}
	rec, err := NewRecorder(inner, path)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Kind() != "echo" {
		t.Errorf("Kind = %q", rec.Kind())
	}
	ctx := context.Background()
	want, err := rec.Chat(ctx, req("hello there"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Chat(ctx, req("second")); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Chat(ctx, connectors.Request{Model: "fail", Messages: []connectors.Message{{Role: connectors.User, Content: "x"}}}); !errors.Is(err, connectors.ErrUnavailable) {
		t.Fatalf("inner error not passed through: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("cassette mode = %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	p, err := NewPlayer(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Chat(ctx, req("hello there"))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("played %+v, recorded %+v", got, want)
	}
	if p.Kind() != "replay" {
		t.Errorf("Kind = %q", p.Kind())
	}

	// A recorder opened again keeps what was there.
	rec2, err := NewRecorder(inner, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec2.Chat(ctx, req("third")); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Exchanges) != 3 {
		t.Errorf("%d exchanges, want 3", len(c.Exchanges))
	}
}

func TestPlayerMisses(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "c.json")
	rec, err := NewRecorder(&echo{}, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Chat(context.Background(), req("hello")); err != nil {
		t.Fatal(err)
	}
	p, err := NewPlayer(path)
	if err != nil {
		t.Fatal(err)
	}
	other := func(mut func(*connectors.Request)) connectors.Request { r := req("hello"); mut(&r); return r }
	tests := []struct {
		name string
		req  connectors.Request
	}{
		{"other text", req("hello!")},
		{"other model", other(func(r *connectors.Request) { r.Model = "n" })},
		{"other temperature", other(func(r *connectors.Request) { x := 0.1; r.Temperature = &x })},
		{"no temperature", other(func(r *connectors.Request) { r.Temperature = nil })},
		{"other labels", other(func(r *connectors.Request) { r.Labels = []string{"b", "a"} })},
		{"other max tokens", other(func(r *connectors.Request) { r.MaxTokens = 11 })},
		{"other schema", other(func(r *connectors.Request) { r.Schema = map[string]any{"type": "string"} })},
		{"other role", other(func(r *connectors.Request) { r.Messages[0].Role = connectors.System })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := p.Chat(context.Background(), tt.req)
			var ue *connectors.UpstreamError
			if !errors.Is(err, connectors.ErrNoRecording) || !errors.As(err, &ue) || ue.Kind != connectors.ErrNoRecording {
				t.Fatalf("err = %v, want an UpstreamError of kind ErrNoRecording", err)
			}
			if strings.Contains(err.Error(), "hello") {
				t.Errorf("error %q repeats the prompt", err)
			}
			if err := p.ChatStream(context.Background(), tt.req, func(connectors.Chunk) error { return nil }); !errors.Is(err, connectors.ErrNoRecording) {
				t.Errorf("stream err = %v", err)
			}
		})
	}
}

func TestKey(t *testing.T) {
	t.Parallel()
	a, err := Key(req("x"))
	if err != nil {
		t.Fatal(err)
	}
	// Same content built differently: map order and SchemaName do not matter.
	r := req("x")
	r.Schema = map[string]any{"properties": map[string]any{"x": map[string]any{"type": "string"}}, "type": "object"}
	r.SchemaName = "other"
	b, _ := Key(r)
	if a != b || len(a) != 64 {
		t.Errorf("keys %s and %s differ", a, b)
	}
	if c, _ := Key(req("y")); c == a {
		t.Error("different requests share a key")
	}
	if _, err := Key(connectors.Request{Schema: map[string]any{"f": func() {}}}); err == nil {
		t.Error("unencodable schema gave a key")
	}
}

func TestStreamRecordThenPlay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		inner connectors.Connector
	}{
		{"streaming inner", &streamingEcho{}},
		{"inner without streaming", &echo{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "c.json")
			rec, err := NewRecorder(tt.inner, path)
			if err != nil {
				t.Fatal(err)
			}
			var live []connectors.Chunk
			if err := rec.ChatStream(context.Background(), req("one two three four five six"), func(c connectors.Chunk) error {
				live = append(live, c)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			p, err := NewPlayer(path)
			if err != nil {
				t.Fatal(err)
			}
			var played []connectors.Chunk
			if err := p.ChatStream(context.Background(), req("one two three four five six"), func(c connectors.Chunk) error {
				played = append(played, c)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			join := func(cs []connectors.Chunk) string {
				var b strings.Builder
				for _, c := range cs {
					b.WriteString(c.Content)
				}
				return b.String()
			}
			if join(live) != "echo: one two three four five six" || join(played) != join(live) {
				t.Errorf("live %q, played %q", join(live), join(played))
			}
			lastLive, lastPlayed := live[len(live)-1], played[len(played)-1]
			if !lastLive.Done || !lastPlayed.Done || lastLive.Usage != lastPlayed.Usage || lastPlayed.FinishReason != "stop" {
				t.Errorf("final chunks %+v and %+v", lastLive, lastPlayed)
			}
			if len(played) < 3 || len(played) > 5 {
				t.Errorf("played %d chunks, want a few", len(played))
			}
		})
	}
}

func TestCorruptCassette(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, content string
	}{
		{"not JSON", "{not json"},
		{"trailing data", `{"version":1,"exchanges":[]} {}`},
		{"wrong version", `{"version":2,"exchanges":[]}`},
		{"unknown field", `{"version":1,"exchanges":[],"extra":1}`},
		{"bad key", `{"version":1,"exchanges":[{"key":"abc","response":{"content":"x"}}]}`},
		{"empty", ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "broken-cassette.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := NewPlayer(path); err == nil || !strings.Contains(err.Error(), path) {
				t.Errorf("NewPlayer err = %v, want one naming %s", err, path)
			}
			if _, err := NewRecorder(&echo{}, path); err == nil || !strings.Contains(err.Error(), path) {
				t.Errorf("NewRecorder err = %v, want one naming %s", err, path)
			}
		})
	}
	missing := filepath.Join(t.TempDir(), "missing.json")
	if _, err := NewPlayer(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing cassette: err = %v", err)
	}
}

func TestCassetteFull(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "c.json")
	rec, err := NewRecorder(&echo{}, path)
	if err != nil {
		t.Fatal(err)
	}
	// Fill the cassette in memory to its limit, as if recorded earlier.
	for i := range MaxExchanges {
		k := strings.Repeat("0", 56) + strings.Repeat("f", 8)
		k = k[:56] + string(rune('a'+i%6)) + k[57:]
		rec.cassette.Exchanges = append(rec.cassette.Exchanges, Exchange{Key: k})
	}
	if _, err := rec.Chat(context.Background(), req("one too many")); err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("err = %v, want cassette full", err)
	}
}

func TestSplit(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "one", "a b", "a b c d e f g h i j", "  spaced  out  "} {
		parts := split(s, 4)
		if len(parts) > 4 || strings.Join(parts, "") != s {
			t.Errorf("split(%q) = %q", s, parts)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"version":1,"exchanges":[]}`))
	f.Add([]byte(`{"version":1,"exchanges":[{"key":"` + strings.Repeat("ab", 32) + `","response":{"content":"hi","model":"m","usage":{"promptTokens":1,"completionTokens":2}}}]}`))
	f.Add([]byte(`{"version":1,"exchanges":[{"key":"zz"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		out, err := c.encode()
		if err != nil {
			t.Fatalf("a parsed cassette does not encode: %v", err)
		}
		c2, err := Parse(out)
		if err != nil {
			t.Fatalf("an encoded cassette does not parse: %v", err)
		}
		if len(c2.Exchanges) != len(c.Exchanges) {
			t.Fatalf("round trip changed the exchanges")
		}
	})
}
