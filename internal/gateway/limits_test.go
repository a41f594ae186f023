package gateway

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/connectors"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	keyA  = Scope{Kind: "key", ID: "tok_1"}
	keyB  = Scope{Kind: "key", ID: "tok_2"}
	wfX   = Scope{Kind: "workflow", ID: "wf_x"}
	connS = Scope{Kind: "connector", ID: "support-llm"}
)

// step is one Reserve (and optional settlement) in a limiter scenario.
type step struct {
	advance   time.Duration
	scopes    []Scope
	model     string
	tokens    int
	wantErr   error  // nil: the reservation succeeds
	wantLimit string // for a *LimitError
	wantScope Scope
	wantRetry time.Duration
	commit    *connectors.Usage // settle with Commit
	cancel    bool              // settle with Cancel
	wantCost  int64             // Commit's result
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	prices := map[string]Price{
		"m":     {InputPerMillion: 1_000_000, OutputPerMillion: 2_000_000}, // 1 µ$ and 2 µ$ a token
		"local": {Free: true},
	}
	use := func(p, c int) *connectors.Usage { return &connectors.Usage{PromptTokens: p, CompletionTokens: c} }
	start := time.Date(2026, 1, 31, 23, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		cfg   LimiterConfig
		steps []step
	}{
		{
			name: "requests per minute per scope, refilled continuously",
			cfg:  LimiterConfig{Kinds: map[string]Limits{"key": {RequestsPerMinute: 2}}},
			steps: []step{
				{scopes: []Scope{keyA}},
				{scopes: []Scope{keyA}},
				{scopes: []Scope{keyA}, wantErr: ErrRateLimited, wantLimit: "requests_per_minute", wantScope: keyA, wantRetry: 30 * time.Second},
				{scopes: []Scope{keyB}}, // another key has its own bucket
				{advance: 29 * time.Second, scopes: []Scope{keyA}, wantErr: ErrRateLimited, wantLimit: "requests_per_minute", wantScope: keyA, wantRetry: time.Second},
				{advance: time.Second, scopes: []Scope{keyA}},
				{scopes: []Scope{keyA}, wantErr: ErrRateLimited, wantLimit: "requests_per_minute", wantScope: keyA, wantRetry: 30 * time.Second},
			},
		},
		{
			name: "per-ID override replaces the kind's limits",
			cfg: LimiterConfig{
				Kinds:     map[string]Limits{"key": {RequestsPerMinute: 1}},
				Overrides: map[Scope]Limits{keyB: {RequestsPerMinute: 3}},
			},
			steps: []step{
				{scopes: []Scope{keyA}},
				{scopes: []Scope{keyA}, wantErr: ErrRateLimited, wantLimit: "requests_per_minute", wantScope: keyA, wantRetry: time.Minute},
				{scopes: []Scope{keyB}},
				{scopes: []Scope{keyB}},
				{scopes: []Scope{keyB}},
				{scopes: []Scope{keyB}, wantErr: ErrRateLimited, wantLimit: "requests_per_minute", wantScope: keyB, wantRetry: 20 * time.Second},
			},
		},
		{
			name: "tokens per minute",
			cfg:  LimiterConfig{Kinds: map[string]Limits{"connector": {TokensPerMinute: 1000}}},
			steps: []step{
				{scopes: []Scope{connS}, tokens: 600},
				{scopes: []Scope{connS}, tokens: 600, wantErr: ErrRateLimited, wantLimit: "tokens_per_minute", wantScope: connS, wantRetry: 12 * time.Second},
				{scopes: []Scope{connS}, tokens: 400},
				{scopes: []Scope{connS}, tokens: 2000, wantErr: ErrRateLimited, wantLimit: "tokens_per_minute", wantScope: connS}, // never fits: no RetryAfter
				{advance: 12 * time.Second, scopes: []Scope{connS}, tokens: 200},
			},
		},
		{
			name: "multi-scope reservation is all or nothing",
			cfg: LimiterConfig{Kinds: map[string]Limits{
				"key":      {RequestsPerMinute: 3},
				"workflow": {RequestsPerMinute: 1},
			}},
			steps: []step{
				{scopes: []Scope{keyA, wfX, connS}}, // connector kind has no limits
				{scopes: []Scope{keyA, wfX, connS}, wantErr: ErrRateLimited, wantLimit: "requests_per_minute", wantScope: wfX, wantRetry: time.Minute},
				{scopes: []Scope{keyA, wfX}, wantErr: ErrRateLimited, wantLimit: "requests_per_minute", wantScope: wfX, wantRetry: time.Minute},
				// the refusals took nothing from the key: two requests are left
				{scopes: []Scope{keyA}},
				{scopes: []Scope{keyA}},
				{scopes: []Scope{keyA}, wantErr: ErrRateLimited, wantLimit: "requests_per_minute", wantScope: keyA, wantRetry: 20 * time.Second},
			},
		},
		{
			name: "monthly budget from the price table, rolled over in UTC",
			cfg:  LimiterConfig{Kinds: map[string]Limits{"workflow": {Budget: 1000, BudgetPeriod: Month}}, Prices: prices},
			steps: []step{
				{scopes: []Scope{wfX}, model: "m", tokens: 400, commit: use(400, 100), wantCost: 600},
				{scopes: []Scope{wfX}, model: "m", tokens: 400, commit: use(400, 0), wantCost: 400},
				{scopes: []Scope{wfX}, model: "m", tokens: 1, wantErr: ErrBudgetExceeded, wantLimit: "budget", wantScope: wfX},
				{scopes: []Scope{wfX}, model: "local", tokens: 5000, commit: use(5000, 5000)}, // free models pass
				{advance: 59 * time.Minute, scopes: []Scope{wfX}, model: "m", tokens: 1, wantErr: ErrBudgetExceeded, wantLimit: "budget", wantScope: wfX},
				{advance: time.Minute, scopes: []Scope{wfX}, model: "m", tokens: 1000, commit: use(1000, 0), wantCost: 1000}, // February 1st
				{scopes: []Scope{wfX}, model: "m", tokens: 1, wantErr: ErrBudgetExceeded, wantLimit: "budget", wantScope: wfX},
			},
		},
		{
			name: "daily budget",
			cfg:  LimiterConfig{Kinds: map[string]Limits{"key": {Budget: 10, BudgetPeriod: Day}}, Prices: prices},
			steps: []step{
				{scopes: []Scope{keyA}, model: "m", tokens: 10, commit: use(10, 0), wantCost: 10},
				{scopes: []Scope{keyA}, model: "m", tokens: 1, wantErr: ErrBudgetExceeded, wantLimit: "budget", wantScope: keyA},
				{advance: time.Hour, scopes: []Scope{keyA}, model: "m", tokens: 10},
			},
		},
		{
			name: "budget counts reservations in flight",
			cfg:  LimiterConfig{Kinds: map[string]Limits{"key": {Budget: 100}}, Prices: prices},
			steps: []step{
				{scopes: []Scope{keyA}, model: "m", tokens: 60},
				{scopes: []Scope{keyA}, model: "m", tokens: 60, wantErr: ErrBudgetExceeded, wantLimit: "budget", wantScope: keyA},
				{scopes: []Scope{keyA}, model: "m", tokens: 40},
			},
		},
		{
			name: "commit refunds the estimate's excess",
			cfg:  LimiterConfig{Kinds: map[string]Limits{"key": {TokensPerMinute: 1000, Budget: 1500}}, Prices: prices},
			steps: []step{
				// estimated 800 tokens (800 µ$); used 200+100 (400 µ$)
				{scopes: []Scope{keyA}, model: "m", tokens: 800, commit: use(200, 100), wantCost: 400},
				{scopes: []Scope{keyA}, model: "m", tokens: 600}, // 700 tokens and 1100 µ$ were left
				{scopes: []Scope{keyA}, model: "m", tokens: 101, wantErr: ErrRateLimited, wantLimit: "tokens_per_minute", wantScope: keyA, wantRetry: 60 * time.Millisecond},
				{scopes: []Scope{keyA}, model: "m", tokens: 100},
				{advance: time.Minute, scopes: []Scope{keyA}, model: "m", tokens: 401, wantErr: ErrBudgetExceeded, wantLimit: "budget", wantScope: keyA},
				{scopes: []Scope{keyA}, model: "m", tokens: 400}, // the budget's last 400 µ$
			},
		},
		{
			name: "commit charges usage beyond the estimate",
			cfg:  LimiterConfig{Kinds: map[string]Limits{"key": {TokensPerMinute: 1000}}, Prices: prices},
			steps: []step{
				{scopes: []Scope{keyA}, model: "m", tokens: 100, commit: use(100, 1100), wantCost: 2300},
				// the bucket is 200 tokens in debt: one token waits 201/1000 of a minute
				{scopes: []Scope{keyA}, model: "m", tokens: 1, wantErr: ErrRateLimited, wantLimit: "tokens_per_minute", wantScope: keyA, wantRetry: 12060 * time.Millisecond},
			},
		},
		{
			name: "cancel gives everything back",
			cfg:  LimiterConfig{Kinds: map[string]Limits{"key": {RequestsPerMinute: 1, TokensPerMinute: 100, Budget: 100}}, Prices: prices},
			steps: []step{
				{scopes: []Scope{keyA}, model: "m", tokens: 100, cancel: true},
				{scopes: []Scope{keyA}, model: "m", tokens: 100},
			},
		},
		{
			name: "unknown model with a budget fails closed",
			cfg: LimiterConfig{Kinds: map[string]Limits{
				"key":       {RequestsPerMinute: 5},
				"workflow":  {Budget: 1_000_000},
				"connector": {RequestsPerMinute: 5},
			}, Prices: prices},
			steps: []step{
				{scopes: []Scope{keyA}, model: "mystery"}, // no budget applies
				{scopes: []Scope{keyA, wfX}, model: "mystery", wantErr: ErrNoPrice},
				{scopes: []Scope{wfX}, model: "local"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock(start)
			tt.cfg.Now = clock.Now
			l := NewLimiter(tt.cfg)
			for i, s := range tt.steps {
				clock.Advance(s.advance)
				r, err := l.Reserve(s.scopes, s.model, s.tokens)
				if s.wantErr == nil {
					if err != nil {
						t.Fatalf("step %d: Reserve: %v", i, err)
					}
				} else {
					if !errors.Is(err, s.wantErr) {
						t.Fatalf("step %d: Reserve error %v, want %v", i, err, s.wantErr)
					}
					if s.wantLimit != "" {
						var le *LimitError
						if !errors.As(err, &le) {
							t.Fatalf("step %d: %v is not a *LimitError", i, err)
						}
						if le.Limit != s.wantLimit || le.Scope != s.wantScope || le.RetryAfter != s.wantRetry {
							t.Fatalf("step %d: got %s of %s retry %s, want %s of %s retry %s", i, le.Limit, le.Scope, le.RetryAfter, s.wantLimit, s.wantScope, s.wantRetry)
						}
					}
					continue
				}
				switch {
				case s.commit != nil:
					if got := r.Commit(*s.commit); got != s.wantCost {
						t.Fatalf("step %d: Commit cost %d, want %d", i, got, s.wantCost)
					}
					if got := r.Commit(*s.commit); got != 0 {
						t.Fatalf("step %d: a second Commit charged %d", i, got)
					}
				case s.cancel:
					r.Cancel()
					r.Cancel() // a second one gives nothing more
				}
			}
		})
	}
}

func TestLimitErrorNamesScopeAndLimit(t *testing.T) {
	t.Parallel()
	err := error(&LimitError{Scope: keyA, Limit: "requests_per_minute", RetryAfter: 1500 * time.Millisecond, Err: ErrRateLimited})
	want := "gateway: rate limit reached: requests_per_minute of key:tok_1, retry after 1.5s"
	if err.Error() != want {
		t.Fatalf("got %q, want %q", err, want)
	}
	if !errors.Is(err, ErrRateLimited) || errors.Is(err, ErrBudgetExceeded) {
		t.Fatal("LimitError wraps the wrong sentinel")
	}
}

func TestPriceCostRoundsUp(t *testing.T) {
	t.Parallel()
	p := Price{InputPerMillion: 150_000, OutputPerMillion: 600_000} // $0.15 and $0.60 per million
	for _, tt := range []struct {
		u    connectors.Usage
		want int64
	}{
		{connectors.Usage{}, 0},
		{connectors.Usage{PromptTokens: 1}, 1},
		{connectors.Usage{PromptTokens: 1_000_000, CompletionTokens: 1_000_000}, 750_000},
		{connectors.Usage{PromptTokens: -5}, 0},
	} {
		if got := p.Cost(tt.u); got != tt.want {
			t.Errorf("Cost(%+v) = %d, want %d", tt.u, got, tt.want)
		}
	}
}

func TestLimiterForgetsIdleScopesOnly(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	l := NewLimiter(LimiterConfig{
		Kinds:     map[string]Limits{"key": {RequestsPerMinute: 10}, "workflow": {Budget: 100}},
		Prices:    map[string]Price{"m": {InputPerMillion: 1_000_000}},
		Now:       clock.Now,
		IdleAfter: time.Minute,
		MaxScopes: 4,
	})
	for i := range 3 {
		r, err := l.Reserve([]Scope{{Kind: "key", ID: fmt.Sprint(i)}}, "m", 0)
		if err != nil {
			t.Fatal(err)
		}
		r.Commit(connectors.Usage{})
	}
	spent, err := l.Reserve([]Scope{wfX}, "m", 60)
	if err != nil {
		t.Fatal(err)
	}
	spent.Commit(connectors.Usage{PromptTokens: 60})
	// Full: a fifth scope is refused, since none is idle yet.
	if _, err := l.Reserve([]Scope{keyB}, "m", 0); !errors.Is(err, ErrTooManyScopes) {
		t.Fatalf("fifth scope: %v, want ErrTooManyScopes", err)
	}
	clock.Advance(2 * time.Minute)
	if _, err := l.Reserve([]Scope{keyB}, "m", 0); err != nil {
		t.Fatalf("after idling: %v", err)
	}
	l.mu.Lock()
	n := len(l.scopes)
	_, kept := l.scopes[wfX]
	l.mu.Unlock()
	if n != 2 || !kept {
		t.Fatalf("tracking %d scopes (workflow kept: %v), want 2: the new key and the workflow with spend", n, kept)
	}
	// The workflow's spend survived the sweep.
	if _, err := l.Reserve([]Scope{wfX}, "m", 41); !errors.Is(err, ErrBudgetExceeded) {
		t.Fatalf("spend forgotten: %v", err)
	}
}

func TestLimiterConcurrent(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	l := NewLimiter(LimiterConfig{
		Kinds:  map[string]Limits{"key": {RequestsPerMinute: 100}, "workflow": {RequestsPerMinute: 1000, Budget: 1 << 40}},
		Prices: map[string]Price{"m": {InputPerMillion: 1_000_000}},
		Now:    clock.Now,
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				r, err := l.Reserve([]Scope{keyA, wfX}, "m", 10)
				if err != nil {
					if !errors.Is(err, ErrRateLimited) {
						t.Error(err)
					}
					continue
				}
				mu.Lock()
				granted++
				mu.Unlock()
				if (g+i)%2 == 0 {
					r.Commit(connectors.Usage{PromptTokens: 10, CompletionTokens: 5})
				} else {
					r.Commit(connectors.Usage{})
				}
			}
		})
	}
	wg.Wait()
	if granted != 100 {
		t.Fatalf("granted %d requests, want exactly the key's 100 per minute", granted)
	}
}
