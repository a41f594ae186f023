package workflow

import "time"

// Bounds on a definition and on the values expressions see. Exceeding one is a
// problem (or an error at run time), never a panic.
// MaxStepTimeout bounds one attempt of a step. The engine lets River cancel
// a job only after this, so it must stay well below River's rescue delay.
const MaxStepTimeout = time.Hour

// MaxRetention bounds how long a workflow may keep a run's payloads.
const MaxRetention = 10 * 365 * 24 * time.Hour

const (
	MaxSourceBytes    = 1 << 20 // a definition's source
	MaxSteps          = 500
	MaxDepth          = 32   // nesting of any value in a definition
	MaxExprBytes      = 4096 // one expression's source
	MaxExpressions    = 2000 // expressions in one definition
	MaxJSONBytes      = 4 << 20
	MaxJSONDepth      = 64
	CostLimit         = 1_000_000 // CEL cost units per evaluation
	maxRetryAttempts  = 20
	maxCachedPrograms = 10_000 // programs compiled on demand at run time
)
