// Package retention keeps run payloads only as long as policy says: it
// seals them under per-run keys (through the vault), indexes the personal
// identifiers in them by HMAC, purges what has expired by destroying its
// key first (crypto-shredding), and erases every run that holds a given
// person's identifier.
package retention

import (
	"fmt"
	"strings"
	"time"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/workflow"
)

// DefaultKeep is how long payloads are kept when nothing else says.
const DefaultKeep = 30 * 24 * time.Hour

// Rules are the server's retention rules.
type Rules struct {
	// Default applies to every kind a workflow does not set; 0 keeps
	// payloads until they are erased.
	Default time.Duration
	// Classes cap how long payloads holding a data class are kept, found
	// in them by the detectors or declared on the input schema
	// (x-data-class), whatever the workflow says.
	Classes map[string]time.Duration
}

// ParseClassRule reads "pii.card=7d".
func ParseClassRule(s string) (class string, keep time.Duration, err error) {
	class, d, ok := strings.Cut(s, "=")
	class = strings.TrimSpace(class)
	if !ok || class == "" || len(class) > 128 {
		return "", 0, fmt.Errorf("retention: class rule %q: want CLASS=DURATION, such as pii.card=7d", truncate(s))
	}
	keep, err = workflow.ParseDuration(strings.TrimSpace(d))
	if err != nil {
		return "", 0, fmt.Errorf("retention: class rule for %s: %w", class, err)
	}
	if keep <= 0 {
		return "", 0, fmt.Errorf("retention: class rule for %s: the duration must be positive", class)
	}
	return class, keep, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// For returns how long a run of def keeps each kind of payload: the
// workflow's own setting or the default, capped by the class rules of the
// classes its input schema declares.
func (r Rules) For(def *workflow.Definition) store.Retention {
	out := store.Retention{Input: r.Default, Steps: r.Default, Output: r.Default}
	if def == nil {
		return out
	}
	if w := def.Retention; w != nil {
		set := func(dst *time.Duration, d workflow.Duration) {
			if d > 0 {
				*dst = time.Duration(d)
			}
		}
		set(&out.Input, w.Input)
		set(&out.Steps, w.Steps)
		set(&out.Output, w.Output)
	}
	if def.Input != nil {
		if c := r.Cap(workflow.NewInputSchema(def.Input).Classes()); c > 0 {
			out.Input, out.Steps, out.Output = capped(out.Input, c), capped(out.Steps, c), capped(out.Output, c)
		}
	}
	return out
}

// Cap is the shortest class rule among classes, 0 when none applies.
func (r Rules) Cap(classes []string) time.Duration {
	var c time.Duration
	for _, class := range classes {
		if d, ok := r.Classes[class]; ok && (c == 0 || d < c) {
			c = d
		}
	}
	return c
}

func capped(keep, limit time.Duration) time.Duration {
	if keep == 0 || keep > limit {
		return limit
	}
	return keep
}
