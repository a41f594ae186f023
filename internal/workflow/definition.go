// Package workflow holds the workflow definition format (moat/v1): its types,
// parsing from YAML or JSON with source positions, validation that reports
// every problem at once, CEL expressions and {{ }} templates, and compilation
// into a Plan (a checked DAG) that the engine executes.
package workflow

import (
	"encoding/json"
	"fmt"
	"time"
)

// APIVersion and Kind identify a workflow document.
const (
	APIVersion = "moat/v1"
	Kind       = "Workflow"
)

// Definition is a workflow as its author wrote it. YAML and JSON map onto the
// same type; unknown fields are errors.
type Definition struct {
	APIVersion  string  `json:"apiVersion"`
	Kind        string  `json:"kind"`
	Name        string  `json:"name"`
	Project     string  `json:"project,omitempty"`
	Description string  `json:"description,omitempty"`
	Trigger     Trigger `json:"trigger"`
	Input       *Input  `json:"input,omitempty"`
	// Output is the run's result: a value whose strings may hold {{ }}
	// templates. When absent the run's output is the last finished step's.
	Output any    `json:"output,omitempty"`
	Steps  []Step `json:"steps"`
	// Retention says how long a finished run's payloads are kept; what
	// it leaves out follows the server's default. Data-class rules of the
	// server may shorten it, never lengthen it.
	Retention *Retention `json:"retention,omitempty"`
}

// Retention is how long each kind of a finished run's payloads is kept
// before it is purged: its input (and the gateway's tokens for it), what
// its steps produced (AI prompts' answers among them), and its output.
type Retention struct {
	Input  Duration `json:"input,omitempty"`
	Steps  Duration `json:"steps,omitempty"`
	Output Duration `json:"output,omitempty"`
}

// Trigger says how runs start. Exactly one of its fields is set; a
// definition without a trigger is manual.
type Trigger struct {
	Manual   *Manual   `json:"manual,omitempty"`
	Webhook  *Webhook  `json:"webhook,omitempty"`
	Schedule *Schedule `json:"schedule,omitempty"`
}

// Manual runs start through the API or the CLI.
type Manual struct{}

// Webhook runs start from POST /hooks/{path}.
type Webhook struct {
	Path string `json:"path"`
}

// Schedule runs start on a cron schedule (five fields, or @every / @hourly …).
// In YAML it may be written as a plain string: `schedule: "*/5 * * * *"`.
type Schedule struct {
	Cron     string `json:"cron"`
	Timezone string `json:"timezone,omitempty"` // IANA name; UTC when empty
	Input    any    `json:"input,omitempty"`    // input given to each scheduled run
}

// UnmarshalJSON accepts the string shorthand.
func (s *Schedule) UnmarshalJSON(b []byte) error {
	var cron string
	if err := json.Unmarshal(b, &cron); err == nil {
		*s = Schedule{Cron: cron}
		return nil
	}
	type plain Schedule
	return unmarshalStrict(b, (*plain)(s))
}

// Input declares the run input's JSON Schema (draft 2020-12). The schema may
// carry x-data-class and x-trust annotations, kept for the gateway.
type Input struct {
	Schema map[string]any `json:"schema"`
}

// Step is one node of the DAG.
type Step struct {
	ID        string         `json:"id"`
	Name      string         `json:"name,omitempty"`
	Uses      string         `json:"uses"`
	Connector string         `json:"connector,omitempty"`
	With      map[string]any `json:"with,omitempty"`
	// If is a CEL condition; when false the step is skipped.
	If string `json:"if,omitempty"`
	// Needs lists the steps this one waits for. Nil means "the previous
	// step in the list" unless another step names this one in next or a
	// switch case; an explicit empty list makes the step a root.
	Needs   []string `json:"needs,omitzero"`
	Next    []string `json:"next,omitempty"`
	Retry   *Retry   `json:"retry,omitempty"`
	Timeout Duration `json:"timeout,omitempty"`
}

// Retry bounds the attempts of an effectful step. Backoff doubles (times
// Multiplier) from Backoff up to MaxBackoff, with full jitter.
type Retry struct {
	MaxAttempts int      `json:"maxAttempts"`
	Backoff     Duration `json:"backoff,omitempty"`
	MaxBackoff  Duration `json:"maxBackoff,omitempty"`
	Multiplier  float64  `json:"multiplier,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("30s",
// "1h30m"); "d" for days is accepted ("2d").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"30s\" or \"24h\"")
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
