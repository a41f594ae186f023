package retention

import (
	"strings"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/workflow"
)

func TestRulesFor(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	rules := Rules{Default: 30 * day, Classes: map[string]time.Duration{"pii.card": 7 * day, "pii.email": 14 * day}}
	schema := func(classes ...string) *workflow.Input {
		props := map[string]any{}
		for _, c := range classes {
			props[c] = map[string]any{"type": "string", "x-data-class": c}
		}
		return &workflow.Input{Schema: map[string]any{"type": "object", "properties": props}}
	}
	for _, tc := range []struct {
		name string
		def  *workflow.Definition
		want store.Retention
	}{
		{"no definition", nil, store.Retention{Input: 30 * day, Steps: 30 * day, Output: 30 * day}},
		{"the workflow's own", &workflow.Definition{Retention: &workflow.Retention{Input: workflow.Duration(day), Output: workflow.Duration(90 * day)}},
			store.Retention{Input: day, Steps: 30 * day, Output: 90 * day}},
		{"capped by a declared class", &workflow.Definition{Input: schema("pii.email"), Retention: &workflow.Retention{Input: workflow.Duration(day), Output: workflow.Duration(90 * day)}},
			store.Retention{Input: day, Steps: 14 * day, Output: 14 * day}},
		{"the shortest class wins", &workflow.Definition{Input: schema("pii.email", "pii.card", "customer.content")},
			store.Retention{Input: 7 * day, Steps: 7 * day, Output: 7 * day}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rules.For(tc.def); got != tc.want {
				t.Fatalf("For = %+v, want %+v", got, tc.want)
			}
		})
	}
	// Kept until erased by default: a class rule still caps it.
	forever := Rules{Classes: map[string]time.Duration{"pii.card": day}}
	if got := forever.For(&workflow.Definition{Input: schema("pii.card")}); got.Input != day || got.Output != day {
		t.Fatalf("a class rule on a keep-forever server: %+v", got)
	}
}

func TestParseClassRule(t *testing.T) {
	t.Parallel()
	class, keep, err := ParseClassRule(" pii.card = 7d ")
	if err != nil || class != "pii.card" || keep != 7*24*time.Hour {
		t.Fatalf("ParseClassRule = %q, %v, %v", class, keep, err)
	}
	for _, bad := range []string{"", "pii.card", "=7d", "pii.card=", "pii.card=0s", "pii.card=-1h", "pii.card=soon", strings.Repeat("x", 200) + "=1d"} {
		if _, _, err := ParseClassRule(bad); err == nil {
			t.Errorf("ParseClassRule(%q) accepted it", bad)
		}
	}
}

func FuzzParseClassRule(f *testing.F) {
	for _, s := range []string{"pii.card=7d", "a=1h", "=", "x=0", "pii.email=720h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		class, keep, err := ParseClassRule(s)
		if err != nil {
			if strings.Contains(err.Error(), s) && len(s) > 64 {
				t.Fatalf("the error echoes a long input whole: %v", err)
			}
			return
		}
		if class == "" || keep <= 0 || strings.Contains(class, "=") || class != strings.TrimSpace(class) {
			t.Fatalf("ParseClassRule(%q) = %q, %v", s, class, keep)
		}
	})
}

func TestSubjectForms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ class, value, want string }{
		{"pii.email", "  Jane.Doe@Example.COM ", "jane.doe@example.com"},
		{"pii.card", "4111-1111 1111 1111", "4111111111111111"},
		{"pii.iban", "gb82 west 1234 5698 7654 32", "GB82WEST12345698765432"},
		{"pii.person", "Jane   DOE", "jane doe"},
	} {
		if got := normalise(tc.class, tc.value); got != tc.want {
			t.Errorf("normalise(%s, %q) = %q, want %q", tc.class, tc.value, got, tc.want)
		}
		found := false
		for _, c := range candidates(tc.value) {
			found = found || c == tc.want
		}
		if !found {
			t.Errorf("candidates(%q) = %q miss %q", tc.value, candidates(tc.value), tc.want)
		}
	}
}

func FuzzFindSubjects(f *testing.F) {
	for _, s := range []string{`{"email":"jane@example.com"}`, "card 4111 1111 1111 1111", "é@é.é", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, sub := range findSubjects(s) {
			if sub.value == "" || !isSubjectClass(sub.class) {
				t.Fatalf("findSubjects(%q) gave %+v", s, sub)
			}
		}
	})
}
