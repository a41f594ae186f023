package gateway

import (
	"errors"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/detect"
)

const sample = "Hi, I’m Ana — ana@example.com, card 4111 1111 1111 1111. Reach ana@example.com."

func all(a Action) func(detect.Finding) Action { return func(detect.Finding) Action { return a } }

func TestApplyActions(t *testing.T) {
	t.Parallel()
	findings := detect.Scan(sample)
	types := map[string]int{}
	for _, f := range findings {
		types[f.Type]++
	}
	if types["pii.email"] != 2 || types["pii.card"] != 1 || types["pii.person"] != 1 {
		t.Fatalf("findings %+v", findings)
	}
	for _, tc := range []struct {
		action Action
		want   string
	}{
		{Redact, "Hi, I’m [PERSON] — [EMAIL], card [CARD]. Reach [EMAIL]."},
		{Mask, "Hi, I’m *** — ***@******e.com, card **** **** **** 1111. Reach ***@******e.com."},
		{Tokenize, "Hi, I’m <PERSON_1> — <EMAIL_1>, card <CARD_1>. Reach <EMAIL_1>."},
		{Allow, sample},
	} {
		tr := &Transformer{Tokens: NewTokenizer()}
		got, applied, err := tr.Apply(sample, findings, all(tc.action))
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.action, got, tc.want)
		}
		if len(applied) != 4 || applied[0].Action != tc.action {
			t.Errorf("%s: applied %+v", tc.action, applied)
		}
	}
}

func TestHashIsKeyedAndStable(t *testing.T) {
	t.Parallel()
	findings := detect.Scan(sample)
	a, _, err := (&Transformer{HashKey: []byte("run-1")}).Apply(sample, findings, all(Hash))
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := (&Transformer{HashKey: []byte("run-2")}).Apply(sample, findings, all(Hash))
	if a == b || strings.Contains(a, "ana@") {
		t.Fatalf("hashes: %s / %s", a, b)
	}
	first := a[strings.Index(a, "[EMAIL:"):][:20]
	if strings.Count(a, first) != 2 {
		t.Fatalf("equal values should hash alike: %s", a)
	}
	if _, _, err := (&Transformer{}).Apply(sample, findings, all(Hash)); err == nil {
		t.Fatal("hash without a key must fail")
	}
}

func TestBlockFailsClosed(t *testing.T) {
	t.Parallel()
	findings := detect.Scan(sample)
	out, _, err := (&Transformer{Tokens: NewTokenizer()}).Apply(sample, findings, func(f detect.Finding) Action {
		if f.Type == "pii.card" {
			return Block
		}
		return Tokenize
	})
	var blocked *BlockedError
	if !errors.As(err, &blocked) || !errors.Is(err, ErrBlocked) || out != "" || blocked.Type != "pii.card" {
		t.Fatalf("out %q err %v", out, err)
	}
	if strings.Contains(err.Error(), "4111") {
		t.Fatal("the error carries the value")
	}
}

func TestApplyRefusesFindingsThatDoNotFit(t *testing.T) {
	t.Parallel()
	for _, fs := range [][]detect.Finding{
		{{Type: "x", Start: 5, End: 500}},
		{{Type: "x", Start: 5, End: 8}, {Type: "x", Start: 6, End: 9}},
		{{Type: "x", Start: 5, End: 5}},
	} {
		if _, _, err := (&Transformer{}).Apply("short text", fs, all(Redact)); err == nil {
			t.Errorf("%+v: want an error", fs)
		}
	}
}

func TestRestoreOnlyIssuedTokensAndAllowedClasses(t *testing.T) {
	t.Parallel()
	// The input already holds a forged token: it is reserved, so the real
	// address gets the next number and the forgery is never restored.
	text := "Forged <EMAIL_1> and real bob@example.org, card 5555 5555 5555 4444."
	tok := NewTokenizer()
	out, _, err := (&Transformer{Tokens: tok}).Apply(text, detect.Scan(text), all(Tokenize))
	if err != nil {
		t.Fatal(err)
	}
	if out != "Forged <EMAIL_1> and real <EMAIL_2>, card <CARD_1>." {
		t.Fatalf("tokenised: %s", out)
	}
	answer := "Dear <EMAIL_2>, we charged <CARD_1>; also <EMAIL_1> and <SSN_9>."
	restored, unknown := tok.Restore(answer, func(class string) bool { return class == "pii.email" })
	if restored != "Dear bob@example.org, we charged <CARD_1>; also <EMAIL_1> and <SSN_9>." {
		t.Fatalf("restored: %s", restored)
	}
	if strings.Join(unknown, ",") != "<EMAIL_1>,<SSN_9>" {
		t.Fatalf("unknown %v", unknown)
	}
}

func FuzzTokenizeRoundTrip(f *testing.F) {
	f.Add(sample)
	f.Add("<EMAIL_1> x@y.io <EMAIL_2> <CARD_0> <_1> <A_>")
	f.Add("ünïcödé z@z.de 4111-1111-1111-1111 ☃")
	f.Fuzz(func(t *testing.T, text string) {
		findings := detect.Scan(text)
		tok := NewTokenizer()
		out, applied, err := (&Transformer{Tokens: tok}).Apply(text, findings, all(Tokenize))
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		if len(applied) != len(findings) {
			t.Fatalf("applied %d of %d", len(applied), len(findings))
		}
		// Every issued token comes back as its value; with no forged tokens
		// in the input the round trip is exact.
		back, _ := tok.Restore(out, nil)
		if len(tokenShapes(text)) == 0 && back != text {
			t.Fatalf("round trip changed the text:\n in %q\nout %q\nback %q", text, out, back)
		}
	})
}
