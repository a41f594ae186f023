package audit

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// TestCanonicalGolden pins the canonical encoding and leaf hash of one
// record (testdata/canonical.golden): changing the format breaks every
// existing log's verification, so it must be deliberate.
func TestCanonicalGolden(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	s, err := prepare(key, Record{
		Time:     time.Date(2026, 11, 25, 13, 50, 4, 123456789, time.FixedZone("CET", 3600)),
		Actor:    "user:ana",
		Action:   "secret.read",
		Resource: "secret/prod/stripe",
		Outcome:  OK,
		Details: map[string]any{
			"zeta": 1, "alpha": map[string]any{"b": []any{1.5, "x<y"}, "a": nil},
			"value": Sensitive("sk_live_canary"), "big": json.Number("12345678901234567890"),
		},
	}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	s.Seq = 42
	leaf, enc := leafHash(nil, &s)
	got := string(enc) + "\n" + leaf.String() + "\n"
	want, err := os.ReadFile("testdata/canonical.golden")
	if err != nil {
		if os.Getenv("MOAT_AUDIT_WRITE_GOLDEN") == "1" {
			os.WriteFile("testdata/canonical.golden", []byte(got), 0o644)
			return
		}
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("canonical encoding changed:\n got %q\nwant %q", got, want)
	}
	if strings.Contains(got, "sk_live_canary") {
		t.Fatal("a sensitive value reached the canonical encoding")
	}
	if leaf != tlog.RecordHash(enc) {
		t.Fatal("leaf hash is not tlog.RecordHash of the encoding")
	}
}

func TestCanonicalDetailsSortsAndHMACs(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	type inner struct {
		Z string `json:"z"`
		A string `json:"a"`
	}
	got, err := canonicalDetails(key, map[string]any{
		"b": inner{Z: "1", A: "2"}, "a": []any{Sensitive("v"), map[string]any{"y": 1, "x": 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":["` + hmacValue(key, "v") + `",{"x":2,"y":1}],"b":{"a":"2","z":"1"}}`
	if string(got) != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	// Equal input, equal bytes, whatever the map's iteration order.
	for range 20 {
		again, _ := canonicalDetails(key, map[string]any{"b": inner{Z: "1", A: "2"}, "a": []any{Sensitive("v"), map[string]any{"x": 2, "y": 1}}})
		if string(again) != want {
			t.Fatal("canonical details are not deterministic")
		}
	}
}

func TestSensitiveNeverMarshals(t *testing.T) {
	t.Parallel()
	v := Sensitive("4111111111111111")
	if _, err := json.Marshal(map[string]any{"card": v}); err == nil {
		t.Fatal("a sensitive value marshalled")
	}
	if s := v.String(); strings.Contains(s, "4111") {
		t.Fatalf("String() = %q", s)
	}
	// Inside a struct the walk cannot see, the record is refused rather
	// than stored in clear.
	type wrapper struct{ Card SensitiveValue }
	_, err := prepare([]byte("0123456789abcdef"), Record{Actor: "a", Action: "x", Outcome: OK, Details: map[string]any{"w": wrapper{v}}}, time.Now())
	if !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "4111") {
		t.Fatalf("prepare: %v", err)
	}
}

func TestPrepareRefuses(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef")
	ok := Record{Actor: "user:ana", Action: "ai.call", Outcome: OK}
	tests := []struct {
		name   string
		change func(*Record)
	}{
		{"no actor", func(r *Record) { r.Actor = "" }},
		{"no action", func(r *Record) { r.Action = "" }},
		{"unknown outcome", func(r *Record) { r.Outcome = "maybe" }},
		{"long resource", func(r *Record) { r.Resource = strings.Repeat("r", maxFieldLen+1) }},
		{"invalid UTF-8", func(r *Record) { r.Actor = "\xff" }},
		{"huge details", func(r *Record) { r.Details = map[string]any{"x": strings.Repeat("d", maxDetailsLen)} }},
		{"unencodable details", func(r *Record) { r.Details = map[string]any{"f": func() {}} }},
		{"deep details", func(r *Record) {
			var d any = "leaf"
			for range maxDetailsDepth + 2 {
				d = map[string]any{"d": d}
			}
			r.Details = d.(map[string]any)
		}},
	}
	if _, err := prepare(key, ok, time.Now()); err != nil {
		t.Fatalf("a valid record: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := ok
			tc.change(&r)
			if _, err := prepare(key, r, time.Now()); !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}
