package gateway

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/moatproject/moat/internal/connectors"
)

// The Call stage (DESIGN.md, gateway step 8): a per-attempt timeout, retries
// with exponential backoff and full jitter honouring Retry-After, a circuit
// breaker per target, and fallback along the model alias chain.
//
// What each failure does:
//
//   - unavailable (5xx, connection refused), rate limited (429) and attempt
//     timeouts are retried on the same target, then fall back to the next;
//     they count toward opening the target's breaker.
//   - malformed answers are not retried on the same target (it would likely
//     answer alike) but fall back: another model may answer properly.
//   - rejected requests (4xx other than 429) neither retry nor fall back:
//     the same request would be refused again, and another vendor must not
//     be sent what one refused without the policy having said so.
//   - any other error (no recording, a bug) stops the call: fail closed.
//   - the caller's context ending stops everything at once.

// ErrCircuitOpen: the target's circuit breaker is open, so it was skipped
// without being called.
var ErrCircuitOpen = errors.New("gateway: circuit open")

// ErrAttemptsExhausted: the bound on attempts across the chain was reached.
var ErrAttemptsExhausted = errors.New("gateway: attempts exhausted")

// Target is one step of a fallback chain.
type Target struct {
	// Name identifies the target for its circuit breaker and in reports.
	Name      string
	Connector connectors.Connector
	// Model is the upstream's model name sent in the request.
	Model string
}

// ErrClass is the kind of an attempt's outcome.
type ErrClass string

const (
	ClassOK          ErrClass = ""
	ClassUnavailable ErrClass = "unavailable"
	ClassRateLimited ErrClass = "rate_limited"
	ClassTimeout     ErrClass = "timeout"
	ClassRejected    ErrClass = "rejected"
	ClassMalformed   ErrClass = "malformed"
	ClassCircuitOpen ErrClass = "circuit_open"
	// ClassUnconfigured: the target cannot be called here (its credential
	// is not set); the chain moves on to the next target at once.
	ClassUnconfigured ErrClass = "unconfigured"
	ClassCanceled     ErrClass = "canceled"
	ClassOther        ErrClass = "other"
)

// Attempt is one try of one target (or its skipping, when its circuit was
// open: Duration zero, Err ClassCircuitOpen).
type Attempt struct {
	Target   string
	Duration time.Duration
	// Waited is the part of Duration spent waiting on the upstream: in
	// HTTP exchanges with it, or all of Duration for a connector that made
	// none (see upstreamClock).
	Waited time.Duration
	// Backoff is the wait after this attempt, before the next: the
	// backoff, or what the upstream asked with Retry-After.
	Backoff time.Duration
	Err     ErrClass
}

// CallReport tells what the Call stage did; it holds no payload.
type CallReport struct {
	// Target and Model that answered; empty when none did.
	Target   string
	Model    string
	Attempts []Attempt
}

// CallerConfig configures a Caller; zero fields take the defaults noted.
type CallerConfig struct {
	AttemptTimeout time.Duration // per attempt; 30s
	BackoffBase    time.Duration // first backoff's upper bound; 200ms
	BackoffMax     time.Duration // cap on one backoff; 10s
	// MaxRetryWait caps a wait asked by Retry-After; a target asking more
	// is left for the next one. 30s.
	MaxRetryWait time.Duration
	// MaxAttemptsPerTarget bounds the tries of one target in one call; 3.
	MaxAttemptsPerTarget int
	// MaxAttempts bounds the tries across the whole chain in one call, so a
	// failing chain never becomes a retry storm; 6.
	MaxAttempts int
	// BreakerThreshold consecutive failures open a target's circuit; 5.
	BreakerThreshold int
	// BreakerCooldown is how long an open circuit skips its target before
	// letting one probe through; 30s.
	BreakerCooldown time.Duration

	Now   func() time.Time                                 // time.Now
	Sleep func(ctx context.Context, d time.Duration) error // a timer, stopped by ctx
	// Jitter returns a number in [0, 1); math/rand/v2's Float64.
	Jitter func() float64
}

// Caller runs the Call stage. It is safe for concurrent use; its breakers
// are shared by all calls through it.
type Caller struct {
	cfg CallerConfig

	mu       sync.Mutex
	breakers map[string]*breaker
}

// NewCaller returns a caller with cfg.
func NewCaller(cfg CallerConfig) *Caller {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.AttemptTimeout, 30*time.Second)
	def(&cfg.BackoffBase, 200*time.Millisecond)
	def(&cfg.BackoffMax, 10*time.Second)
	def(&cfg.MaxRetryWait, 30*time.Second)
	def(&cfg.BreakerCooldown, 30*time.Second)
	if cfg.MaxAttemptsPerTarget <= 0 {
		cfg.MaxAttemptsPerTarget = 3
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 6
	}
	if cfg.BreakerThreshold <= 0 {
		cfg.BreakerThreshold = 5
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepContext
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Float64
	}
	return &Caller{cfg: cfg, breakers: map[string]*breaker{}}
}

func sleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Call sends req to the chain's targets in order (req.Model set to each
// target's Model) until one answers, as the package comment above
// describes. On failure the error wraps the last attempt's cause (a
// connectors sentinel, ErrCircuitOpen, ErrAttemptsExhausted or the
// context's error), and the report still lists every attempt.
func (c *Caller) Call(ctx context.Context, chain []Target, req connectors.Request) (connectors.Response, CallReport, error) {
	var rep CallReport
	if len(chain) == 0 {
		return connectors.Response{}, rep, errors.New("gateway: call: empty fallback chain")
	}
	total := 0
	var lastErr error
	for _, t := range chain {
	tries:
		for try := 1; ; try++ {
			if err := ctx.Err(); err != nil {
				return connectors.Response{}, rep, fmt.Errorf("gateway: call %s: %w", t.Name, err)
			}
			if total >= c.cfg.MaxAttempts {
				return connectors.Response{}, rep, fmt.Errorf("gateway: call: %w after %d attempts: %w", ErrAttemptsExhausted, total, lastErr)
			}
			if !c.allow(t.Name) {
				rep.Attempts = append(rep.Attempts, Attempt{Target: t.Name, Err: ClassCircuitOpen})
				lastErr = fmt.Errorf("gateway: call %s: %w", t.Name, ErrCircuitOpen)
				break tries
			}
			total++
			resp, class, err := c.attempt(ctx, t, req)
			rep.Attempts = append(rep.Attempts, Attempt{Target: t.Name, Duration: resp.dur, Waited: resp.waited, Err: class})
			c.record(t.Name, class)
			switch class {
			case ClassOK:
				rep.Target, rep.Model = t.Name, t.Model
				return resp.Response, rep, nil
			case ClassCanceled:
				return connectors.Response{}, rep, fmt.Errorf("gateway: call %s: %w", t.Name, ctx.Err())
			case ClassRejected, ClassOther:
				return connectors.Response{}, rep, fmt.Errorf("gateway: call %s: %w", t.Name, err)
			case ClassMalformed, ClassUnconfigured:
				lastErr = fmt.Errorf("gateway: call %s: %w", t.Name, err)
				break tries
			}
			// Unavailable, rate limited or timed out: retry after a wait.
			lastErr = fmt.Errorf("gateway: call %s: %w", t.Name, err)
			if try >= c.cfg.MaxAttemptsPerTarget {
				break tries
			}
			if total >= c.cfg.MaxAttempts {
				return connectors.Response{}, rep, fmt.Errorf("gateway: call: %w after %d attempts: %w", ErrAttemptsExhausted, total, lastErr)
			}
			wait := c.backoff(try)
			var up *connectors.UpstreamError
			if errors.As(err, &up) && up.RetryAfter > 0 {
				if up.RetryAfter > c.cfg.MaxRetryWait {
					break tries // not worth waiting for: fall back now
				}
				wait = max(wait, up.RetryAfter)
			}
			slept := c.cfg.Now()
			serr := c.cfg.Sleep(ctx, wait)
			rep.Attempts[len(rep.Attempts)-1].Backoff = c.cfg.Now().Sub(slept)
			if serr != nil {
				return connectors.Response{}, rep, fmt.Errorf("gateway: call %s: waiting to retry: %w", t.Name, serr)
			}
		}
	}
	return connectors.Response{}, rep, fmt.Errorf("gateway: call: every target of the chain failed: %w", lastErr)
}

type timedResponse struct {
	connectors.Response
	dur, waited time.Duration
}

// attempt makes one call with the per-attempt timeout and classifies it.
func (c *Caller) attempt(ctx context.Context, t Target, req connectors.Request) (timedResponse, ErrClass, error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
	defer cancel()
	// A connector whose credential is a vault secret learns the model it
	// is sent for, and reports here if the vault refused it (connectors
	// would report it as a failed request, which a retry cannot fix).
	// One allocation for what the attempt's transports report back.
	report := &struct {
		denied error
		clock  upstreamClock
	}{clock: upstreamClock{now: c.cfg.Now}}
	scope := callScopeFrom(ctx)
	scope.model, scope.denied, scope.upstream = t.Model, &report.denied, &report.clock
	actx = withCallScope(actx, scope)
	req.Model = t.Model
	start := c.cfg.Now()
	resp, err := t.Connector.Chat(actx, req)
	dur := c.cfg.Now().Sub(start)
	out := timedResponse{Response: resp, dur: dur, waited: report.clock.waited(dur)}
	switch {
	case err == nil:
		return out, ClassOK, nil
	case report.denied != nil:
		return out, ClassUnconfigured, report.denied
	}
	return out, classify(ctx, actx, err), err
}

func classify(parent, attempt context.Context, err error) ErrClass {
	switch {
	case parent.Err() != nil:
		return ClassCanceled
	case errors.As(err, new(*CredentialMissingError)):
		return ClassUnconfigured
	case errors.Is(err, connectors.ErrRejected):
		return ClassRejected
	case errors.Is(err, connectors.ErrMalformed):
		return ClassMalformed
	case errors.Is(err, connectors.ErrRateLimited):
		return ClassRateLimited
	case errors.Is(err, connectors.ErrUnavailable):
		return ClassUnavailable
	case errors.Is(err, context.DeadlineExceeded) || attempt.Err() != nil:
		return ClassTimeout
	}
	return ClassOther
}

// backoff is full jitter: uniform in [0, min(max, base·2^(try-1))).
func (c *Caller) backoff(try int) time.Duration {
	ceiling := c.cfg.BackoffBase
	for i := 1; i < try && ceiling < c.cfg.BackoffMax; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, c.cfg.BackoffMax)
	return time.Duration(c.cfg.Jitter() * float64(ceiling))
}

// breaker is one target's circuit: closed, open until a time, or half-open
// with one probe in flight.
type breaker struct {
	failures  int
	open      bool
	openUntil time.Time
	probing   bool // half-open: the probe is in flight
}

// BreakerState names a target's circuit state: "closed", "open" or
// "half-open" (for metrics and tests).
func (c *Caller) BreakerState(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.breakers[name]
	switch {
	case b == nil || !b.open && !b.probing:
		return "closed"
	case b.probing || !c.cfg.Now().Before(b.openUntil):
		return "half-open"
	}
	return "open"
}

// allow says whether the target may be called now; past an open circuit's
// cooldown it lets exactly one probe through.
func (c *Caller) allow(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.breakers[name]
	switch {
	case b == nil:
		return true
	case b.probing:
		return false
	case b.open:
		if c.cfg.Now().Before(b.openUntil) {
			return false
		}
		b.open, b.probing = false, true
	}
	return true
}

// record updates the target's circuit with an attempt's outcome. Only
// unavailability, upstream rate limits and timeouts count as failures; a
// success closes the circuit (and forgets it, so memory holds only failing
// targets); other outcomes let a half-open circuit probe again.
func (c *Caller) record(name string, class ErrClass) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.breakers[name]
	switch class {
	case ClassOK:
		delete(c.breakers, name)
	case ClassUnavailable, ClassRateLimited, ClassTimeout:
		if b == nil {
			b = &breaker{}
			c.breakers[name] = b
		}
		b.failures++
		if b.probing || b.failures >= c.cfg.BreakerThreshold {
			b.open, b.probing = true, false
			b.openUntil = c.cfg.Now().Add(c.cfg.BreakerCooldown)
		}
	default:
		if b != nil && b.probing {
			b.probing = false
			b.open = true // and already past its cooldown: the next call probes
		}
	}
}
