package connectors

import (
	"strings"
	"unicode/utf8"
)

// Bounds on the few-shot examples shown to a remote model, so that a step
// with thousands of examples (fine for the local classifier) does not turn
// into an unbounded prompt.
const (
	MaxFewShotExamples  = 50
	MaxFewShotTextBytes = 500
)

// FewShotMessages are req's messages with, when it is a classification
// with examples, one more system message showing them ("Examples:" then
// one "<text> => <label>" line each), placed after the leading system
// messages. Only the first MaxFewShotExamples are shown, each text on one
// line and cut to MaxFewShotTextBytes. Without labels or examples it is
// req.Messages itself.
func FewShotMessages(req Request) []Message {
	if len(req.Labels) == 0 || len(req.Examples) == 0 {
		return req.Messages
	}
	var b strings.Builder
	b.WriteString("Examples:")
	for _, ex := range req.Examples[:min(len(req.Examples), MaxFewShotExamples)] {
		b.WriteString("\n")
		b.WriteString(oneLine(ex.Text, MaxFewShotTextBytes))
		b.WriteString(" => ")
		b.WriteString(oneLine(ex.Label, MaxFewShotTextBytes))
	}
	at := 0
	for at < len(req.Messages) && req.Messages[at].Role == System {
		at++
	}
	out := make([]Message, 0, len(req.Messages)+1)
	out = append(out, req.Messages[:at]...)
	out = append(out, Message{Role: System, Content: b.String()})
	return append(out, req.Messages[at:]...)
}

// oneLine folds s's line breaks into spaces, so that an example cannot
// pose as another example's line, and cuts it to at most n bytes on a
// rune boundary.
func oneLine(s string, n int) string {
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strings.Join(strings.Fields(s), " ")
}
