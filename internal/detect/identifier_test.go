package detect

import (
	"slices"
	"testing"
)

func TestNormalizeIdentifier(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ class, value, want string }{
		{"pii.email", "  Jane.Doe@Example.COM ", "jane.doe@example.com"},
		{"pii.card", "4111-1111 1111 1111", "4111111111111111"},
		{"pii.phone", "+44 (20) 7946-0958", "442079460958"},
		{"pii.iban", "gb82 west 1234 5698 7654 32", "GB82WEST12345698765432"},
		{"pii.us_ssn", "536-22-8190", "536228190"},
		{"pii.uk_nino", "qq 12 34 56 c", "QQ123456C"},
		{"pii.uk_nhs", "943 476 5919", "9434765919"},
		{"pii.person", "Jane \t  DOE\n", "jane doe"},
		{"pii.address", "10 Downing St,\nLondon", "10 downing st, london"},
		{"", "Émile  Zola", "émile zola"},
		{"pii.card", " - ", ""},
		{"pii.email", " \t\n", ""},
	} {
		if got := Normalize(tc.class, tc.value); got != tc.want {
			t.Errorf("Normalize(%s, %q) = %q, want %q", tc.class, tc.value, got, tc.want)
		}
	}
}

// A value typed by a person is searched for under each of its forms: one of
// them is the form it was indexed under, whatever its class.
func TestNormalizedForms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		value string
		want  []string
	}{
		{"Jane.Doe@Example.com", []string{"jane.doe@example.com", "JANEDOEEXAMPLECOM"}},
		{"4111 1111 1111 1111", []string{"4111 1111 1111 1111", "4111111111111111"}},
		{"4111111111111111", []string{"4111111111111111"}},
		{"GB82WEST12345698765432", []string{"gb82west12345698765432", "GB82WEST12345698765432"}},
		{"jane", []string{"jane", "JANE"}},
		{"  ", nil},
		{"--", []string{"--"}},
		{"", nil},
	} {
		if got := NormalizedForms(tc.value); !slices.Equal(got, tc.want) {
			t.Errorf("NormalizedForms(%q) = %q, want %q", tc.value, got, tc.want)
		}
	}
}

var identifierClasses = []string{"pii.email", "pii.phone", "pii.card", "pii.iban", "pii.us_ssn", "pii.uk_nino", "pii.uk_nhs", "pii.person", "pii.address", "customer.content"}

// FuzzNormalize checks that a normal form is its own normal form (an index
// built from normalised values and a search that normalises again agree),
// and that the form a value was indexed under is among the forms a search
// for that value tries.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"Jane.Doe@Example.COM", "4111 1111 1111 1111", "+44 20 7946 0958", "İstanbul ǅ ß ﬀ", "\xff\xfe a", "\u00a0\u2028x\u3000", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		forms := NormalizedForms(value)
		if slices.Contains(forms, "") || len(slices.Compact(slices.Clone(forms))) != len(forms) || len(forms) > 2 {
			t.Fatalf("NormalizedForms(%q) = %q", value, forms)
		}
		for _, class := range identifierClasses {
			n := Normalize(class, value)
			if again := Normalize(class, n); again != n {
				t.Fatalf("Normalize(%s) is not idempotent on %q: %q, then %q", class, value, n, again)
			}
			if n != "" && !slices.Contains(forms, n) {
				t.Fatalf("NormalizedForms(%q) = %q miss Normalize(%s) = %q", value, forms, class, n)
			}
			if n != "" && !slices.Contains(NormalizedForms(n), n) {
				t.Fatalf("NormalizedForms(%q) miss the value itself, a normal form of %s", n, class)
			}
		}
	})
}
