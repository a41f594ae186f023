package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/moatproject/moat/internal/connectors"
)

// The Limit, Call and Check stages.

// identityScope is the limit scope of who calls: the API key, or the
// workflow a run belongs to (a workflow's runs share its limits).
func (c *call) identityScope() Scope {
	id := c.req.Identity
	if id.Kind == "key" {
		return Scope{Kind: "key", ID: id.ID}
	}
	return Scope{Kind: "workflow", ID: id.Project + "/" + id.Workflow}
}

// estimateTokens guesses a request's prompt tokens before it is sent:
// a token per four bytes, rounded up.
func estimateTokens(req connectors.Request) int {
	n := 0
	for _, m := range req.Messages {
		n += len(m.Content)
	}
	for _, e := range req.Examples {
		n += len(e.Text) + len(e.Label)
	}
	return (n + 3) / 4
}

func (c *call) newChecker() *Checker {
	prompt := make([]string, 0, len(c.sent)+len(c.examples))
	for _, m := range c.sent {
		prompt = append(prompt, m.Content)
	}
	for _, e := range c.examples {
		prompt = append(prompt, e.Text)
	}
	return &Checker{
		Schema:         c.schema,
		Labels:         c.req.Labels,
		MaxAnswerBytes: maxAnswerBytes,
		Canary:         c.canary,
		Tokens:         c.tokens,
		Prompt:         prompt,
	}
}

// callAndCheck runs Limit, Call and Check, and, when the request asks for
// repair and the answer's only problems are with the schema, one repair
// round: the same request with the answer and what is wrong with it, again
// through Limit, Call and Check. Any other problem fails the call at once:
// a leaked canary, a secret, a token the run never issued, or personal data
// that was not in the prompt as sent (a model inventing or leaking personal
// data is what the check is for).
func (c *call) callAndCheck(ctx context.Context, creq connectors.Request) (connectors.Response, CheckResult, error) {
	if c.each != nil {
		c.gate = &streamGate{
			each:     c.each,
			buffered: c.schema != nil || len(c.req.Labels) > 0,
			checker:  c.newChecker(),
			maxBytes: maxAnswerBytes,
			restorer: streamRestorer{tokens: c.tokens, allow: c.restoreAllowed()},
		}
	}
	resp, err := c.limitAndCall(ctx, creq)
	if err != nil {
		return connectors.Response{}, CheckResult{}, err
	}
	cr, err := c.check(resp.Content)
	if err != nil || cr.OK {
		return resp, cr, err
	}
	repair := RepairPrompt(cr)
	if !c.req.Repair || c.schema == nil || repair == "" || !onlySchemaProblems(cr.Problems) {
		return connectors.Response{}, CheckResult{}, checkFailed(cr.Problems)
	}
	again := creq
	again.Messages = append(slices.Clone(creq.Messages),
		connectors.Message{Role: connectors.Assistant, Content: resp.Content},
		connectors.Message{Role: connectors.User, Content: repair})
	c.sent = again.Messages
	resp, err = c.limitAndCall(ctx, again)
	if err != nil {
		return connectors.Response{}, CheckResult{}, err
	}
	cr, err = c.check(resp.Content)
	if err != nil || cr.OK {
		return resp, cr, err
	}
	return connectors.Response{}, CheckResult{}, checkFailed(cr.Problems)
}

// check is the Check stage on a whole answer.
func (c *call) check(answer string) (CheckResult, error) {
	c.stage = "check"
	c.rec.OutputDigest = digestText(answer)
	cr, err := c.newChecker().Check(answer)
	if err != nil {
		return CheckResult{}, &Error{Stage: "check", Code: CodeInternal, Message: "the answer could not be checked; the call failed closed", Err: err}
	}
	// The answer's identifiers: mostly the prompt's, echoed; those a model
	// made up or leaked fail the check, and the record still says whose
	// they were.
	c.rec.addSubjects(answer, cr.Findings)
	c.rec.addChecks(cr.Problems)
	return cr, nil
}

func onlySchemaProblems(probs []CheckProblem) bool {
	for _, p := range probs {
		if p.Kind != ProblemSchema {
			return false
		}
	}
	return len(probs) > 0
}

// maxProblemsInError bounds the problems an error lists.
const maxProblemsInError = 10

// checkFailed lists the problems' kinds and messages; those messages carry
// no value from the answer.
func checkFailed(probs []CheckProblem) *Error {
	parts := make([]string, 0, min(len(probs), maxProblemsInError)+1)
	for i, p := range probs {
		if i == maxProblemsInError {
			parts = append(parts, fmt.Sprintf("and %d more", len(probs)-maxProblemsInError))
			break
		}
		parts = append(parts, p.Kind+": "+p.Message)
	}
	return &Error{Stage: "check", Code: CodeCheckFailed, Message: "the answer failed its checks: " + strings.Join(parts, "; ")}
}

// limitAndCall runs the Limit and Call stages for one request. With a
// fallback chain the limits and the price are those of the first target's
// connector: the request is reserved before anyone knows which target will
// answer, and it is settled at that price.
func (c *call) limitAndCall(ctx context.Context, creq connectors.Request) (resp connectors.Response, err error) {
	g := c.g
	c.stage = "limit"
	first := c.route.Targets[0]
	g.limiter.useTarget(first)
	est := estimateTokens(creq)
	res, err := g.limiter.Reserve([]Scope{c.identityScope(), {Kind: "connector", ID: first.ConnectorName}}, priceKey(first), est)
	if err != nil {
		return connectors.Response{}, limitError(err)
	}

	c.stage = "call"
	c.rec.InputDigest = digestMessages(creq.Messages)
	if err := writeStart(ctx, g.cfg.Recorder, c.rec); err != nil {
		res.Commit(connectors.Usage{})
		return connectors.Response{}, &Error{Stage: "record", Code: CodeInternal, Message: "the call's audit record could not be started; nothing was sent", Err: err}
	}
	settled := false
	defer func() {
		if !settled {
			// A panic mid-call: the upstream may have been reached, so
			// the estimate counts.
			res.Commit(connectors.Usage{PromptTokens: est})
		}
	}()
	targets := make([]Target, len(c.route.Targets))
	for i, t := range c.route.Targets {
		targets[i] = t.Target
		if c.gate != nil {
			targets[i].Connector = &streamTarget{conn: t.Connector, gate: c.gate, parent: ctx}
		}
	}
	id := c.req.Identity
	scope := callScope{runID: id.Run}
	if id.Workflow != "" {
		scope.workflow = id.Project + "/" + id.Workflow
	}
	resp, rep, err := g.caller.Call(withCallScope(ctx, scope), targets, creq)
	c.rec.Attempts = append(c.rec.Attempts, rep.Attempts...)
	reached := false
	for _, a := range rep.Attempts {
		reached = reached || a.Err != ClassCircuitOpen
	}
	switch {
	case !reached:
		res.Cancel()
	case err != nil:
		res.Commit(connectors.Usage{})
	default:
		used := resp.Usage
		if used.PromptTokens <= 0 && used.CompletionTokens <= 0 {
			// An upstream that reports no usage is charged an estimate,
			// never nothing, so it cannot slip past a budget.
			used = connectors.Usage{PromptTokens: est, CompletionTokens: (len(resp.Content) + 3) / 4}
		}
		c.rec.CostMicros += res.Commit(used)
		c.rec.Usage.PromptTokens += resp.Usage.PromptTokens
		c.rec.Usage.CompletionTokens += resp.Usage.CompletionTokens
	}
	settled = true
	if err != nil {
		return connectors.Response{}, callError(ctx, err, rep)
	}
	for _, t := range c.route.Targets {
		if t.Name == rep.Target {
			c.rec.Connector, c.rec.Vendor, c.rec.Model = t.ConnectorName, t.Vendor.Name, t.Model
			break
		}
	}
	return resp, nil
}

// limitError maps the limiter's refusal.
func limitError(err error) *Error {
	var le *LimitError
	switch {
	case errors.As(err, &le) && errors.Is(err, ErrBudgetExceeded):
		return &Error{Stage: "limit", Code: CodeBudget, Message: fmt.Sprintf("the budget of %s is spent for this period", le.Scope), Err: err}
	case errors.As(err, &le):
		return &Error{Stage: "limit", Code: CodeRateLimited, Message: fmt.Sprintf("the %s limit of %s is reached", strings.ReplaceAll(le.Limit, "_", " "), le.Scope), RetryAfter: le.RetryAfter, Err: err}
	case errors.Is(err, ErrNoPrice):
		return &Error{Stage: "limit", Code: CodeBudget, Message: "a budget applies but the model has no price, so its cost cannot be counted", Err: err}
	}
	return &Error{Stage: "limit", Code: CodeInternal, Message: "the limits could not be checked; the call failed closed", Err: err}
}

// callError maps the Call stage's failure. Messages name what happened,
// never the upstream's words (which may quote the request).
func callError(ctx context.Context, err error, rep CallReport) *Error {
	var ge *Error
	if errors.As(err, &ge) {
		return ge
	}
	n := 0
	last := ClassOK
	for _, a := range rep.Attempts {
		if a.Err != ClassCircuitOpen {
			n++
		}
		last = a.Err
	}
	tries := fmt.Sprintf("after %d attempt(s)", n)
	var retryAfter = retryAfterOf(err)
	var missing *CredentialMissingError
	var denied *CredentialDeniedError
	switch {
	case ctx.Err() != nil:
		return &Error{Stage: "call", Code: CodeUnavailable, Message: "the call was cancelled or timed out " + tries, Err: err}
	case errors.As(err, &missing):
		// Names the connector and the variable, never a value.
		return &Error{Stage: "call", Code: CodeRejected, Message: missing.Error(), Err: err}
	case errors.As(err, &denied):
		return &Error{Stage: "call", Code: CodeForbidden, Message: denied.Error(), Err: err}
	case errors.Is(err, connectors.ErrRejected):
		return &Error{Stage: "call", Code: CodeRejected, Message: "the upstream rejected the request " + tries, Err: err}
	case errors.Is(err, connectors.ErrMalformed):
		return &Error{Stage: "call", Code: CodeRejected, Message: "the upstream's answer could not be read " + tries, Err: err}
	case errors.Is(err, connectors.ErrNoRecording):
		return &Error{Stage: "call", Code: CodeRejected, Message: "the replay connector has no recorded answer for this request", Err: err}
	case errors.Is(err, connectors.ErrRateLimited):
		return &Error{Stage: "call", Code: CodeUnavailable, Message: "the upstream is rate limiting calls " + tries, RetryAfter: retryAfter, Err: err}
	case errors.Is(err, connectors.ErrUnavailable), errors.Is(err, ErrAttemptsExhausted), errors.Is(err, context.DeadlineExceeded):
		return &Error{Stage: "call", Code: CodeUnavailable, Message: fmt.Sprintf("the upstream is unavailable %s (last: %s)", tries, last), RetryAfter: retryAfter, Err: err}
	case errors.Is(err, ErrCircuitOpen):
		return &Error{Stage: "call", Code: CodeUnavailable, Message: "every target's circuit is open after repeated failures; try again later", Err: err}
	}
	return &Error{Stage: "call", Code: CodeInternal, Message: "the call failed " + tries + "; the call failed closed", Err: err}
}

func retryAfterOf(err error) (d time.Duration) {
	var up *connectors.UpstreamError
	if errors.As(err, &up) {
		return up.RetryAfter
	}
	return 0
}
