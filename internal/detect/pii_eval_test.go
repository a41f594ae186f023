package detect

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// presidioSynthPath is the Presidio-research synthetic set, relative to
// this package's directory (the project's ../shared/testdata).
var presidioSynthPath = filepath.Join("..", "..", "..", "shared", "testdata", "pii", "presidio_research_synth_dataset_v2.json")

type presidioRecord struct {
	FullText string `json:"full_text"`
	Spans    []struct {
		EntityType string `json:"entity_type"`
		Value      string `json:"entity_value"`
		Start      int    `json:"start_position"`
		End        int    `json:"end_position"`
	} `json:"spans"`
}

// presidioTypes maps the set's entity types to Moat's classes. DATE_TIME
// is mapped to pii.date_of_birth only where birth words precede it (see
// goldIsBirthDate).
var presidioTypes = map[string]string{
	"EMAIL_ADDRESS":  "pii.email",
	"PHONE_NUMBER":   "pii.phone",
	"CREDIT_CARD":    "pii.card",
	"IBAN_CODE":      "pii.iban",
	"US_SSN":         "pii.us_ssn",
	"IP_ADDRESS":     "pii.ip",
	"PERSON":         "pii.person",
	"STREET_ADDRESS": "pii.address",
}

// goldIsBirthDate: a DATE_TIME span is a date of birth when "born",
// "birth" or "dob" occurs in the 60 code points before it.
func goldIsBirthDate(runes []rune, start int) bool {
	from := max(start-60, 0)
	w := strings.ToLower(string(runes[from:start]))
	return strings.Contains(w, "born") || strings.Contains(w, "birth") || strings.Contains(w, "dob")
}

type evalCount struct{ tp, fp, fn int }

// TestPresidioSynthEvaluation measures per-type precision and recall on
// the Presidio-research synthetic set. Reproduce with:
//
//	go test -run TestPresidioSynthEvaluation -v ./internal/detect/
//
// A prediction matches a gold span when the types agree (after mapping) and
// the overlap covers at least half of the gold span, in code points; each
// gold span matches at most one prediction. Gold cards that fail the Luhn
// check are generator mistakes: they are counted apart and left out of
// pii.card's recall (the validator is not weakened for them).
func TestPresidioSynthEvaluation(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(presidioSynthPath)
	if err != nil {
		t.Skipf("Presidio synthetic set not available at %s (see ../shared/testdata/README.md): %v", presidioSynthPath, err)
	}
	var records []presidioRecord
	if err := json.Unmarshal(data, &records); err != nil {
		t.Fatalf("parse %s: %v", presidioSynthPath, err)
	}
	counts := map[string]*evalCount{}
	get := func(typ string) *evalCount {
		c := counts[typ]
		if c == nil {
			c = &evalCount{}
			counts[typ] = c
		}
		return c
	}
	luhnInvalid, noIssuer, luhnInvalidFound := 0, 0, 0
	type gold struct {
		typ        string
		start, end int
		used       bool
	}
	for _, r := range records {
		runes := []rune(r.FullText)
		var golds []*gold
		var ignored []*gold // gold spans that do not count (Luhn-invalid cards)
		for _, sp := range r.Spans {
			typ, ok := presidioTypes[sp.EntityType]
			if sp.EntityType == "DATE_TIME" && goldIsBirthDate(runes, sp.Start) {
				typ, ok = "pii.date_of_birth", true
			}
			if !ok {
				continue
			}
			g := &gold{typ: typ, start: sp.Start, end: sp.End}
			if typ == "pii.card" {
				var d []byte
				d = digitsOf(d, sp.Value, 0, len(sp.Value))
				if !luhn(d) || cardIssuer(d) == "" {
					if luhn(d) {
						noIssuer++
					} else {
						luhnInvalid++
					}
					ignored = append(ignored, g)
					continue
				}
			}
			golds = append(golds, g)
		}
		matches := func(f Finding, g *gold) bool {
			if g.used || g.typ != f.Type {
				return false
			}
			ov := min(f.End, g.end) - max(f.Start, g.start)
			return ov > 0 && 2*ov >= g.end-g.start
		}
		for _, f := range Scan(r.FullText) {
			if !strings.HasPrefix(f.Type, "pii.") {
				continue
			}
			hit := false
			for _, g := range golds {
				if matches(f, g) {
					g.used, hit = true, true
					break
				}
			}
			if hit {
				get(f.Type).tp++
				continue
			}
			skip := false
			for _, g := range ignored {
				if matches(f, g) {
					g.used, skip = true, true
					luhnInvalidFound++
				}
			}
			if !skip {
				get(f.Type).fp++
			}
		}
		for _, g := range golds {
			if !g.used {
				get(g.typ).fn++
			}
		}
	}
	types := make([]string, 0, len(counts))
	for typ := range counts {
		types = append(types, typ)
	}
	sort.Strings(types)
	var b strings.Builder
	fmt.Fprintf(&b, "Presidio-research synth v2, %d records; match = same type and overlap >= 50%% of the gold span\n", len(records))
	fmt.Fprintf(&b, "%-18s %5s %5s %5s %9s %7s\n", "type", "TP", "FP", "FN", "precision", "recall")
	for _, typ := range types {
		c := counts[typ]
		fmt.Fprintf(&b, "%-18s %5d %5d %5d %9s %7s\n", typ, c.tp, c.fp, c.fn, ratio(c.tp, c.tp+c.fp), ratio(c.tp, c.tp+c.fn))
	}
	fmt.Fprintf(&b, "gold cards not counted: %d failing Luhn, %d Luhn-valid but outside every issuer's prefix range (e.g. JCB below 3528); reported anyway: %d\n", luhnInvalid, noIssuer, luhnInvalidFound)
	fmt.Fprintf(&b, "reproduce: go test -run TestPresidioSynthEvaluation -v ./internal/detect/")
	t.Log("\n" + b.String())

	// Regression guard, set well below the figures measured when this was
	// written (email, card, IBAN, SSN, IP, DOB 1.00/1.00; phone 0.99/0.98;
	// person 0.74/0.45; address 0.38/0.01, not guarded); not a target.
	floors := map[string][2]float64{ // type: {precision, recall}
		"pii.email":         {0.90, 0.90},
		"pii.card":          {0.90, 0.90},
		"pii.iban":          {0.90, 0.90},
		"pii.us_ssn":        {0.80, 0.70},
		"pii.ip":            {0.80, 0.80},
		"pii.phone":         {0.70, 0.40},
		"pii.date_of_birth": {0.70, 0.70},
		"pii.person":        {0.60, 0.35},
	}
	for typ, f := range floors {
		c := counts[typ]
		if c == nil {
			t.Errorf("%s: no findings and no gold spans", typ)
			continue
		}
		p, r := frac(c.tp, c.tp+c.fp), frac(c.tp, c.tp+c.fn)
		if p < f[0] || r < f[1] {
			t.Errorf("%s regressed: precision %.3f (floor %.2f), recall %.3f (floor %.2f)", typ, p, f[0], r, f[1])
		}
	}
}

func frac(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

func ratio(a, b int) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", float64(a)/float64(b))
}
