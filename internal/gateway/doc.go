// Package gateway is the one pipeline every AI or ML call passes (DESIGN.md,
// "The gateway"). So far it holds five of its stages, not yet wired into
// one pipeline: Decide (CEL policy per data class and vendor; secrets always
// blocked), Transform (what happens to a finding's text before a call —
// kept, redacted, masked, hashed or replaced by a reversible token — and the
// restoring of tokens afterwards), Limit (rate limits and budgets per API
// key, workflow and connector), Call (retries honouring Retry-After,
// circuit breakers and the fallback chain) and Check (schema, labels, size,
// canary leaks, new PII, secrets and unknown tokens in an answer).
package gateway
