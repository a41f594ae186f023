package gateway

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/moatproject/moat/internal/connectors"
)

// The Limit stage (DESIGN.md, gateway step 7): rate (requests and tokens per
// minute) and budget (cost) per API key, workflow and connector.
//
// The Limiter keeps its state in memory, on one node. Sharing limits and
// spend between several nodes (through the store) comes later; until then
// each node enforces its own limits.

var (
	// ErrRateLimited: a requests- or tokens-per-minute limit of Moat itself
	// (not the upstream's) is reached; LimitError.RetryAfter says when it
	// refills.
	ErrRateLimited = errors.New("gateway: rate limit reached")
	// ErrBudgetExceeded: a scope has spent its budget for the period.
	ErrBudgetExceeded = errors.New("gateway: budget exceeded")
	// ErrNoPrice: a budget applies but the model is not in the price table
	// (and not marked free), so its cost cannot be counted: the call fails
	// closed.
	ErrNoPrice = errors.New("gateway: no price for model")
	// ErrTooManyScopes: the limiter tracks as many scopes as it may and
	// none is idle enough to forget.
	ErrTooManyScopes = errors.New("gateway: too many limit scopes")
)

// Scope is one thing limits apply to: Kind "key", "workflow" or
// "connector" (any kind configured in LimiterConfig.Kinds), ID its name.
type Scope struct {
	Kind string
	ID   string
}

func (s Scope) String() string { return s.Kind + ":" + s.ID }

// Period is what a budget is counted over, in UTC.
type Period string

const (
	Month Period = "month" // calendar month
	Day   Period = "day"
)

// Limits of one scope. A zero field is no limit.
type Limits struct {
	RequestsPerMinute int
	TokensPerMinute   int
	// Budget in micro-dollars per BudgetPeriod (Month when empty).
	Budget       int64
	BudgetPeriod Period
}

// Price of a model in micro-dollars per million tokens; $3 per million
// input tokens is InputPerMillion: 3_000_000. Free marks a model whose calls
// cost nothing (a local model), so budgets allow it without a price.
type Price struct {
	InputPerMillion  int64
	OutputPerMillion int64
	Free             bool
}

// Cost of a usage in micro-dollars, rounded up so that many small calls are
// never free.
func (p Price) Cost(u connectors.Usage) int64 {
	if p.Free {
		return 0
	}
	n := int64(max(u.PromptTokens, 0))*p.InputPerMillion + int64(max(u.CompletionTokens, 0))*p.OutputPerMillion
	return (n + 999_999) / 1_000_000
}

// LimiterConfig configures a Limiter. It is read once, by NewLimiter.
type LimiterConfig struct {
	// Kinds holds the limits of every scope of a kind; a scope whose kind
	// is absent has no limits.
	Kinds map[string]Limits
	// Overrides replace, for one scope, the limits of its kind (all of
	// them: an override with a zero field lifts that limit).
	Overrides map[Scope]Limits
	// Prices per model name, as the upstream is asked for it.
	Prices map[string]Price
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// IdleAfter is how long a scope stays untouched before its state may
	// be forgotten (only when forgetting loses nothing: no call in flight,
	// buckets full, nothing spent in the current period). Default 10 min.
	IdleAfter time.Duration
	// MaxScopes bounds the scopes tracked at once; beyond it Reserve fails
	// closed with ErrTooManyScopes. Default 100,000.
	MaxScopes int
}

// LimitError says which scope's which limit refused a call.
type LimitError struct {
	Scope Scope
	// Limit is "requests_per_minute", "tokens_per_minute" or "budget".
	Limit string
	// RetryAfter is when a rate limit will have refilled enough for this
	// call; zero for budgets and for calls larger than the limit itself.
	RetryAfter time.Duration
	Err        error // ErrRateLimited or ErrBudgetExceeded
}

func (e *LimitError) Error() string {
	msg := fmt.Sprintf("%s: %s of %s", e.Err.Error(), e.Limit, e.Scope)
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(", retry after %s", e.RetryAfter.Round(time.Millisecond))
	}
	return msg
}

func (e *LimitError) Unwrap() error { return e.Err }

// Limiter enforces Limits per scope. It is safe for concurrent use.
type Limiter struct {
	cfg LimiterConfig

	mu        sync.Mutex
	scopes    map[Scope]*scopeState
	lastSweep time.Time
}

// NewLimiter returns a limiter with cfg.
func NewLimiter(cfg LimiterConfig) *Limiter {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdleAfter <= 0 {
		cfg.IdleAfter = 10 * time.Minute
	}
	if cfg.MaxScopes <= 0 {
		cfg.MaxScopes = 100_000
	}
	return &Limiter{cfg: cfg, scopes: map[Scope]*scopeState{}}
}

// bucket is a token bucket refilled continuously at capacity per minute.
// Its level may go below zero when a call used more than it reserved: the
// debt delays the following calls.
type bucket struct {
	capacity float64
	level    float64
	at       time.Time
}

func newBucket(perMinute int, now time.Time) *bucket {
	if perMinute <= 0 {
		return nil
	}
	return &bucket{capacity: float64(perMinute), level: float64(perMinute), at: now}
}

func (b *bucket) refill(now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.level = math.Min(b.capacity, b.level+d.Minutes()*b.capacity)
		b.at = now
	}
}

// wait is how long until n fits; ok is false when n never fits.
func (b *bucket) wait(n float64) (d time.Duration, ok bool) {
	if n > b.capacity {
		return 0, false
	}
	if b.level >= n {
		return 0, true
	}
	minutes := (n - b.level) / b.capacity
	return time.Duration(math.Ceil(minutes * float64(time.Minute))), true
}

func (b *bucket) give(n float64) { b.level = math.Min(b.capacity, b.level+n) }

type scopeState struct {
	limits   Limits
	requests *bucket
	tokens   *bucket

	periodStart time.Time // of the budget's current period
	spent       int64     // micro-dollars in the current period
	reserved    int64     // micro-dollars held by calls in flight

	inFlight int
	lastUsed time.Time
}

func periodStart(p Period, t time.Time) time.Time {
	t = t.UTC()
	if p == Day {
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// advance refills the buckets and starts a new budget period when one began.
func (s *scopeState) advance(now time.Time) {
	if s.requests != nil {
		s.requests.refill(now)
	}
	if s.tokens != nil {
		s.tokens.refill(now)
	}
	if s.limits.Budget > 0 {
		if p := periodStart(s.limits.BudgetPeriod, now); p.After(s.periodStart) {
			s.periodStart, s.spent = p, 0
		}
	}
}

// forgettable: dropping the state loses nothing, since a fresh one would be
// the same.
func (s *scopeState) forgettable(now time.Time, idle time.Duration) bool {
	if s.inFlight > 0 || now.Sub(s.lastUsed) < idle {
		return false
	}
	s.advance(now)
	full := func(b *bucket) bool { return b == nil || b.level >= b.capacity }
	return full(s.requests) && full(s.tokens) && s.spent == 0 && s.reserved == 0
}

func (l *Limiter) limitsOf(sc Scope) (Limits, bool) {
	if lim, ok := l.cfg.Overrides[sc]; ok {
		return lim, true
	}
	lim, ok := l.cfg.Kinds[sc.Kind]
	return lim, ok
}

// state returns the scope's state, creating it; nil when the scope has no
// limits. Called with l.mu held.
func (l *Limiter) state(sc Scope, now time.Time) (*scopeState, error) {
	if s, ok := l.scopes[sc]; ok {
		return s, nil
	}
	lim, ok := l.limitsOf(sc)
	if !ok || (lim.RequestsPerMinute <= 0 && lim.TokensPerMinute <= 0 && lim.Budget <= 0) {
		return nil, nil
	}
	if len(l.scopes) >= l.cfg.MaxScopes {
		l.sweep(now)
		if len(l.scopes) >= l.cfg.MaxScopes {
			return nil, fmt.Errorf("gateway: limit %s: %w (%d)", sc, ErrTooManyScopes, l.cfg.MaxScopes)
		}
	}
	s := &scopeState{
		limits:   lim,
		requests: newBucket(lim.RequestsPerMinute, now),
		tokens:   newBucket(lim.TokensPerMinute, now),
		lastUsed: now,
	}
	if lim.Budget > 0 {
		s.periodStart = periodStart(lim.BudgetPeriod, now)
	}
	l.scopes[sc] = s
	return s, nil
}

// sweep forgets idle scopes. Called with l.mu held.
func (l *Limiter) sweep(now time.Time) {
	l.lastSweep = now
	for sc, s := range l.scopes {
		if s.forgettable(now, l.cfg.IdleAfter) {
			delete(l.scopes, sc)
		}
	}
}

// Reservation holds what Reserve took until the call is settled with
// Commit or Cancel (exactly one of them; later calls do nothing).
type Reservation struct {
	l      *Limiter
	price  Price
	tokens int
	cost   int64
	states []*scopeState
	done   bool
}

// Reserve checks every scope's limits for one call to model with about
// estimatedPromptTokens of prompt and, only when all of them allow it, takes
// one request, the estimated tokens and the estimated cost (the prompt at
// the input price) from each: all or nothing. A refusal is a *LimitError
// wrapping ErrRateLimited or ErrBudgetExceeded; budgets are reported before
// rate limits, and among rate limits the one that refills last.
//
// A budget can be overshot by the calls in flight when it is reached, since
// the answer's length is known only at Commit; the next call is refused.
func (l *Limiter) Reserve(scopes []Scope, model string, estimatedPromptTokens int) (*Reservation, error) {
	estimatedPromptTokens = max(estimatedPromptTokens, 0)
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= l.cfg.IdleAfter {
		l.sweep(now)
	}

	r := &Reservation{l: l, tokens: estimatedPromptTokens}
	price, priced := l.cfg.Prices[model]
	r.price = price
	states := make([]*scopeState, 0, len(scopes))
	if priced {
		r.cost = price.Cost(connectors.Usage{PromptTokens: estimatedPromptTokens})
	}
	var budgetErr, rateErr *LimitError
	rateNever := false
	for _, sc := range scopes {
		s, err := l.state(sc, now)
		if err != nil {
			return nil, err
		}
		if s == nil || containsState(states, s) {
			continue
		}
		states = append(states, s)
		s.advance(now)
		if s.limits.Budget > 0 {
			if !priced {
				return nil, fmt.Errorf("gateway: limit %s: budget set and %w %q (add it to the price table, or mark it free)", sc, ErrNoPrice, model)
			}
			if budgetErr == nil && s.spent+s.reserved+r.cost > s.limits.Budget {
				budgetErr = &LimitError{Scope: sc, Limit: "budget", Err: ErrBudgetExceeded}
			}
		}
		check := func(b *bucket, n float64, limit string) {
			if b == nil {
				return
			}
			d, ok := b.wait(n)
			if ok && d == 0 {
				return
			}
			// A call larger than a limit never fits: report that first,
			// else the limit that refills last.
			if rateErr == nil || (!ok && !rateNever) || (ok && !rateNever && d > rateErr.RetryAfter) {
				rateErr, rateNever = &LimitError{Scope: sc, Limit: limit, RetryAfter: d, Err: ErrRateLimited}, !ok
			}
		}
		check(s.requests, 1, "requests_per_minute")
		check(s.tokens, float64(estimatedPromptTokens), "tokens_per_minute")
	}
	if budgetErr != nil {
		return nil, budgetErr
	}
	if rateErr != nil {
		return nil, rateErr
	}
	for _, s := range states {
		if s.requests != nil {
			s.requests.level--
		}
		if s.tokens != nil {
			s.tokens.level -= float64(estimatedPromptTokens)
		}
		if s.limits.Budget > 0 {
			s.reserved += r.cost
		}
		s.inFlight++
		s.lastUsed = now
	}
	r.states = states
	return r, nil
}

func containsState(states []*scopeState, s *scopeState) bool {
	for _, x := range states {
		if x == s {
			return true
		}
	}
	return false
}

// Cost is the estimated cost held by the reservation, in micro-dollars.
func (r *Reservation) Cost() int64 { return r.cost }

// Commit settles a call that reached the upstream (answered or not): the
// tokens it used (prompt and completion) replace the estimate in the
// token buckets, and its cost is spent from the budgets in place of the
// estimate. It returns the cost in micro-dollars (0 for a model without a
// price, when no budget applied).
func (r *Reservation) Commit(actual connectors.Usage) int64 {
	if r == nil {
		return 0
	}
	l := r.l
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.done {
		return 0
	}
	r.done = true
	cost := r.price.Cost(actual)
	used := float64(max(actual.PromptTokens, 0) + max(actual.CompletionTokens, 0))
	for _, s := range r.states {
		s.advance(now)
		if s.tokens != nil {
			if diff := used - float64(r.tokens); diff > 0 {
				s.tokens.level -= diff
			} else {
				s.tokens.give(-diff)
			}
		}
		if s.limits.Budget > 0 {
			s.reserved -= r.cost
			s.spent += cost
		}
		s.inFlight--
		s.lastUsed = now
	}
	return cost
}

// Cancel gives back everything Reserve took (the request, the tokens and the
// cost): for a call that never reached the upstream, such as one a later
// stage blocked. A call that reached it is settled with Commit, even with a
// zero usage, so that it counts as a request.
func (r *Reservation) Cancel() {
	if r == nil {
		return
	}
	l := r.l
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.done {
		return
	}
	r.done = true
	for _, s := range r.states {
		s.advance(now)
		if s.requests != nil {
			s.requests.give(1)
		}
		if s.tokens != nil {
			s.tokens.give(float64(r.tokens))
		}
		if s.limits.Budget > 0 {
			s.reserved -= r.cost
		}
		s.inFlight--
		s.lastUsed = now
	}
}
