package workflow

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// ParseDuration parses a Go duration ("90s", "1h30m") and also accepts days
// ("2d", "1d12h", "1.5d"); a day is 24 hours.
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	bad := func() (time.Duration, error) {
		return 0, fmt.Errorf("invalid duration %q: write a number and a unit (ns, us, ms, s, m, h, d), such as 30s, 5m, 24h or 2d", truncate(orig, 40))
	}
	if s == "" {
		return bad()
	}
	if !strings.Contains(s, "d") {
		d, err := time.ParseDuration(s)
		if err != nil {
			return bad()
		}
		return d, nil
	}
	neg := false
	if s[0] == '-' || s[0] == '+' {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return bad()
	}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && (s[i] == '.' || s[i] >= '0' && s[i] <= '9') {
			i++
		}
		j := i
		for j < len(s) && !(s[j] == '.' || s[j] >= '0' && s[j] <= '9') {
			j++
		}
		if i == 0 || j == i {
			return bad()
		}
		num, unit := s[:i], s[i:j]
		s = s[j:]
		var d time.Duration
		var err error
		if unit == "d" {
			d, err = time.ParseDuration(num + "h")
			if err == nil {
				if d > math.MaxInt64/24 {
					return 0, fmt.Errorf("invalid duration %q: too long", truncate(orig, 40))
				}
				d *= 24
			}
		} else {
			d, err = time.ParseDuration(num + unit)
		}
		if err != nil {
			return bad()
		}
		if total > math.MaxInt64-d {
			return 0, fmt.Errorf("invalid duration %q: too long", truncate(orig, 40))
		}
		total += d
	}
	if neg {
		total = -total
	}
	return total, nil
}

// formatDuration writes a duration without zero minutes and seconds ("72h",
// "1h30m"), as people write them.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
