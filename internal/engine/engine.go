// Package engine runs workflow versions durably on River. Pure steps run
// inline inside the job that reached them and commit with the run's state;
// each attempt of an effect, each timer and each human wait is a job of its
// own, enqueued in the same transaction that completes the step before it.
package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/moatproject/moat/internal/nodes"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/workflow"
)

// Sentinel errors.
var (
	ErrInvalidInput = errors.New("engine: invalid input")
	ErrFinal        = errors.New("engine: run already finished")
	ErrNotPending   = errors.New("engine: task already decided")
)

// Config wires an Engine.
type Config struct {
	Store    store.Store
	Registry *nodes.Registry
	HTTP     *http.Client
	// AI is the gateway AI steps call; without it they fail.
	AI     nodes.AI
	Logger *slog.Logger
	// Secrets is the vault http.request steps take their credentials
	// from, in Environment; without it a step naming one fails.
	Secrets nodes.Secrets
	// Environment is the name runs see as env.name (dev, staging, prod).
	Environment string
	// Workers bounds concurrent jobs; default 100.
	Workers int
	// PollInterval is how often idle workers look for due jobs; default 50ms.
	PollInterval time.Duration
	// Now is the clock; tests may replace it.
	Now func() time.Time
	// Retention says how long a run of a workflow keeps its payloads once
	// finished; without it they are kept until erased.
	Retention func(*workflow.Definition) store.Retention
}

// Engine executes runs.
type Engine struct {
	store    store.Store
	registry *nodes.Registry
	river    *river.Client[*sql.Tx]
	driver   riverdriver.Driver[*sql.Tx]
	env      nodes.Env
	log      *slog.Logger
	envName  string
	now      func() time.Time
	keep     func(*workflow.Definition) store.Retention

	plansMu sync.Mutex
	plans   map[string]*workflow.Plan

	watchMu  sync.Mutex
	watchers map[string][]chan struct{}
}

// New builds an engine; call Migrate once, then Start.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil || cfg.Registry == nil {
		return nil, errors.New("engine: config needs a store and a registry")
	}
	e := &Engine{
		store:    cfg.Store,
		registry: cfg.Registry,
		log:      cfg.Logger,
		envName:  cfg.Environment,
		now:      cfg.Now,
		keep:     cfg.Retention,
		plans:    make(map[string]*workflow.Plan),
		watchers: make(map[string][]chan struct{}),
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.envName == "" {
		e.envName = "dev"
	}
	// Times are kept at the store's precision, so a run read back equals
	// the one returned when it started.
	clock := cfg.Now
	if clock == nil {
		clock = time.Now
	}
	e.now = func() time.Time { return clock().UTC().Truncate(time.Microsecond) }
	httpClient := cfg.HTTP
	if httpClient == nil {
		httpClient = nodes.NewHTTPClient(nodes.EgressPolicy{})
	}
	e.env = nodes.Env{HTTP: httpClient, Registry: cfg.Registry, Now: e.now, AI: cfg.AI, Secrets: cfg.Secrets, Environment: e.envName}

	switch cfg.Store.Dialect() {
	case store.SQLite:
		e.driver = riversqlite.New(cfg.Store.WriterDB())
	case store.Postgres:
		e.driver = riverdatabasesql.New(cfg.Store.WriterDB())
	default:
		return nil, fmt.Errorf("engine: unsupported dialect %q", cfg.Store.Dialect())
	}

	workers := river.NewWorkers()
	river.AddWorker(workers, &stepWorker{e: e})
	river.AddWorker(workers, &scheduleWorker{e: e})

	maxWorkers := cfg.Workers
	if maxWorkers <= 0 {
		maxWorkers = 100
	}
	poll := cfg.PollInterval
	if poll <= 0 {
		poll = 50 * time.Millisecond
	}
	client, err := river.NewClient(e.driver, &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: maxWorkers}},
		Workers:           workers,
		FetchCooldown:     min(poll, 10*time.Millisecond),
		FetchPollInterval: poll,
		// Our own attempts carry the step's timeout (at most
		// MaxStepTimeout); River's only guards against a worker that never
		// returns, and rescues a dead node's jobs after that.
		JobTimeout:           workflow.MaxStepTimeout + 5*time.Minute,
		RescueStuckJobsAfter: workflow.MaxStepTimeout + 10*time.Minute,
		Logger:               e.log.With("component", "river"),
		ErrorHandler:         &errorHandler{log: e.log},
		MaxAttempts:          25,
	})
	if err != nil {
		return nil, fmt.Errorf("engine: river client: %w", err)
	}
	e.river = client
	return e, nil
}

// Migrate creates or upgrades River's tables in the store's database.
func (e *Engine) Migrate(ctx context.Context) error {
	m, err := rivermigrate.New(e.driver, nil)
	if err != nil {
		return fmt.Errorf("engine: river migrator: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("engine: migrate river: %w", err)
	}
	return nil
}

// Start begins working jobs. With exclusive set (an embedded database that
// only this process opens), jobs left running by a crashed process are made
// available again at once instead of after River's rescue delay.
func (e *Engine) Start(ctx context.Context, exclusive bool) error {
	if exclusive {
		if err := e.requeueOrphans(ctx); err != nil {
			return err
		}
	}
	if err := e.river.Start(ctx); err != nil {
		return fmt.Errorf("engine: start: %w", err)
	}
	return nil
}

// Stop waits for running jobs to finish, up to ctx's deadline, then cancels
// them; cancelled attempts run again after restart with the same key.
func (e *Engine) Stop(ctx context.Context) error {
	err := e.river.Stop(ctx)
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = e.river.StopAndCancel(stopCtx)
	}
	return err
}

// requeueOrphans returns jobs stuck in "running" to "available". Only safe
// when no other process works this database.
func (e *Engine) requeueOrphans(ctx context.Context) error {
	return e.store.InTx(ctx, func(tx store.Tx) error {
		res, err := tx.SQL().ExecContext(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'running'`)
		if err != nil {
			return fmt.Errorf("engine: requeue interrupted jobs: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			e.log.Info("resuming jobs interrupted by a previous stop", "jobs", n)
		}
		return nil
	})
}

// Registry returns the node registry.
func (e *Engine) Registry() *nodes.Registry { return e.registry }

// plan returns the compiled plan of a stored version, cached by id.
func (e *Engine) plan(v store.Version) (*workflow.Plan, error) {
	e.plansMu.Lock()
	p, ok := e.plans[v.ID]
	e.plansMu.Unlock()
	if ok {
		return p, nil
	}
	p, err := workflow.FromCanonical(v.Definition, e.registry)
	if err != nil {
		return nil, fmt.Errorf("engine: version %s: %w", v.ID, err)
	}
	e.plansMu.Lock()
	if len(e.plans) > 4096 {
		clear(e.plans)
	}
	e.plans[v.ID] = p
	e.plansMu.Unlock()
	return p, nil
}

func (e *Engine) planByVersionID(ctx context.Context, q store.Queries, id string) (*workflow.Plan, error) {
	e.plansMu.Lock()
	p, ok := e.plans[id]
	e.plansMu.Unlock()
	if ok {
		return p, nil
	}
	v, err := q.GetVersion(ctx, id)
	if err != nil {
		return nil, err
	}
	return e.plan(v)
}

// watch returns a channel signalled whenever the run's state commits.
func (e *Engine) watch(runID string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	e.watchMu.Lock()
	e.watchers[runID] = append(e.watchers[runID], ch)
	e.watchMu.Unlock()
	return ch, func() {
		e.watchMu.Lock()
		defer e.watchMu.Unlock()
		list := e.watchers[runID]
		for i, c := range list {
			if c == ch {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(e.watchers, runID)
		} else {
			e.watchers[runID] = list
		}
	}
}

func (e *Engine) changed(runID string) {
	e.watchMu.Lock()
	defer e.watchMu.Unlock()
	for _, ch := range e.watchers[runID] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// WaitFor blocks until done reports true for the run's state, the run is
// final, or ctx ends. It listens for local commits and polls as a fallback
// for runs advanced by other nodes.
func (e *Engine) WaitFor(ctx context.Context, runID string, done func(store.Run, []store.Step) bool) (store.Run, []store.Step, error) {
	ch, stop := e.watch(runID)
	defer stop()
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	for {
		run, err := e.store.GetRun(ctx, runID)
		if err != nil {
			return store.Run{}, nil, err
		}
		steps, err := e.store.ListSteps(ctx, runID)
		if err != nil {
			return store.Run{}, nil, err
		}
		if run.Status.Final() || (done != nil && done(run, steps)) {
			return run, steps, nil
		}
		select {
		case <-ctx.Done():
			return run, steps, ctx.Err()
		case <-ch:
		case <-ticker.C:
		}
	}
}

type errorHandler struct{ log *slog.Logger }

func (h *errorHandler) HandleError(ctx context.Context, job *rivertype.JobRow, err error) *river.ErrorHandlerResult {
	h.log.Error("job failed; River will retry it", "kind", job.Kind, "job", job.ID, "attempt", job.Attempt, "error", err)
	return nil
}

func (h *errorHandler) HandlePanic(ctx context.Context, job *rivertype.JobRow, panicVal any, trace string) *river.ErrorHandlerResult {
	h.log.Error("job panicked; River will retry it", "kind", job.Kind, "job", job.ID, "attempt", job.Attempt, "panic", fmt.Sprint(panicVal))
	return nil
}
