package gateway

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseLimits reads limits written as comma-separated settings, as flags
// take them: "rpm=600,tpm=100000,budget=50/month". rpm and tpm are requests
// and tokens per minute; budget is US dollars per month or per day (month
// when no period is given). An empty string is no limits.
func ParseLimits(s string) (Limits, error) {
	var l Limits
	if strings.TrimSpace(s) == "" {
		return l, nil
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || value == "" {
			return Limits{}, fmt.Errorf("gateway: limits: %q is not name=value (want rpm=, tpm= or budget=)", truncateForError(part))
		}
		if seen[key] {
			return Limits{}, fmt.Errorf("gateway: limits: %s is given twice", key)
		}
		seen[key] = true
		switch key {
		case "rpm", "tpm":
			n, err := strconv.Atoi(value)
			if err != nil || n <= 0 || n > 100_000_000 {
				return Limits{}, fmt.Errorf("gateway: limits: %s must be a whole number between 1 and 100000000", key)
			}
			if key == "rpm" {
				l.RequestsPerMinute = n
			} else {
				l.TokensPerMinute = n
			}
		case "budget":
			amount, period, _ := strings.Cut(value, "/")
			usd, err := strconv.ParseFloat(amount, 64)
			if err != nil || !(usd > 0 && usd <= 1e9) { // also refuses NaN and infinities
				return Limits{}, fmt.Errorf("gateway: limits: budget must be a positive number of US dollars, such as budget=50/month")
			}
			switch Period(period) {
			case "", Month:
				l.BudgetPeriod = Month
			case Day:
				l.BudgetPeriod = Day
			default:
				return Limits{}, fmt.Errorf("gateway: limits: budget period must be month or day")
			}
			l.Budget = int64(math.Round(usd * 1e6))
		default:
			return Limits{}, fmt.Errorf("gateway: limits: unknown setting %q (want rpm, tpm or budget)", truncateForError(key))
		}
	}
	return l, nil
}

func truncateForError(s string) string {
	if len(s) > 40 {
		return strings.ToValidUTF8(s[:40], "") + "…"
	}
	return s
}
