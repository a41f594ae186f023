package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/connectors"
)

// scripted is a fake connector answering from a script, one entry per call;
// past its end it repeats the last entry.
type scripted struct {
	mu     sync.Mutex
	script []error // nil: an answer
	calls  int
	models []string
	onCall func() // run during each call (to cancel a context, move a clock)
}

func (s *scripted) Kind() string { return "fake" }

func (s *scripted) Chat(ctx context.Context, req connectors.Request) (connectors.Response, error) {
	s.mu.Lock()
	i := min(s.calls, len(s.script)-1)
	s.calls++
	s.models = append(s.models, req.Model)
	s.mu.Unlock()
	if s.onCall != nil {
		s.onCall()
	}
	if err := s.script[i]; err != nil {
		return connectors.Response{}, err
	}
	return connectors.Response{Content: "ok from " + req.Model, Model: req.Model}, nil
}

func (s *scripted) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func upErr(kind error, retryAfter time.Duration) error {
	return &connectors.UpstreamError{Kind: kind, Status: 503, RetryAfter: retryAfter}
}

var (
	unavailable = upErr(connectors.ErrUnavailable, 0)
	limited     = upErr(connectors.ErrRateLimited, 0)
	rejected    = upErr(connectors.ErrRejected, 0)
	malformed   = upErr(connectors.ErrMalformed, 0)
)

// fakeSleep records waits without waiting, moving the clock instead.
type fakeSleep struct {
	mu     sync.Mutex
	clock  *fakeClock
	slept  []time.Duration
	before func() // run before each wait
}

func (f *fakeSleep) Sleep(ctx context.Context, d time.Duration) error {
	if f.before != nil {
		f.before()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	f.slept = append(f.slept, d)
	f.mu.Unlock()
	f.clock.Advance(d)
	return nil
}

func newTestCaller(cfg CallerConfig) (*Caller, *fakeClock, *fakeSleep) {
	clock := newFakeClock(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	sl := &fakeSleep{clock: clock}
	cfg.Now, cfg.Sleep = clock.Now, sl.Sleep
	if cfg.Jitter == nil {
		cfg.Jitter = func() float64 { return 0.5 }
	}
	return NewCaller(cfg), clock, sl
}

func classes(rep CallReport) []ErrClass {
	var out []ErrClass
	for _, a := range rep.Attempts {
		out = append(out, ErrClass(a.Target+"/"+string(a.Err)))
	}
	return out
}

func TestCallRetriesAndFallsBack(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cfg         CallerConfig
		a, b        []error // scripts of targets "a" and "b"
		wantErr     error   // nil: an answer
		wantTarget  string
		wantAttempt []ErrClass
		wantSlept   []time.Duration
	}{
		{
			name: "retry then success, with full-jitter exponential backoff",
			cfg:  CallerConfig{BackoffBase: 100 * time.Millisecond, MaxAttemptsPerTarget: 3},
			a:    []error{unavailable, limited, nil}, b: []error{nil},
			wantTarget:  "a",
			wantAttempt: []ErrClass{"a/unavailable", "a/rate_limited", "a/"},
			wantSlept:   []time.Duration{50 * time.Millisecond, 100 * time.Millisecond},
		},
		{
			name: "backoff capped by BackoffMax",
			cfg:  CallerConfig{BackoffBase: time.Second, BackoffMax: 3 * time.Second, MaxAttemptsPerTarget: 4, MaxAttempts: 10},
			a:    []error{unavailable, unavailable, unavailable, nil}, b: []error{nil},
			wantTarget:  "a",
			wantAttempt: []ErrClass{"a/unavailable", "a/unavailable", "a/unavailable", "a/"},
			wantSlept:   []time.Duration{500 * time.Millisecond, time.Second, 1500 * time.Millisecond},
		},
		{
			name: "Retry-After honoured as a lower bound",
			cfg:  CallerConfig{BackoffBase: 100 * time.Millisecond, MaxRetryWait: 10 * time.Second},
			a:    []error{upErr(connectors.ErrRateLimited, 4*time.Second), nil}, b: []error{nil},
			wantTarget:  "a",
			wantAttempt: []ErrClass{"a/rate_limited", "a/"},
			wantSlept:   []time.Duration{4 * time.Second},
		},
		{
			name: "Retry-After beyond the cap falls back without sleeping",
			cfg:  CallerConfig{MaxRetryWait: 10 * time.Second},
			a:    []error{upErr(connectors.ErrRateLimited, time.Minute)}, b: []error{nil},
			wantTarget:  "b",
			wantAttempt: []ErrClass{"a/rate_limited", "b/"},
		},
		{
			name: "retries exhausted on one target fall back to the next",
			cfg:  CallerConfig{BackoffBase: 100 * time.Millisecond, MaxAttemptsPerTarget: 2},
			a:    []error{unavailable}, b: []error{nil},
			wantTarget:  "b",
			wantAttempt: []ErrClass{"a/unavailable", "a/unavailable", "b/"},
			wantSlept:   []time.Duration{50 * time.Millisecond},
		},
		{
			name:        "attempt timeout is retried",
			cfg:         CallerConfig{BackoffBase: 100 * time.Millisecond},
			a:           []error{context.DeadlineExceeded, nil},
			b:           []error{nil},
			wantTarget:  "a",
			wantAttempt: []ErrClass{"a/timeout", "a/"},
			wantSlept:   []time.Duration{50 * time.Millisecond},
		},
		{
			name:        "rejected: no retry and no fallback",
			a:           []error{rejected},
			b:           []error{nil},
			wantErr:     connectors.ErrRejected,
			wantAttempt: []ErrClass{"a/rejected"},
		},
		{
			name:        "malformed: no retry, but fallback",
			a:           []error{malformed},
			b:           []error{nil},
			wantTarget:  "b",
			wantAttempt: []ErrClass{"a/malformed", "b/"},
		},
		{
			name:        "unclassified error fails closed",
			a:           []error{errors.New("boom")},
			b:           []error{nil},
			wantErr:     errors.New("boom"), // checked by message below
			wantAttempt: []ErrClass{"a/other"},
		},
		{
			name:        "every target failing returns the last cause",
			cfg:         CallerConfig{MaxAttemptsPerTarget: 1},
			a:           []error{unavailable},
			b:           []error{malformed},
			wantErr:     connectors.ErrMalformed,
			wantAttempt: []ErrClass{"a/unavailable", "b/malformed"},
		},
		{
			name:        "attempts bounded across the chain",
			cfg:         CallerConfig{BackoffBase: 100 * time.Millisecond, MaxAttemptsPerTarget: 3, MaxAttempts: 4, BreakerThreshold: 100},
			a:           []error{unavailable},
			b:           []error{limited},
			wantErr:     ErrAttemptsExhausted,
			wantAttempt: []ErrClass{"a/unavailable", "a/unavailable", "a/unavailable", "b/rate_limited"},
			wantSlept:   []time.Duration{50 * time.Millisecond, 100 * time.Millisecond},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _, sl := newTestCaller(tt.cfg)
			a, b := &scripted{script: tt.a}, &scripted{script: tt.b}
			chain := []Target{{Name: "a", Connector: a, Model: "model-a"}, {Name: "b", Connector: b, Model: "model-b"}}
			resp, rep, err := c.Call(context.Background(), chain, connectors.Request{Model: "alias"})
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Call: %v", err)
			case tt.wantErr != nil && err == nil:
				t.Fatalf("Call answered %q, want error %v", resp.Content, tt.wantErr)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr) && !errorsContain(err, tt.wantErr.Error()):
				t.Fatalf("Call error %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil {
				if rep.Target != tt.wantTarget || resp.Content != "ok from model-"+tt.wantTarget || rep.Model != "model-"+tt.wantTarget {
					t.Fatalf("answered by %q (%q), want %q", rep.Target, resp.Content, tt.wantTarget)
				}
			} else if rep.Target != "" {
				t.Fatalf("failed call reports target %q", rep.Target)
			}
			if got := classes(rep); !equalSlices(got, tt.wantAttempt) {
				t.Fatalf("attempts %v, want %v", got, tt.wantAttempt)
			}
			if !equalSlices(sl.slept, tt.wantSlept) {
				t.Fatalf("slept %v, want %v", sl.slept, tt.wantSlept)
			}
		})
	}
}

func errorsContain(err error, s string) bool {
	return err != nil && s != "" && strings.Contains(err.Error(), s)
}

func equalSlices[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCircuitBreaker(t *testing.T) {
	t.Parallel()
	c, clock, _ := newTestCaller(CallerConfig{
		MaxAttemptsPerTarget: 1, BreakerThreshold: 2, BreakerCooldown: 30 * time.Second,
	})
	a := &scripted{script: []error{unavailable, unavailable, unavailable, nil}}
	b := &scripted{script: []error{nil}}
	chain := []Target{{Name: "a", Connector: a, Model: "ma"}, {Name: "b", Connector: b, Model: "mb"}}
	call := func() CallReport {
		t.Helper()
		_, rep, err := c.Call(context.Background(), chain, connectors.Request{})
		if err != nil {
			t.Fatalf("Call: %v", err)
		}
		return rep
	}
	steps := []struct {
		advance   time.Duration
		want      []ErrClass
		wantState string // of "a" after the call
	}{
		{want: []ErrClass{"a/unavailable", "b/"}, wantState: "closed"},
		{want: []ErrClass{"a/unavailable", "b/"}, wantState: "open"}, // second consecutive failure opens it
		{want: []ErrClass{"a/circuit_open", "b/"}, wantState: "open"},
		{advance: 29 * time.Second, want: []ErrClass{"a/circuit_open", "b/"}, wantState: "open"},
		{advance: time.Second, want: []ErrClass{"a/unavailable", "b/"}, wantState: "open"}, // the probe fails: open again
		{advance: 10 * time.Second, want: []ErrClass{"a/circuit_open", "b/"}, wantState: "open"},
		{advance: 20 * time.Second, want: []ErrClass{"a/"}, wantState: "closed"}, // the probe succeeds: closed
		{want: []ErrClass{"a/"}, wantState: "closed"},
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		rep := call()
		if got := classes(rep); !equalSlices(got, s.want) {
			t.Fatalf("step %d: attempts %v, want %v", i, got, s.want)
		}
		if got := c.BreakerState("a"); got != s.wantState {
			t.Fatalf("step %d: breaker %s, want %s", i, got, s.wantState)
		}
	}
	if a.Calls() != 5 {
		t.Fatalf("target a called %d times, want 5 (skipped while open)", a.Calls())
	}
}

func TestCircuitHalfOpenLetsOneProbeThrough(t *testing.T) {
	t.Parallel()
	c, clock, _ := newTestCaller(CallerConfig{MaxAttemptsPerTarget: 1, BreakerThreshold: 1, BreakerCooldown: time.Second})
	a := &scripted{script: []error{unavailable, nil}}
	chain := []Target{{Name: "a", Connector: a}}
	if _, _, err := c.Call(context.Background(), chain, connectors.Request{}); !errors.Is(err, connectors.ErrUnavailable) {
		t.Fatalf("first call: %v", err)
	}
	clock.Advance(time.Second)
	// While the probe is in flight, a second call is refused at once.
	a.onCall = func() {
		_, _, err := c.Call(context.Background(), chain, connectors.Request{})
		if !errors.Is(err, ErrCircuitOpen) {
			t.Errorf("call during the probe: %v, want ErrCircuitOpen", err)
		}
		if got := c.BreakerState("a"); got != "half-open" {
			t.Errorf("during the probe: %s, want half-open", got)
		}
	}
	if _, _, err := c.Call(context.Background(), chain, connectors.Request{}); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if got := c.BreakerState("a"); got != "closed" {
		t.Fatalf("after the probe: %s", got)
	}
}

func TestCallCancelledMidBackoff(t *testing.T) {
	t.Parallel()
	c, _, sl := newTestCaller(CallerConfig{MaxAttemptsPerTarget: 5})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sl.before = cancel // the caller goes away while we wait to retry
	a := &scripted{script: []error{unavailable}}
	b := &scripted{script: []error{nil}}
	_, rep, err := c.Call(ctx, []Target{{Name: "a", Connector: a}, {Name: "b", Connector: b}}, connectors.Request{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Call: %v, want context.Canceled", err)
	}
	if a.Calls() != 1 || b.Calls() != 0 || len(rep.Attempts) != 1 {
		t.Fatalf("after cancellation: a called %d, b %d, %d attempts; want 1, 0, 1", a.Calls(), b.Calls(), len(rep.Attempts))
	}
	if len(sl.slept) != 0 {
		t.Fatalf("slept %v after cancellation", sl.slept)
	}
}

func TestCallCancelledDuringAttempt(t *testing.T) {
	t.Parallel()
	c, _, _ := newTestCaller(CallerConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &scripted{script: []error{context.Canceled}, onCall: cancel}
	b := &scripted{script: []error{nil}}
	_, rep, err := c.Call(ctx, []Target{{Name: "a", Connector: a}, {Name: "b", Connector: b}}, connectors.Request{})
	if !errors.Is(err, context.Canceled) || b.Calls() != 0 {
		t.Fatalf("Call: %v, b called %d times", err, b.Calls())
	}
	if got := classes(rep); !equalSlices(got, []ErrClass{"a/canceled"}) {
		t.Fatalf("attempts %v", got)
	}
	if c.BreakerState("a") != "closed" {
		t.Fatal("a cancellation counted against the target")
	}
}

func TestCallSetsAttemptDeadlineAndSleepStopsOnCancel(t *testing.T) {
	t.Parallel()
	// Nothing here waits: the connector only looks at its context's
	// deadline, and the real sleep is given a context already cancelled.
	c := NewCaller(CallerConfig{AttemptTimeout: time.Hour})
	var hasDeadline bool
	probe := connectorFunc(func(ctx context.Context, _ connectors.Request) (connectors.Response, error) {
		_, hasDeadline = ctx.Deadline()
		return connectors.Response{}, nil
	})
	if _, _, err := c.Call(context.Background(), []Target{{Name: "p", Connector: probe}}, connectors.Request{}); err != nil || !hasDeadline {
		t.Fatalf("Call: %v; attempt had a deadline: %v", err, hasDeadline)
	}
	if _, _, err := c.Call(context.Background(), nil, connectors.Request{}); err == nil {
		t.Fatal("an empty chain answered")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sleepContext(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("sleep on a cancelled context: %v", err)
	}
	if err := sleepContext(context.Background(), 0); err != nil {
		t.Fatalf("zero sleep: %v", err)
	}
}

type connectorFunc func(context.Context, connectors.Request) (connectors.Response, error)

func (f connectorFunc) Kind() string { return "func" }
func (f connectorFunc) Chat(ctx context.Context, req connectors.Request) (connectors.Response, error) {
	return f(ctx, req)
}

func TestCallerConcurrent(t *testing.T) {
	t.Parallel()
	c, _, _ := newTestCaller(CallerConfig{MaxAttemptsPerTarget: 2, BreakerThreshold: 3})
	a := &scripted{script: []error{unavailable, nil, limited, nil, malformed, nil}}
	b := &scripted{script: []error{nil}}
	chain := []Target{{Name: "a", Connector: a}, {Name: "b", Connector: b}}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, _, err := c.Call(context.Background(), chain, connectors.Request{}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}
