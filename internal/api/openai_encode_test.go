package api

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"testing"
)

// encodedByJSON is what writeJSON writes for v: the straightforward
// encoding writeCompletion must reproduce.
func encodedByJSON(t testing.TB, v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// randomCompletion makes a completion of random text, with and without
// the optional parts.
func randomCompletion(r *rand.Rand, text func() string) chatCompletion {
	c := chatCompletion{ID: text(), Object: text(), Created: r.Int64N(1<<40) - 1<<20, Model: text()}
	if r.IntN(4) > 0 {
		c.Usage = &chatUsage{PromptTokens: r.IntN(1000) - 10, CompletionTokens: r.IntN(1000), TotalTokens: r.IntN(2000)}
	}
	switch r.IntN(4) {
	case 0:
	case 1:
		c.Choices = []chatChoice{}
	default:
		for i := range r.IntN(3) + 1 {
			ch := chatChoice{Index: i, Message: chatAnswer{Role: text(), Content: text()}, FinishReason: text()}
			if r.IntN(2) == 0 {
				ch.Logprobs = jsonNull
			}
			if r.IntN(3) == 0 {
				refusal := text()
				ch.Message.Refusal = &refusal
			}
			c.Choices = append(c.Choices, ch)
		}
	}
	return c
}

func TestAppendCompletionJSONAgreesWithEncoder(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(9, 10))
	pieces := []string{"a", "<", ">", "&", `"`, `\`, "\n", "\t", "\b", "\f", "\r", "\x00", "\x1f", "\x7f", "é", "😀",
		"\xff", "\xe2\x80", "\u2028", "\u2029", " ", "<EMAIL_1>", strings.Repeat("y", 300)}
	text := func() string {
		var b strings.Builder
		for range r.IntN(20) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		return b.String()
	}
	for range 3000 {
		c := randomCompletion(r, text)
		got, ok := c.appendJSON(nil)
		if !ok {
			t.Fatalf("appendJSON refused %+v", c)
		}
		if want := encodedByJSON(t, c); !bytes.Equal(got, want) {
			t.Fatalf("appendJSON:\n%s\nwant\n%s", got, want)
		}
	}
}

// A completion with logprobs is written by encoding/json, and the same
// way either way.
func TestWriteCompletionFallsBackForLogprobs(t *testing.T) {
	t.Parallel()
	c := chatCompletion{ID: "x", Choices: []chatChoice{{Logprobs: json.RawMessage(`{"content": [] }`)}}}
	if _, ok := c.appendJSON(nil); ok {
		t.Fatal("appendJSON wrote logprobs it does not know")
	}
	for _, c := range []chatCompletion{c, {ID: "y", Choices: []chatChoice{{Logprobs: jsonNull}}, Usage: &chatUsage{}}} {
		direct, viaJSON := httptest.NewRecorder(), httptest.NewRecorder()
		writeCompletion(direct, c)
		writeJSON(viaJSON, 200, c)
		if direct.Code != viaJSON.Code || direct.Header().Get("Content-Type") != viaJSON.Header().Get("Content-Type") || !bytes.Equal(direct.Body.Bytes(), viaJSON.Body.Bytes()) {
			t.Errorf("writeCompletion: %d %q %s, writeJSON: %d %q %s", direct.Code, direct.Header(), direct.Body, viaJSON.Code, viaJSON.Header(), viaJSON.Body)
		}
	}
}

func FuzzAppendCompletionJSON(f *testing.F) {
	f.Add("chatcmpl-req_1", "assistant", "Noted for <EMAIL_1> & \"you\"\n\u2028\xff", int64(1))
	f.Fuzz(func(t *testing.T, id, role, content string, created int64) {
		refusal := content + id
		c := chatCompletion{ID: id, Object: "chat.completion", Created: created, Model: role + id,
			Choices: []chatChoice{{Message: chatAnswer{Role: role, Content: content, Refusal: &refusal}, FinishReason: "stop", Logprobs: jsonNull}},
			Usage:   &chatUsage{PromptTokens: len(id), CompletionTokens: len(content), TotalTokens: int(created % 1000)}}
		got, ok := c.appendJSON(nil)
		if want := encodedByJSON(t, c); !ok || !bytes.Equal(got, want) {
			t.Fatalf("appendJSON:\n%s\nwant\n%s", got, want)
		}
	})
}
