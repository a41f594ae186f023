package openai

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDecodeCompletion(t *testing.T) {
	t.Parallel()
	full := chatCompletion{Model: "m", Choices: []choice{{FinishReason: "stop"}}, Usage: wireUsage{PromptTokens: 3, CompletionTokens: 4}}
	full.Choices[0].Message.Content = "hi <EMAIL_1>"
	for _, tt := range []struct {
		text string
		want *chatCompletion // nil: refused
	}{
		{`{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi \u003cEMAIL_1\u003e","tool_calls":[{"x":[1,{"y":null}]}]},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"details":{"a":1}}}`, &full},
		{` { "model" : "m" , "choices" : [ { "message" : { "content" : "hi <EMAIL_1>" } , "finish_reason" : "stop" } ] , "usage" : { "prompt_tokens" : 3 , "completion_tokens" : 4 } } `, &full},
		{`{"model":null,"choices":null,"usage":null}`, &chatCompletion{}},
		{`{"choices":[null,{"message":null,"finish_reason":null}]}`, &chatCompletion{Choices: []choice{{}, {}}}},
		{`{"usage":{"prompt_tokens":-0,"completion_tokens":null}}`, &chatCompletion{}},
		{`{}`, &chatCompletion{}},
		{`{"choices":[{"message":{"content":"a","content":"b"}}]}`, nil},
		{`{"model":"a","Model":"b"}`, nil},
		{`{"model":"a","MODEL":"b"}`, nil},
		{`{"choices":[],"choices":[]}`, nil},
		{`{"usage":{"prompt_tokens":1.0}}`, nil},
		{`{"usage":{"prompt_tokens":1e3}}`, nil},
		{`{"usage":{"prompt_tokens":"3"}}`, nil},
		{`{"usage":{"prompt_tokens":99999999999999999999}}`, nil},
		{`{"model":3}`, nil},
		{`{"choices":{}}`, nil},
		{`{"choices":[1]}`, nil},
		{`{"choices":[{"message":"hi"}]}`, nil},
		{`[]`, nil},
		{`"x"`, nil},
		{`{} {}`, nil},
		{`{"model":"m"`, nil},
		{`{"x":[}`, nil},
		{``, nil},
	} {
		got, err := decodeCompletion([]byte(tt.text))
		switch {
		case tt.want == nil && err == nil:
			t.Errorf("%s: accepted as %+v", tt.text, got)
		case tt.want != nil && err != nil:
			t.Errorf("%s: %v", tt.text, err)
		case tt.want != nil && !reflect.DeepEqual(got, *tt.want):
			t.Errorf("%s:\n got  %+v\n want %+v", tt.text, got, *tt.want)
		}
	}
}

// FuzzDecodeCompletion checks decodeCompletion against encoding/json: what
// encoding/json refuses it refuses, and what it accepts encoding/json
// decodes to the same value. It may refuse more (repeated fields).
func FuzzDecodeCompletion(f *testing.F) {
	for _, seed := range []string{
		`{"model":"m","choices":[{"message":{"content":"hi","refusal":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}`,
		`{"choices":[null,{"message":null}],"x":[1,"a",{"b":true}]}`,
		`{"usage":{"prompt_tokens":1.5}}`, `{"Model":"a"}`, `{"choices":[{}],"choices":[]}`, "{\"model\":\"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		got, err := decodeCompletion(text)
		var want chatCompletion
		stdErr := json.Unmarshal(text, &want)
		if stdErr != nil && err == nil {
			t.Fatalf("%q: accepted as %+v; encoding/json: %v", text, got, stdErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got  %+v\n want %+v", text, got, want)
		}
	})
}

// BenchmarkDecodeCompletion reads a 2 KB answer as Chat does, beside
// encoding/json reading it into the same struct, as the SDK did.
func BenchmarkDecodeCompletion(b *testing.B) {
	b.Run("tokens", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeCompletion(benchAnswer); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var out chatCompletion
			if err := json.Unmarshal(benchAnswer, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkBody(b *testing.B) {
	c, err := New(Config{APIKey: "sk-bench"})
	if err != nil {
		b.Fatal(err)
	}
	req := benchRequest()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.body(req, false); err != nil {
			b.Fatal(err)
		}
	}
}
