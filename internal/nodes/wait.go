package nodes

import (
	"fmt"
	"time"

	"github.com/moatproject/moat/internal/workflow"
)

// maxWait bounds how far ahead a run may sleep.
const maxWait = 366 * 24 * time.Hour

// Wait pauses the branch for a duration or until a time, durably: the run
// resumes after a restart.
type Wait struct{}

func (Wait) Name() string { return "wait" }

// Waits implements workflow.Waiter.
func (Wait) Waits() bool { return true }

func (Wait) Kind(map[string]any) Kind { return Timer }
func (Wait) Description() string {
	return "Pause this branch for a duration or until a time; survives restarts."
}
func (Wait) Schema() map[string]any {
	s := object(nil, map[string]any{
		"duration": orTemplate(durationSchema("how long to wait, e.g. 30s, 2h, 1d")),
		"until":    map[string]any{"type": "string", "description": "RFC 3339 time to wait until (or a template)"},
	})
	s["oneOf"] = []any{
		map[string]any{"required": []any{"duration"}},
		map[string]any{"required": []any{"until"}},
	}
	return s
}

// Until computes when the wait ends from rendered settings.
func (Wait) Until(with map[string]any, now time.Time) (time.Time, error) {
	var at time.Time
	switch {
	case with["duration"] != nil:
		s, ok := with["duration"].(string)
		if !ok {
			return time.Time{}, fmt.Errorf("duration: want a string like \"30s\", got %T", with["duration"])
		}
		d, err := workflow.ParseDuration(s)
		if err != nil {
			return time.Time{}, fmt.Errorf("duration: %w", err)
		}
		if d < 0 {
			return time.Time{}, fmt.Errorf("duration: %s is negative", s)
		}
		at = now.Add(d)
	case with["until"] != nil:
		s, ok := with["until"].(string)
		if !ok {
			return time.Time{}, fmt.Errorf("until: want an RFC 3339 time, got %T", with["until"])
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("until: %q is not an RFC 3339 time", s)
		}
		at = t
	default:
		return time.Time{}, fmt.Errorf("set duration or until")
	}
	if at.Sub(now) > maxWait {
		return time.Time{}, fmt.Errorf("waits are limited to %s", maxWait)
	}
	return at, nil
}
