package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/detect"
)

// Identity is who asks for a call (the Who stage).
type Identity struct {
	// Kind is "run" for a workflow step, "key" for an API key.
	Kind string `json:"kind"`
	// ID is the API key's id or the run's id; Name the key's name.
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	Role string `json:"role,omitempty"`
	// Where a run's call comes from.
	Project  string `json:"project,omitempty"`
	Workflow string `json:"workflow,omitempty"`
	Run      string `json:"run,omitempty"`
	Step     string `json:"step,omitempty"`
}

// Role of a message; callers name roles through the gateway, since only
// the gateway may reach connectors.
type Role = connectors.Role

// Roles.
const (
	System    = connectors.System
	User      = connectors.User
	Assistant = connectors.Assistant
)

// Message is an instruction or a turn of conversation. A workflow's
// messages are written by its author (trusted); an API client's user and
// assistant turns are untrusted. Every message is scanned either way.
type Message struct {
	Role    Role   `json:"role"`
	Content string `json:"content"`
	// Trust is Trusted or Untrusted; "" counts as Trusted for messages.
	Trust string `json:"trust,omitempty"`
}

// DataItem is data a step hands to the model: fenced and labelled as data,
// not instructions, with the class and trust the workflow declares for it.
type DataItem struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Class is the declared data class (x-data-class), "" when none.
	Class string `json:"class,omitempty"`
	// Trust is Trusted or Untrusted; "" counts as Untrusted.
	Trust string `json:"trust,omitempty"`
}

// Request is one call through the gateway.
type Request struct {
	Identity Identity
	// Model is an alias name; or, when Connector is set, that connector's
	// upstream model name ("" for its default).
	Model     string
	Connector string
	Messages  []Message
	Data      []DataItem
	// Schema, when set, is the JSON Schema the answer must match (with one
	// repair retry when Repair is set); Labels, when set, the answers allowed.
	Schema      map[string]any
	SchemaName  string
	Repair      bool
	Labels      []string
	Examples    []Example
	MaxTokens   int
	Temperature *float64
	// Restore lists the classes whose tokens are restored in the answer;
	// RestoreAll restores every class the policy lets back to the caller.
	Restore    []string
	RestoreAll bool
	// Injection is what happens when an untrusted item scores as an
	// injection: InjectionBlock (the default) or InjectionFence.
	Injection string
	// Prepared, when set, hears the record so far (request id, findings,
	// decisions) once the request is transformed and before anything is
	// sent, so a streaming caller can put them in its headers.
	Prepared func(Record)
}

// What happens to an untrusted span that scores as an injection.
const (
	InjectionBlock = "block" // the call does not happen
	InjectionFence = "fence" // it is flagged, and sent fenced as data
)

// Result is a finished call. Its Sent and Received hold tokens, never the
// values they stand for; Content and Value are restored.
type Result struct {
	Content string
	Value   any
	// Sent is what left, as it left; Received is the answer before Restore.
	Sent     []connectors.Message
	Received string
	Record   Record
	// Overhead is Record.Overhead plus the time writing the record took,
	// which the record itself cannot hold: the gateway's whole time on the
	// call, less the time spent waiting (as Record.Overhead).
	Overhead time.Duration
}

// Record is what the gateway records of every call, allowed or not: no
// payload, only digests, counts and names.
type Record struct {
	RequestID   string    `json:"requestId"`
	Time        time.Time `json:"time"`
	Identity    Identity  `json:"identity"`
	Environment string    `json:"environment"`
	Alias       string    `json:"alias,omitempty"`
	Connector   string    `json:"connector,omitempty"`
	Vendor      string    `json:"vendor,omitempty"`
	Model       string    `json:"model,omitempty"`
	// Findings counts input findings by type; Decisions counts actions.
	Findings  map[string]int          `json:"findings,omitempty"`
	Decisions map[string]int          `json:"decisions,omitempty"`
	Applied   []Applied               `json:"applied,omitempty"`
	Injection *detect.InjectionResult `json:"injection,omitempty"`
	// Subjects are the personal identifiers (pii.* findings) of what the
	// call was given, before any transform, and of its answer, normalised
	// (detect.Normalize) and held only as audit.Sensitive: the audit log
	// stores their HMACs, so a person can be searched for; JSON leaves them
	// out and printing shows a placeholder.
	Subjects []audit.SensitiveValue `json:"-"`
	// Checks lists the kinds of problems found in the answer.
	Checks       []string         `json:"checks,omitempty"`
	InputDigest  string           `json:"inputDigest,omitempty"`  // SHA-256 of what was sent
	OutputDigest string           `json:"outputDigest,omitempty"` // SHA-256 of what came back
	Usage        connectors.Usage `json:"usage"`
	CostMicros   int64            `json:"costMicros"`
	Attempts     []Attempt        `json:"attempts,omitempty"`
	Latency      time.Duration    `json:"latency"`
	// Overhead is Latency less the time spent waiting: on upstreams (their
	// HTTP exchanges, or the whole of an in-process model's answer), before
	// retries, and in a stream on the caller (see Attempt).
	Overhead time.Duration `json:"overhead"`
	// Outcome is "ok" or the Code of the call's Error.
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`
}

// Recorder receives every Record. A call whose record cannot be written
// fails (fail closed); AuditRecorder is the durable one. The context it is
// given is never cancelled, as a call is recorded even when its caller has
// gone, so a Recorder must bound its own wait (AuditRecorder's log fails an
// append after its Options.Timeout).
type Recorder interface {
	Record(ctx context.Context, r Record) error
}

// StartRecorder is a Recorder that also records a call before anything is
// sent: with the request as it will leave (who, where to, findings,
// decisions, the input's digest). A call whose start cannot be recorded is
// not made, so a failing audit store stops requests before they reach an
// upstream, not only their answers.
type StartRecorder interface {
	Recorder
	RecordStart(ctx context.Context, r Record) error
}

// TokenStore keeps a run's tokens, so that a value gets the same token in
// every step of a run, on any node.
type TokenStore interface {
	LoadTokens(ctx context.Context, runID string) ([]TokenEntry, error)
	// SaveTokens adds tokens; one already taken in the run for another
	// value is a conflict, and the call fails before anything leaves.
	SaveTokens(ctx context.Context, runID string, tokens []TokenEntry) error
}

// TokenEntry is one issued token.
type TokenEntry struct {
	Token string
	Class string
	Value string
}

// ResourceStore is where the gateway reads its resources.
type ResourceStore interface {
	LoadResources(ctx context.Context) (Resources, error)
}

// Config configures a Gateway.
type Config struct {
	// Environment the server runs in (dev, staging, prod).
	Environment string
	Resources   ResourceStore
	Tokens      TokenStore
	Recorder    Recorder
	// Policy decides per finding; DefaultPolicy when nil.
	Policy *Policy
	// HashKey keys the Hash action's digests.
	HashKey []byte
	// HTTPClient sends every connector's requests (the egress policy).
	HTTPClient *http.Client
	// DataDir resolves replay cassettes given by relative path.
	DataDir string
	// Getenv reads credentials named by environment variable; os.Getenv
	// when nil.
	Getenv func(string) string
	// Secrets gives credentials named as vault secrets (nil: calls of
	// connectors naming one fail closed).
	Secrets SecretResolver
	Caller  CallerConfig
	// Limits per scope kind ("key", "workflow", "connector"); connectors'
	// own limits override the "connector" kind's.
	Limits map[string]Limits
	// MaxPromptBytes bounds everything a request sends; 1 MiB when zero.
	MaxPromptBytes int
	Now            func() time.Time
}

// Error is a call that did not complete, naming the stage that stopped it.
// Its Message says what is wrong, never a value from the payload.
type Error struct {
	Stage      string
	Code       string
	Message    string
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string { return "gateway: " + e.Stage + ": " + e.Message }
func (e *Error) Unwrap() error { return e.Err }

// Error codes.
const (
	CodeForbidden    = "forbidden"       // Who refused
	CodeInvalid      = "invalid_request" // Shape refused
	CodeUnknownModel = "unknown_model"   // no such alias or connector here
	CodeBlocked      = "blocked"         // a finding's action is block
	CodeInjection    = "injection"       // an untrusted item scored as injection
	CodeRateLimited  = "rate_limited"    // Moat's own limits
	CodeBudget       = "budget_exceeded" //
	CodeUnavailable  = "upstream_unavailable"
	CodeRejected     = "upstream_rejected"
	CodeCheckFailed  = "check_failed" // the answer failed its checks
	CodeInternal     = "internal"     // a stage failed; the call failed closed
)

// Retryable reports whether the same call may succeed later.
func (e *Error) Retryable() bool {
	switch e.Code {
	case CodeRateLimited, CodeUnavailable, CodeInternal:
		return true
	}
	return false
}
