package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/moatproject/moat/internal/connectors"
)

// Gateway runs every AI call through the pipeline of DESIGN.md: Who, Shape,
// Minimise, Classify, Decide, Transform, Limit, Call, Check, Restore,
// Record. Every stage fails closed: a stage that cannot decide, or panics,
// stops the call, and the call is still recorded.
//
// The catalog is rebuilt only by an explicit Reload (the API calls it after
// every change it applies). Nodes sharing a Postgres store see another
// node's changes on their next Reload; a gateway never re-reads resources
// behind its callers' backs, so a call's route is what the last Reload built.
type Gateway struct {
	cfg     Config
	catalog atomic.Pointer[Catalog]
	// reloadMu makes reloads one at a time, so an older load never
	// replaces a newer one.
	reloadMu sync.Mutex
	// One limiter and one caller for the gateway's life: limits, spend and
	// circuit breakers are shared by every call and survive reloads.
	limiter *Limiter
	caller  *Caller
}

// New returns a gateway; it builds the catalog from cfg.Resources. A
// gateway needs a resource store and a recorder (no call goes unrecorded);
// the other fields have defaults: DefaultPolicy, os.Getenv, 1 MiB prompts,
// time.Now, and a random HashKey for this process when none is given (hash
// digests then agree only within the process).
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	if cfg.Resources == nil {
		return nil, errors.New("gateway: new: a resource store is required")
	}
	if cfg.Recorder == nil {
		return nil, errors.New("gateway: new: a recorder is required: calls that cannot be recorded are not made")
	}
	if cfg.MaxPromptBytes < 0 {
		return nil, fmt.Errorf("gateway: new: MaxPromptBytes is %d; want 0 (1 MiB) or more", cfg.MaxPromptBytes)
	}
	if cfg.MaxPromptBytes == 0 {
		cfg.MaxPromptBytes = defaultPromptBytes
	}
	if cfg.Policy == nil {
		cfg.Policy = DefaultPolicy()
	}
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.HashKey) == 0 {
		cfg.HashKey = make([]byte, 32)
		_, _ = rand.Read(cfg.HashKey) // crypto/rand.Read never fails; it crashes the program instead
	}
	for kind, lim := range cfg.Limits {
		if lim.RequestsPerMinute < 0 || lim.TokensPerMinute < 0 || lim.Budget < 0 {
			return nil, fmt.Errorf("gateway: new: limits of %q: negative values are not limits", kind)
		}
	}
	g := &Gateway{
		cfg: cfg,
		limiter: NewLimiter(LimiterConfig{
			Kinds:     maps.Clone(cfg.Limits),
			Overrides: map[Scope]Limits{},
			Prices:    map[string]Price{},
			Now:       cfg.Now,
		}),
		caller: NewCaller(cfg.Caller),
	}
	if err := g.load(ctx); err != nil {
		return nil, fmt.Errorf("gateway: new: %w", err)
	}
	return g, nil
}

// Reload rebuilds the catalog from the resource store (after an apply). A
// failed rebuild keeps the catalog in use and returns the error.
func (g *Gateway) Reload(ctx context.Context) error {
	if err := g.load(ctx); err != nil {
		return fmt.Errorf("gateway: reload: %w", err)
	}
	return nil
}

// load builds the catalog from the resource store and puts it in use.
func (g *Gateway) load(ctx context.Context) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	res, err := g.cfg.Resources.LoadResources(ctx)
	if err != nil {
		return fmt.Errorf("load resources: %w", err)
	}
	cat, err := BuildCatalog(res, CatalogOptions{
		Environment: g.cfg.Environment,
		HTTPClient:  g.cfg.HTTPClient,
		DataDir:     g.cfg.DataDir,
		Getenv:      g.cfg.Getenv,
		Secrets:     g.cfg.Secrets,
	})
	if err != nil {
		return err
	}
	g.catalog.Store(cat)
	return nil
}

// Catalog is the current catalog.
func (g *Gateway) Catalog() *Catalog { return g.catalog.Load() }

// BreakerState names a target's circuit state (see Caller.BreakerState).
func (g *Gateway) BreakerState(target string) string { return g.caller.BreakerState(target) }

// Chat runs one call through every stage and returns the checked,
// restored answer, or an *Error. The Result's Record is filled as far as
// the call got, on failure too.
func (g *Gateway) Chat(ctx context.Context, req Request) (Result, error) {
	return g.run(ctx, &req, nil)
}

// ChatStream is Chat for a streamed answer: each receives restored text,
// in order, only after it has passed the checks so far.
//
// The target's connector streams when it can (connectors.Streamer); one
// that cannot answers whole, and each gets the whole answer at once. Retries
// and fallback happen only before the first piece reached each; after it,
// an upstream failure ends the stream with CodeUnavailable. Pieces are
// emitted only up to the point the canary, secret, new-PII and unknown-token
// checks have passed, less a hold-back window, and the rest after the final
// full check (and after the call is recorded); a check that fails mid-stream stops it before the offending text
// leaves. With a Schema or Labels the answer is judged whole, so it is
// emitted once, after the check. Text emitted before a failure cannot be
// recalled: when the record cannot be written, only what was still held
// back is withheld.
func (g *Gateway) ChatStream(ctx context.Context, req Request, each func(text string) error) (Result, error) {
	if each == nil {
		return Result{}, errors.New("gateway: chat stream: no receiver for the stream")
	}
	return g.run(ctx, &req, each)
}

// run is one call: the stages, then the record, whatever happened.
func (g *Gateway) run(ctx context.Context, req *Request, each func(string) error) (Result, error) {
	start := g.cfg.Now()
	c := &call{
		g:     g,
		req:   req,
		each:  each,
		stage: "who",
		rec: Record{
			RequestID:   NewRequestID(),
			Time:        start.UTC(),
			Identity:    req.Identity,
			Environment: g.cfg.Environment,
		},
	}
	res, err := c.stages(ctx)
	return c.finish(ctx, start, res, err)
}

// call is the state of one call through the stages.
type call struct {
	g     *Gateway
	req   *Request
	each  func(string) error // nil unless streaming
	stage string             // the stage running, for errors and panics
	rec   Record

	route    Route
	schema   *jsonschema.Schema
	units    []*unit
	tokens   *Tokenizer
	canary   Canary
	gate     *streamGate
	sent     []connectors.Message
	examples []connectors.Example // as sent
}

// stages runs the stages in order; a panic in any of them fails the call
// closed with CodeInternal.
func (c *call) stages(ctx context.Context) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			res = Result{Sent: c.sent}
			// The panic's value may hold payload: only its type is named.
			err = &Error{Stage: c.stage, Code: CodeInternal,
				Message: fmt.Sprintf("the %s stage failed unexpectedly (a panic of type %T); the call failed closed", c.stage, p)}
		}
	}()

	// 1. Who.
	c.stage = "who"
	if e := checkIdentity(c.req.Identity); e != nil {
		return Result{}, e
	}
	if err := c.resolve(); err != nil {
		return Result{}, err
	}

	// 2. Shape.
	c.stage = "shape"
	sch, e := checkShape(c.req, c.g.cfg.MaxPromptBytes)
	if e != nil {
		return Result{}, e
	}
	c.schema = sch

	// 3. Minimise: only the request's messages, data items and examples
	// leave, and only as the stages below transform them; the identity,
	// labels for restoring and everything else stay here. A workflow node
	// renders only the fields its step references into the request, so
	// what a step did not name never reaches this point.

	// 4. Classify.
	c.stage = "classify"
	if err := c.classify(); err != nil {
		return Result{}, err
	}

	// 5. Decide and 6. Transform.
	c.stage = "transform"
	creq, err := c.transform(ctx)
	if err != nil {
		return Result{}, err
	}
	if c.req.Prepared != nil {
		c.req.Prepared(c.rec)
	}

	// 7. Limit, 8. Call, 9. Check (with one repair round).
	resp, cr, err := c.callAndCheck(ctx, creq)
	if err != nil {
		return Result{Sent: c.sent}, err
	}

	// 10. Restore.
	c.stage = "restore"
	allow := c.restoreAllowed()
	content, _ := c.tokens.Restore(resp.Content, allow)
	out := Result{Content: content, Sent: c.sent, Received: resp.Content}
	switch {
	case c.schema != nil:
		out.Value = restoreValue(cr.Value, c.tokens, allow)
	case len(c.req.Labels) > 0:
		out.Value = cr.Value
	}
	return out, nil
}

// resolve finds the route (part of Who: the catalog holds only what this
// environment may use).
func (c *call) resolve() error {
	cat := c.g.catalog.Load()
	var (
		route Route
		err   error
	)
	if c.req.Connector != "" {
		route, err = cat.Resolve("", c.req.Connector, c.req.Model)
	} else {
		route, err = cat.Resolve(c.req.Model, "", "")
	}
	if err != nil {
		var ge *Error
		if errors.As(err, &ge) {
			return ge
		}
		return &Error{Stage: "who", Code: CodeUnknownModel, Message: "the model could not be resolved", Err: err}
	}
	if len(route.Targets) == 0 {
		return &Error{Stage: "who", Code: CodeUnknownModel, Message: "the model has no target usable here"}
	}
	c.route = route
	first := route.Targets[0]
	c.rec.Alias = route.Alias
	c.rec.Connector, c.rec.Vendor, c.rec.Model = first.ConnectorName, first.Vendor.Name, first.Model
	return nil
}

// restoreAllowed says which classes' tokens go back to the caller:
// everything tokenised when RestoreAll (every token this tokenizer holds
// stands for a value of this caller's run), else the classes listed.
func (c *call) restoreAllowed() func(class string) bool {
	if c.req.RestoreAll {
		return func(string) bool { return true }
	}
	set := make(map[string]bool, len(c.req.Restore))
	for _, cl := range c.req.Restore {
		set[cl] = true
	}
	return func(class string) bool { return set[class] }
}

// restoreValue restores tokens in every string leaf of a JSON value.
func restoreValue(v any, tok *Tokenizer, allow func(string) bool) any {
	switch x := v.(type) {
	case string:
		s, _ := tok.Restore(x, allow)
		return s
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = restoreValue(e, tok, allow)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = restoreValue(e, tok, allow)
		}
		return out
	}
	return v
}

// finish completes the record and writes it; a call whose record cannot be
// written fails, and its answer is not returned.
func (c *call) finish(ctx context.Context, start time.Time, res Result, err error) (Result, error) {
	rec := c.rec
	rec.Latency = c.g.cfg.Now().Sub(start)
	var waited time.Duration
	for _, a := range rec.Attempts {
		// Waiting on the upstream, or for it (a retry's backoff), is not
		// the gateway's own time.
		waited += a.Waited + a.Backoff
	}
	rec.Overhead = max(rec.Latency-waited, 0)
	var ge *Error
	if err != nil {
		if !errors.As(err, &ge) {
			ge = &Error{Stage: c.stage, Code: CodeInternal, Message: "the " + c.stage + " stage failed; the call failed closed", Err: err}
		}
		rec.Outcome, rec.Error = ge.Code, ge.Message
	} else {
		rec.Outcome = "ok"
	}
	if werr := writeRecord(ctx, c.g.cfg.Recorder, rec); werr != nil {
		fail := &Error{Stage: "record", Code: CodeInternal, Message: "the call's audit record could not be written; the call failed closed", Err: werr}
		rec.Outcome, rec.Error = fail.Code, fail.Message
		return Result{Sent: res.Sent, Record: rec}, fail
	}
	if ge != nil {
		return Result{Sent: res.Sent, Record: rec}, ge
	}
	res.Record = rec
	res.Overhead = max(c.g.cfg.Now().Sub(start)-waited, 0)
	if c.gate != nil {
		// The stream's last, held-back piece leaves only once the call is
		// recorded.
		if err := c.gate.finish(); err != nil {
			return Result{Sent: res.Sent, Record: rec}, err
		}
	}
	return res, nil
}
