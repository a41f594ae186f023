package connectors

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFewShotMessages(t *testing.T) {
	base := []Message{{Role: System, Content: "Classify the ticket."}, {Role: User, Content: "my card was charged twice"}}
	examples := []Example{{Text: "refund please", Label: "billing"}, {Text: "app\ncrashes  on start", Label: "bug"}}

	if got := FewShotMessages(Request{Messages: base, Examples: examples}); len(got) != 2 {
		t.Errorf("without labels the examples were shown: %v", got)
	}
	if got := FewShotMessages(Request{Messages: base, Labels: []string{"billing"}}); len(got) != 2 {
		t.Errorf("without examples a message was added: %v", got)
	}

	got := FewShotMessages(Request{Messages: base, Labels: []string{"billing", "bug"}, Examples: examples})
	want := []Message{
		base[0],
		{Role: System, Content: "Examples:\nrefund please => billing\napp crashes on start => bug"},
		base[1],
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if base[1].Role != User || len(base) != 2 {
		t.Error("the request's messages were changed")
	}

	// No leading system message: the examples come first.
	got = FewShotMessages(Request{Messages: base[1:], Labels: []string{"bug"}, Examples: examples[:1]})
	if len(got) != 2 || got[0].Role != System || got[1] != base[1] {
		t.Errorf("got %q", got)
	}
}

func TestFewShotMessagesBounded(t *testing.T) {
	var examples []Example
	for i := range 3 * MaxFewShotExamples {
		examples = append(examples, Example{Text: strings.Repeat("é", MaxFewShotTextBytes) + fmt.Sprint(i), Label: "x"})
	}
	got := FewShotMessages(Request{Messages: []Message{{Role: User, Content: "q"}}, Labels: []string{"x"}, Examples: examples})
	lines := strings.Split(got[0].Content, "\n")
	if len(lines) != MaxFewShotExamples+1 {
		t.Errorf("%d example lines, want %d", len(lines)-1, MaxFewShotExamples)
	}
	for _, l := range lines[1:] {
		text, _, _ := strings.Cut(l, " => ")
		if len(text) > MaxFewShotTextBytes+len("…") || !utf8.ValidString(text) {
			t.Fatalf("example text of %d bytes (valid UTF-8: %v)", len(text), utf8.ValidString(text))
		}
	}
}

func FuzzFewShotMessages(f *testing.F) {
	f.Add("refund please", "billing", "it crashes\n=> bug", "bug", 2)
	f.Add("", "", "\r\n\t", "é", 0)
	f.Fuzz(func(t *testing.T, text1, label1, text2, label2 string, leadingSystem int) {
		leading := (leadingSystem%4 + 4) % 4
		var msgs []Message
		for range leading {
			msgs = append(msgs, Message{Role: System, Content: "s"})
		}
		msgs = append(msgs, Message{Role: User, Content: "q"})
		req := Request{Messages: msgs, Labels: []string{"x"}, Examples: []Example{{Text: text1, Label: label1}, {Text: text2, Label: label2}}}
		got := FewShotMessages(req)
		if len(got) != len(msgs)+1 {
			t.Fatalf("%d messages, want %d", len(got), len(msgs)+1)
		}
		shown := got[leading]
		if shown.Role != System || !strings.HasPrefix(shown.Content, "Examples:\n") {
			t.Fatalf("examples message = %q", shown)
		}
		if n := strings.Count(shown.Content, "\n"); n != 2 {
			t.Fatalf("%d lines for 2 examples: an example broke its line", n)
		}
		if len(shown.Content) > len("Examples:")+2*(2*(MaxFewShotTextBytes+len("…"))+len("\n => ")) {
			t.Fatalf("examples message of %d bytes", len(shown.Content))
		}
		if got[len(got)-1] != msgs[len(msgs)-1] {
			t.Fatal("the user's message moved")
		}
	})
}
