package gateway

import (
	"strings"
	"testing"
)

func TestParseLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Limits
		err  string
	}{
		{in: "", want: Limits{}},
		{in: "rpm=600", want: Limits{RequestsPerMinute: 600}},
		{in: " rpm=600, tpm=100000 ,budget=50", want: Limits{RequestsPerMinute: 600, TokensPerMinute: 100000, Budget: 50_000_000, BudgetPeriod: Month}},
		{in: "budget=0.25/day", want: Limits{Budget: 250_000, BudgetPeriod: Day}},
		{in: "rpm", err: "not name=value"},
		{in: "rpm=0", err: "between 1 and"},
		{in: "rpm=1,rpm=2", err: "given twice"},
		{in: "budget=-1", err: "positive number"},
		{in: "budget=NaN", err: "positive number"},
		{in: "budget=5/week", err: "month or day"},
		{in: "burst=5", err: "unknown setting"},
	} {
		got, err := ParseLimits(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseLimits(f *testing.F) {
	for _, s := range []string{"rpm=600,tpm=100000,budget=50/month", "budget=1e308", "rpm=,", "=,="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLimits(s)
		if err != nil {
			return
		}
		if l.RequestsPerMinute < 0 || l.TokensPerMinute < 0 || l.Budget < 0 {
			t.Errorf("%q gave negative limits %+v", s, l)
		}
	})
}
