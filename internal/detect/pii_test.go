package detect

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// piiFindings returns the pii.* findings of Scan as "type:text" strings.
func piiFindings(text string) []string {
	runes := []rune(text)
	var out []string
	for _, f := range Scan(text) {
		if strings.HasPrefix(f.Type, "pii.") {
			out = append(out, f.Type+":"+string(runes[f.Start:f.End]))
		}
	}
	return out
}

func TestPIIDetectors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
		want []string // exactly these pii findings, in order
	}{
		// e-mail
		{"email", "write to jane.doe+tag@mail.example.co.uk today", []string{"pii.email:jane.doe+tag@mail.example.co.uk"}},
		{"email no tld", "user@localhost is not an address", nil},
		{"email numeric tld", "x@1.2.3.4 and a@b.c1", []string{"pii.ip:1.2.3.4"}},
		{"email trailing dot", "mail bob@example.com.", []string{"pii.email:bob@example.com"}},
		{"at handle", "ping @alice on chat", nil},

		// cards
		{"visa spaced", "card 4111 1111 1111 1111 exp 12/27", []string{"pii.card:4111 1111 1111 1111"}},
		{"mastercard 2-series", "pay with 2223000048400011 now", []string{"pii.card:2223000048400011"}},
		{"amex dashed", "amex 3782-822463-10005", []string{"pii.card:3782-822463-10005"}},
		{"luhn invalid", "card 4111 1111 1111 1112", nil},
		{"amex wrong length", "card 3782822463100051", nil},
		{"mixed separators", "card 4111-1111 1111-1111", nil},
		{"unknown issuer", "card 9111111111111111", nil},

		// IBAN
		{"iban spaced", "IBAN: GB82 WEST 1234 5698 7654 32.", []string{"pii.iban:GB82 WEST 1234 5698 7654 32"}},
		{"iban compact DE", "to DE89370400440532013000 please", []string{"pii.iban:DE89370400440532013000"}},
		{"iban bad check", "IBAN GB83 WEST 1234 5698 7654 32", nil},
		{"iban bad length", "IBAN GB82WEST123456987654321", nil},
		{"iban unknown country", "QQ82WEST12345698765432", nil},

		// SSN
		{"ssn dashed", "SSN 536-22-1234 on file", []string{"pii.us_ssn:536-22-1234"}},
		{"ssn bare with context", "social security number 536221234", []string{"pii.us_ssn:536221234"}},
		{"ssn bare without context", "reference 536221234 attached", nil},
		{"ssn area 000", "SSN 000-12-3456", nil},
		{"ssn area 666", "SSN 666-12-3456", nil},
		{"ssn area 9xx", "SSN 912-12-3456", nil},
		{"ssn group 00", "SSN 536-00-3456", nil},
		{"ssn serial 0000", "SSN 536-12-0000", nil},
		{"ssn woolworth", "SSN 078-05-1120", nil},
		{"ssn advert", "SSN 219-09-9999", nil},

		// phone
		{"phone us", "call me at (415) 692-3012 tonight", []string{"pii.phone:(415) 692-3012"}},
		{"phone e164", "mobile: +44 20 7946 0958", []string{"pii.phone:+44 20 7946 0958"}},
		{"phone dotted", "tel 212.555.0147", []string{"pii.phone:212.555.0147"}},
		{"phone ext", "phone 415-692-3012x123", []string{"pii.phone:415-692-3012x123"}},
		{"phone date", "on 2023-04-05 we met", nil},
		{"phone time", "at 12:30:45 sharp", nil},
		{"phone order", "order 415-692-3012 shipped", nil},
		{"phone long id", "id 4156923012456789", nil},
		{"phone bare no context", "value 4156923012 in column", nil},
		{"phone isbn", "ISBN 978-0-306-40615-7", nil},
		{"phone version", "version 4.15.692.3012", nil},

		// IP
		{"ipv4", "server 192.168.10.20 is down", []string{"pii.ip:192.168.10.20"}},
		{"ipv4 port", "connect to 10.0.0.1:8080", []string{"pii.ip:10.0.0.1"}},
		{"ipv4 version prefix", "release v1.2.3.4 is out", nil},
		{"ipv4 version word", "version 1.2.3.4 is out", nil},
		{"ipv4 five parts", "oid 1.2.3.4.5", nil},
		{"ipv4 octet range", "addr 256.1.1.1", nil},
		{"ipv4 leading zero", "addr 01.1.1.1", nil},
		{"ipv6", "host 2001:db8::8a2e:370:7334 replied", []string{"pii.ip:2001:db8::8a2e:370:7334"}},
		{"ipv6 full", "fe80:0:0:0:202:b3ff:fe1e:8329", []string{"pii.ip:fe80:0:0:0:202:b3ff:fe1e:8329"}},
		{"ipv6 bare colons", "C++ std::vector and a::b", nil},
		{"time not ipv6", "at 12:30:45", nil},

		// MAC
		{"mac colon", "mac 00:1A:2B:3C:4D:5E up", []string{"pii.mac:00:1A:2B:3C:4D:5E"}},
		{"mac dash", "mac 00-1a-2b-3c-4d-5e up", []string{"pii.mac:00-1a-2b-3c-4d-5e"}},
		{"mac cisco", "mac 001a.2b3c.4d5e up", []string{"pii.mac:001a.2b3c.4d5e"}},
		{"mac seven pairs", "00:1A:2B:3C:4D:5E:6F", nil},

		// dates of birth
		{"dob numeric", "She was born on 2/8/1935.", []string{"pii.date_of_birth:2/8/1935"}},
		{"dob iso", "DOB: 1985-07-21", []string{"pii.date_of_birth:1985-07-21"}},
		{"dob written", "date of birth: March 12, 1990", []string{"pii.date_of_birth:March 12, 1990"}},
		{"dob day month", "born 12th March 1980 in York", []string{"pii.date_of_birth:12th March 1980"}},
		{"date without birth", "the invoice of 2/8/1935 and March 12, 1990", nil},

		// NINO
		{"nino", "NI number AB 12 34 56 C", []string{"pii.uk_nino:AB 12 34 56 C"}},
		{"nino compact", "nino AB123456C", []string{"pii.uk_nino:AB123456C"}},
		{"nino bad prefix", "GB123456C and QQ123456C and DA123456A", nil},
		{"nino bad suffix", "AB123456E", nil},

		// NHS
		{"nhs context", "NHS number 943 476 5919", []string{"pii.uk_nhs:943 476 5919"}},
		{"nhs bare context", "NHS no: 9434765919", []string{"pii.uk_nhs:9434765919"}},
		{"nhs bad check", "NHS number 943 476 5918", nil},
		{"nhs bare no context", "row 9434765919", nil},

		// person and address
		{"person honorific", "Please ask Dr. Cettina Fanucci to call", []string{"pii.person:Cettina Fanucci"}},
		{"person context", "My name is Toshimi Arata.", []string{"pii.person:Toshimi Arata"}},
		{"person list", "I met Maria Gonzalez yesterday", []string{"pii.person:Maria Gonzalez"}},
		{"no person", "The Quick Brown Fox jumps", nil},
		{"address", "He lives at 221 Baker Street, Springfield, IL 62704.", []string{"pii.address:221 Baker Street, Springfield, IL 62704"}},
		{"address apt", "ship to 12 Elm Ave Apt 4 today", []string{"pii.address:12 Elm Ave Apt 4"}},

		// other near misses
		{"uuid", "request 123e4567-e89b-12d3-a456-426614174000 failed", nil},
		{"timestamp", "at 2024-05-12T10:20:30Z and 1715510400", nil},
		{"tracking", "tracking 1Z999AA10123456784 and 9400100000000000000000", nil},
		{"price", "costs $1,234,567.89 or 12.99", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := piiFindings(tc.text)
			if !slices.Equal(got, tc.want) {
				t.Errorf("Scan(%q)\n got  %q\n want %q", tc.text, got, tc.want)
			}
		})
	}
}

// TestPIICodePointOffsets checks offsets around multi-byte text.
func TestPIICodePointOffsets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text       string
		typ        string
		start, end int
	}{
		{"é€😀 mail: jöhn@x.io → see", "pii.email", 10, 19},
		{"日本語テキスト card 4111 1111 1111 1111 終わり", "pii.card", 13, 32},
		{"Ünïcödé IBAN DE89370400440532013000 ✓", "pii.iban", 13, 35},
		{"电话 phone: +86 138 1234 5678", "pii.phone", 10, 27},
		{"Ça va? Name: Kamila Červinková, ok", "pii.person", 13, 30},
	}
	for _, tc := range tests {
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel()
			var found bool
			for _, f := range Scan(tc.text) {
				if f.Type == tc.typ {
					found = true
					if f.Start != tc.start || f.End != tc.end {
						r := []rune(tc.text)
						t.Errorf("%s: got [%d,%d) %q, want [%d,%d) %q", tc.typ, f.Start, f.End,
							string(r[f.Start:f.End]), tc.start, tc.end, string(r[tc.start:tc.end]))
					}
				}
			}
			if !found {
				t.Errorf("%s not found in %q: %+v", tc.typ, tc.text, Scan(tc.text))
			}
		})
	}
}

// TestNANPTableAgrees checks the area-code table against
// phonenumbers.IsValidNumber on random North American numbers.
func TestNANPTableAgrees(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 8))
	cc := int32(1)
	diff := 0
	const n = 20000
	for range n {
		nn := uint64(2000000000 + r.IntN(8000000000))
		if (nn/1000000)%10 < 2 {
			continue
		}
		num := &phonenumbers.PhoneNumber{CountryCode: &cc, NationalNumber: &nn}
		if validPhone(num) != phonenumbers.IsValidNumber(num) {
			diff++
		}
	}
	// A handful of per-exchange exceptions exist in the metadata.
	if diff > n/200 {
		t.Fatalf("table disagrees with IsValidNumber on %d of %d numbers", diff, n)
	}
	t.Logf("table disagrees with IsValidNumber on %d of %d random numbers", diff, n)
}

// checkPIIFindings asserts the invariants of Scan's output.
func checkPIIFindings(t *testing.T, text string, fs []Finding) {
	t.Helper()
	n := utf8.RuneCountInString(text)
	prevEnd := 0
	for k, f := range fs {
		if f.Start < 0 || f.End > n || f.Start >= f.End {
			t.Fatalf("finding %d out of bounds: %+v (runes %d)", k, f, n)
		}
		if f.Start < prevEnd {
			t.Fatalf("finding %d overlaps or is unsorted: %+v after end %d", k, f, prevEnd)
		}
		if f.Score < MinScore || f.Score > 1 {
			t.Fatalf("finding %d has score %v", k, f.Score)
		}
		prevEnd = f.End
	}
}

// TestPIISpansOnRuneBoundaries runs the PII scanner alone and checks its
// byte offsets directly.
func TestPIISpansOnRuneBoundaries(t *testing.T) {
	t.Parallel()
	text := mixedProse(1<<16) + " é日😀 Name: Émile Zoë Ångström, tel +33 1 23 45 67 89 ü"
	scanPII(text, func(s span) {
		if s.Start < 0 || s.End > len(text) || s.Start >= s.End {
			t.Fatalf("bad span %+v", s)
		}
		if !utf8.RuneStart(text[s.Start]) || (s.End < len(text) && !utf8.RuneStart(text[s.End])) {
			t.Fatalf("span %+v not on rune boundaries", s)
		}
	})
}

func FuzzScan(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		fs := Scan(text)
		checkPIIFindings(t, text, fs)
		again := Scan(text)
		if !slices.EqualFunc(fs, again, func(a, b Finding) bool {
			return a.Type == b.Type && a.Start == b.Start && a.End == b.End && a.Score == b.Score
		}) {
			t.Fatalf("Scan is not deterministic: %+v vs %+v", fs, again)
		}
		// Code-point boundaries as Scan counts them (an invalid byte is
		// one code point of its own).
		boundary := make([]bool, len(text)+1)
		for i := range text {
			boundary[i] = true
		}
		boundary[len(text)] = true
		scanPII(text, func(s span) {
			if s.Start < 0 || s.End > len(text) || s.Start >= s.End || !boundary[s.Start] || !boundary[s.End] {
				t.Fatalf("bad span %+v in %q", s, text)
			}
		})
	})
}

// TestResolveOverlapsMatchesGreedy checks the per-cluster resolveOverlaps
// against the plain quadratic greedy it replaced, on random spans.
func TestResolveOverlapsMatchesGreedy(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	greedy := func(spans []span) []span {
		s := slices.Clone(spans)
		slices.SortStableFunc(s, func(a, b span) int {
			if a.Score != b.Score {
				if a.Score > b.Score {
					return -1
				}
				return 1
			}
			if la, lb := a.End-a.Start, b.End-b.Start; la != lb {
				return lb - la
			}
			return a.Start - b.Start
		})
		var kept []span
		for _, x := range s {
			ok := true
			for _, k := range kept {
				if x.Start < k.End && k.Start < x.End {
					ok = false
					break
				}
			}
			if ok {
				kept = append(kept, x)
			}
		}
		slices.SortFunc(kept, func(a, b span) int { return a.Start - b.Start })
		return kept
	}
	for range 2000 {
		n := r.IntN(12)
		spans := make([]span, n)
		for k := range spans {
			a := r.IntN(60)
			spans[k] = span{Type: "t", Start: a, End: a + 1 + r.IntN(10), Score: float64(r.IntN(4)) / 4}
		}
		want := greedy(spans)
		got := resolveOverlaps(nil, slices.Clone(spans))
		if !slices.EqualFunc(got, want, func(a, b span) bool { return a.Start == b.Start && a.End == b.End && a.Score == b.Score }) {
			t.Fatalf("spans %+v\n got  %+v\n want %+v", spans, got, want)
		}
	}
}

// TestParsePhoneFastPathAgrees checks that the numbers parsePhone builds
// without phonenumbers.Parse are the ones Parse builds.
func TestParsePhoneFastPathAgrees(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(9, 10))
	formats := []string{"+1 %s %s %s", "+1 (%s) %s-%s", "+1-%s-%s-%s", "+1.%s.%s.%s", "%s-%s-%s", "(%s) %s-%s", "1 %s %s %s"}
	for range 5000 {
		npa := fmt.Sprintf("%03d", 200+r.IntN(800))
		nxx := fmt.Sprintf("%03d", 200+r.IntN(800))
		line := fmt.Sprintf("%04d", r.IntN(10000))
		f := formats[r.IntN(len(formats))]
		raw := fmt.Sprintf(f, npa, nxx, line)
		plus := raw[0] == '+'
		i := 0
		for !isDigit(raw[i]) {
			i++
		}
		var tok numToken
		parseNumToken(raw, i, &tok)
		got, err := parsePhone(raw, plus, raw, &tok)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		want, err := phonenumbers.Parse(raw, "US")
		if err != nil {
			t.Fatalf("%q: Parse: %v", raw, err)
		}
		if got.GetCountryCode() != want.GetCountryCode() || got.GetNationalNumber() != want.GetNationalNumber() ||
			got.GetItalianLeadingZero() != want.GetItalianLeadingZero() || got.GetExtension() != want.GetExtension() {
			t.Fatalf("%q: built %v, Parse gives %v", raw, got, want)
		}
	}
}

// TestPhoneMemoAgrees checks that remembered verdicts are libphonenumber's,
// on the first call and on the remembered one, and that the memo stays
// bounded.
func TestPhoneMemoAgrees(t *testing.T) {
	t.Parallel()
	raws := []string{"+44 20 7946 0958", "+33 1 42 68 53 00", "+49 30 901820", "+44 1234", "+999 123 4567",
		"020 7946 0958", "030 901820", "0612345678", "12 34 56 78", "+91 98765 43210", "+1 415 555 0132"}
	for range 2 {
		for _, raw := range raws {
			plus := raw[0] == '+'
			i := 0
			for !isDigit(raw[i]) {
				i++
			}
			var tok numToken
			parseNumToken(raw, i, &tok)
			num, err := parsePhone(raw, plus, raw, &tok)
			if got, want := usVerdict(raw, plus, raw, &tok), verdictOf(num, err); got != want {
				t.Fatalf("%q: usVerdict %d, phonenumbers says %d", raw, got, want)
			}
			want := ""
			for _, r := range phoneRegions {
				if n, err := phonenumbers.Parse(raw, r); err == nil && phonenumbers.IsValidNumber(n) {
					want = r
					break
				}
			}
			if got := validRegion(raw); got != want {
				t.Fatalf("%q: validRegion %q, phonenumbers says %q", raw, got, want)
			}
		}
	}
	m := newVerdictMemo(8)
	for i := range 100 {
		m.put(fmt.Sprint(i), 1)
		if len(m.m) > 8 {
			t.Fatalf("memo holds %d entries, bound is 8", len(m.m))
		}
	}
}
