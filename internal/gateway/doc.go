// Package gateway is the one pipeline every AI or ML call passes (DESIGN.md,
// "The gateway"). This first part holds the Transform stage: what happens to
// a finding's text before a call — kept, redacted, masked, hashed or
// replaced by a reversible token — and the restoring of tokens afterwards.
package gateway
