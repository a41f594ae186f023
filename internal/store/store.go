// Package store holds Moat's persistent state behind one interface with two
// implementations: SQLite (the embedded default) and Postgres. Both are plain
// database/sql so that River can enqueue jobs inside the same transaction that
// records a step's result.
package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Sentinel errors. Implementations wrap them so callers can use errors.Is.
var (
	ErrNotFound = errors.New("store: not found")
	ErrConflict = errors.New("store: conflict")
	// ErrUnavailable reports that the database could not be reached or stayed
	// locked past the busy timeout; nothing was written.
	ErrUnavailable = errors.New("store: database unavailable")
	// ErrInvalid reports an argument the store cannot use, such as a
	// malformed page cursor.
	ErrInvalid = errors.New("store: invalid argument")
)

// Dialect names the SQL flavour behind a Store.
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Store is the whole persistent state. Reads outside a transaction may use a
// read pool; writes happen only inside InTx.
type Store interface {
	Queries
	// InTx runs fn in one write transaction, committing when fn returns nil
	// and rolling back otherwise. fn must not start another transaction and
	// must not do network I/O: on SQLite the writer is a single connection.
	InTx(ctx context.Context, fn func(tx Tx) error) error
	// WriterDB is the pool River's driver uses; on SQLite it has exactly one
	// connection, shared with InTx.
	WriterDB() *sql.DB
	// SetPayloadSealer makes the store seal run payloads (inputs,
	// outputs, step outputs, tasks, tokens) with ps on every write and
	// open them on every read. Call it once, before the store is used.
	SetPayloadSealer(ps PayloadSealer)
	// PreparePayloads readies what sealing a new run's payloads needs (its
	// keys) outside any transaction, so that CreateRun does not make them
	// while holding the writer; without it CreateRun makes them itself.
	PreparePayloads(ctx context.Context, runID string) error
	Dialect() Dialect
	Ping(ctx context.Context) error
	Close() error
}

// Tx is a write transaction. SQL exposes it to River (InsertTx, JobCompleteTx).
type Tx interface {
	Queries
	SQL() *sql.Tx
}

// Queries are the operations available both on the store and inside a
// transaction. Time values are stored with microsecond precision in UTC.
type Queries interface {
	AuditQueries // the audit log (audit.go)

	SecretQueries // the vault's rows (secrets.go)

	RetentionQueries // how long run payloads live, and their subjects (payload.go)
	// Projects.
	UpsertProject(ctx context.Context, p Project) (Project, error)
	GetProject(ctx context.Context, name string) (Project, error)
	ListProjects(ctx context.Context) ([]Project, error)

	// Workflows and their immutable versions.
	//
	// SaveWorkflowVersion creates the workflow if needed and appends a new
	// version unless the latest version already has the same Hash, in which
	// case it returns that version with created=false. Version numbers start
	// at 1 and increase by one per workflow. A webhook path is unique across
	// workflows (ErrConflict when another workflow's latest version holds it).
	SaveWorkflowVersion(ctx context.Context, v NewVersion) (wf Workflow, ver Version, created bool, err error)
	GetWorkflow(ctx context.Context, project, name string) (Workflow, error)
	GetWorkflowByID(ctx context.Context, id string) (Workflow, error)
	ListWorkflows(ctx context.Context, project string) ([]Workflow, error)
	GetVersion(ctx context.Context, id string) (Version, error)
	GetVersionByNumber(ctx context.Context, workflowID string, number int) (Version, error)
	ListVersions(ctx context.Context, workflowID string) ([]Version, error)
	// FindWebhook returns the workflow whose latest version has this webhook path.
	FindWebhook(ctx context.Context, path string) (Workflow, error)

	// Runs.
	CreateRun(ctx context.Context, r Run) error
	GetRun(ctx context.Context, id string) (Run, error)
	ListRuns(ctx context.Context, f RunFilter) (runs []Run, nextCursor string, err error)
	// UpdateRun writes Status, Output, Error, StartedAt, FinishedAt and
	// UpdatedAt. It fails with ErrConflict when the stored status is final
	// (succeeded, failed, cancelled), so a finished run is never reopened.
	UpdateRun(ctx context.Context, r Run) error

	// Steps: one row per (run, step id). A foreach child uses the step id
	// "parent[index]".
	UpsertStep(ctx context.Context, s Step) error
	GetStep(ctx context.Context, runID, stepID string) (Step, error)
	ListSteps(ctx context.Context, runID string) ([]Step, error)

	// Attempts of effectful steps, numbered from 1 per (run, step).
	UpsertAttempt(ctx context.Context, a Attempt) error
	ListAttempts(ctx context.Context, runID string) ([]Attempt, error)

	// Human tasks raised by approval steps.
	CreateTask(ctx context.Context, t Task) error
	GetTask(ctx context.Context, id string) (Task, error)
	ListTasks(ctx context.Context, f TaskFilter) ([]Task, error)
	// DecideTask moves a pending task to a final status. It fails with
	// ErrConflict when the task is no longer pending.
	DecideTask(ctx context.Context, id string, status TaskStatus, by, comment string, at time.Time) (Task, error)

	// API tokens (stored as SHA-256 hashes, never in clear).
	CreateToken(ctx context.Context, t Token) error
	FindToken(ctx context.Context, hash []byte) (Token, error)
	CountTokens(ctx context.Context) (int, error)
	TouchToken(ctx context.Context, id string, at time.Time) error

	// The gateway's resources (Vendor, Connector, Model), one row per kind
	// and name.
	//
	// PutResource creates or replaces a resource and reports whether
	// anything changed: a resource whose Hash equals the stored one is left
	// as it is (changed=false) and the stored row is returned.
	PutResource(ctx context.Context, r Resource) (Resource, bool, error)
	GetResource(ctx context.Context, kind, name string) (Resource, error)
	// ListResources lists the resources of kind, or all when kind is "",
	// ordered by kind then name.
	ListResources(ctx context.Context, kind string) ([]Resource, error)
	// DeleteResource fails with ErrNotFound when there is no such resource.
	DeleteResource(ctx context.Context, kind, name string) error

	// Tokens the gateway issued within a run, so that a value gets the same
	// token in every step of the run, on any node.
	//
	// LoadRunTokens lists a run's tokens by CreatedAt, then Token.
	LoadRunTokens(ctx context.Context, runID string) ([]RunToken, error)
	// AddRunTokens adds tokens to a run. A token already there with the
	// same class and value is skipped; a token there with another class or
	// value, or a class and value there under another token, fails the call
	// with ErrConflict and nothing is added.
	AddRunTokens(ctx context.Context, runID string, tokens []RunToken) error
}

// Resource is one gateway resource as stored.
type Resource struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Spec is the canonical JSON of the gateway type (gateway.Vendor, …).
	Spec      []byte    `json:"-"`
	Hash      string    `json:"hash"` // hex SHA-256 of Spec
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// RunToken is one token of a run and the value it stands for. Value is
// payload: it never appears in an error or a log line.
type RunToken struct {
	Token     string
	Class     string
	Value     string
	CreatedAt time.Time
}

// Project groups workflows.
type Project struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// Workflow is the mutable head of a series of immutable versions.
type Workflow struct {
	ID            string    `json:"id"`
	ProjectID     string    `json:"projectId"`
	Project       string    `json:"project"`
	Name          string    `json:"name"`
	LatestVersion int       `json:"latestVersion"`
	LatestID      string    `json:"latestVersionId"`
	WebhookPath   string    `json:"webhookPath,omitempty"`
	Schedule      string    `json:"schedule,omitempty"`
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
}

// NewVersion is what SaveWorkflowVersion stores.
type NewVersion struct {
	Project     string // project name; created when missing
	Name        string
	Hash        string // hex SHA-256 of the canonical definition
	Definition  []byte // canonical JSON
	Source      []byte // what the author wrote (YAML or JSON)
	WebhookPath string
	Schedule    string
	At          time.Time
}

// Version is one immutable workflow version.
type Version struct {
	ID         string    `json:"id"`
	WorkflowID string    `json:"workflowId"`
	Number     int       `json:"number"`
	Hash       string    `json:"hash"`
	Definition []byte    `json:"-"`
	Source     []byte    `json:"-"`
	CreatedAt  time.Time `json:"createdAt"`
}

// RunStatus is a run's state. Final states never change.
type RunStatus string

const (
	RunPending   RunStatus = "pending"
	RunRunning   RunStatus = "running"
	RunWaiting   RunStatus = "waiting" // only human tasks or timers are outstanding
	RunSucceeded RunStatus = "succeeded"
	RunFailed    RunStatus = "failed"
	RunCancelled RunStatus = "cancelled"
)

// Final reports whether s is a terminal status.
func (s RunStatus) Final() bool {
	return s == RunSucceeded || s == RunFailed || s == RunCancelled
}

// Run is one execution of a workflow version.
type Run struct {
	ID         string    `json:"id"`
	ProjectID  string    `json:"projectId"`
	WorkflowID string    `json:"workflowId"`
	VersionID  string    `json:"versionId"`
	Status     RunStatus `json:"status"`
	Trigger    string    `json:"trigger"` // manual, webhook, schedule, cli
	Input      []byte    `json:"-"`
	Output     []byte    `json:"-"`
	// Retention is how long CreateRun has the run's payloads kept after
	// it finishes; it is not read back.
	Retention  Retention  `json:"-"`
	Error      string     `json:"error,omitempty"`
	CreatedAt  time.Time  `json:"createdAt"`
	UpdatedAt  time.Time  `json:"updatedAt"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
}

// RunFilter selects runs, newest first. Cursor is opaque, from a previous page.
type RunFilter struct {
	ProjectID  string
	WorkflowID string
	Status     RunStatus
	Limit      int // 1..500; 0 means 50
	Cursor     string
}

// StepStatus is a step's state within a run.
type StepStatus string

const (
	StepPending   StepStatus = "pending"   // reached, not started
	StepQueued    StepStatus = "queued"    // a job is enqueued for it
	StepRunning   StepStatus = "running"   // an attempt is in flight
	StepWaiting   StepStatus = "waiting"   // on a human task or a timer
	StepSucceeded StepStatus = "succeeded" // output recorded
	StepFailed    StepStatus = "failed"
	StepSkipped   StepStatus = "skipped" // on a branch that was not taken
	StepCancelled StepStatus = "cancelled"
)

// Final reports whether s is a terminal status.
func (s StepStatus) Final() bool {
	return s == StepSucceeded || s == StepFailed || s == StepSkipped || s == StepCancelled
}

// Step is one step's state within a run.
type Step struct {
	RunID  string     `json:"-"`
	StepID string     `json:"id"`
	Uses   string     `json:"uses"`
	Status StepStatus `json:"status"`
	Output []byte     `json:"-"`
	// Next, when non-nil, lists the only successors this step activated
	// (a switch's chosen case; empty for a filter that let nothing through).
	Next       []string   `json:"next,omitempty"`
	Error      string     `json:"error,omitempty"`
	Attempts   int        `json:"attempts"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	UpdatedAt  time.Time  `json:"updatedAt"`
}

// AttemptStatus is an attempt's outcome.
type AttemptStatus string

const (
	AttemptRunning   AttemptStatus = "running"
	AttemptSucceeded AttemptStatus = "succeeded"
	AttemptFailed    AttemptStatus = "failed"
)

// Attempt is one try at an effectful step.
type Attempt struct {
	RunID          string        `json:"-"`
	StepID         string        `json:"step"`
	Number         int           `json:"number"`
	Status         AttemptStatus `json:"status"`
	IdempotencyKey string        `json:"idempotencyKey"`
	Error          string        `json:"error,omitempty"`
	StartedAt      time.Time     `json:"startedAt"`
	FinishedAt     *time.Time    `json:"finishedAt,omitempty"`
}

// TaskStatus is a human task's state.
type TaskStatus string

const (
	TaskPending  TaskStatus = "pending"
	TaskApproved TaskStatus = "approved"
	TaskRejected TaskStatus = "rejected"
	TaskExpired  TaskStatus = "expired"
	TaskCanceled TaskStatus = "cancelled"
)

// Task is a human decision an approval step waits for.
type Task struct {
	ID        string     `json:"id"`
	RunID     string     `json:"runId"`
	StepID    string     `json:"stepId"`
	ProjectID string     `json:"projectId"`
	Status    TaskStatus `json:"status"`
	Role      string     `json:"role,omitempty"`
	Title     string     `json:"title"`
	Details   []byte     `json:"-"` // JSON shown to the reviewer
	DecidedBy string     `json:"decidedBy,omitempty"`
	Comment   string     `json:"comment,omitempty"`
	CreatedAt time.Time  `json:"createdAt"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	DecidedAt *time.Time `json:"decidedAt,omitempty"`
}

// TaskFilter selects tasks, oldest first.
type TaskFilter struct {
	ProjectID string
	RunID     string
	Status    TaskStatus // empty: all
	Limit     int        // 0 means 100
}

// Token is an API bearer token, kept only as a hash.
type Token struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Hash       []byte     `json:"-"`
	Role       string     `json:"role"`
	CreatedAt  time.Time  `json:"createdAt"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
}
