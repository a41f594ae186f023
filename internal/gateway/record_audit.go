package gateway

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/moatproject/moat/internal/audit"
)

// AuditRecorder writes each AI call's record to the audit log: who, where
// from, which connector, vendor and model, findings and decisions by type,
// the HMACs of the personal identifiers it carried, digests, usage, cost
// and timing; never a payload. A call whose record cannot be committed
// fails (the gateway fails closed on this error).
type AuditRecorder struct{ Log *audit.Log }

// RecordStart writes an ai.call record with outcome "requested" before the
// request is sent, so that a call the log cannot record never leaves.
//
// It leaves out usage, cost and timing, which are all zero before the call.
func (r AuditRecorder) RecordStart(ctx context.Context, rec Record) error {
	return r.append(ctx, rec, audit.Requested)
}

func (r AuditRecorder) Record(ctx context.Context, rec Record) error {
	return r.append(ctx, rec, callOutcome(rec.Outcome))
}

func (r AuditRecorder) append(ctx context.Context, rec Record, outcome audit.Outcome) error {
	id := rec.Identity
	resource := "model/" + rec.Alias
	if rec.Alias == "" {
		resource = "connector/" + rec.Connector
	}
	details := detailsMaps.Get().(map[string]any)
	fillAuditDetails(details, rec, outcome == audit.Requested)
	_, err := r.Log.Append(ctx, audit.Record{
		Actor:    id.Kind + ":" + id.ID,
		Action:   "ai.call",
		Resource: resource,
		Outcome:  outcome,
		Details:  details,
	})
	// The log keeps the details' encoding, not the map: it is emptied and
	// used again.
	clear(details)
	detailsMaps.Put(details)
	if err != nil {
		return fmt.Errorf("gateway: audit record of AI call %s: %w", rec.RequestID, err)
	}
	return nil
}

// auditDetailsSize is the usual call's number of details: the six always
// set, eight of the optional strings, findings, decisions, subjects and
// attempts.
const auditDetailsSize = 18

// detailsMaps are emptied details maps, for the next record.
var detailsMaps = sync.Pool{New: func() any { return make(map[string]any, auditDetailsSize) }}

// fillAuditDetails sets, in the empty map details, a record's details as
// the audit log keeps them. The log encodes them canonically (keys
// sorted), so the order they are set in does not show. A requested record
// has no usage, cost or timing yet.
func fillAuditDetails(details map[string]any, rec Record, requested bool) {
	id := rec.Identity
	details["requestId"] = rec.RequestID
	details["environment"] = rec.Environment
	if !requested {
		details["usage"] = map[string]int{"promptTokens": rec.Usage.PromptTokens, "completionTokens": rec.Usage.CompletionTokens}
		details["costMicros"] = rec.CostMicros
		details["latencyUs"] = rec.Latency.Microseconds()
		details["overheadUs"] = rec.Overhead.Microseconds()
	}
	for _, f := range [...]struct{ key, value string }{
		{"alias", rec.Alias}, {"connector", rec.Connector}, {"vendor", rec.Vendor}, {"model", rec.Model},
		{"project", id.Project}, {"workflow", id.Workflow}, {"run", id.Run}, {"step", id.Step}, {"keyName", id.Name},
		{"inputSha256", rec.InputDigest}, {"outputSha256", rec.OutputDigest}, {"error", rec.Error},
	} {
		if f.value != "" {
			details[f.key] = f.value
		}
	}
	if len(rec.Findings) > 0 {
		details["findings"] = rec.Findings
	}
	if len(rec.Decisions) > 0 {
		details["decisions"] = rec.Decisions
	}
	if len(rec.Subjects) > 0 {
		// Stored as their HMACs only: `moat audit hmac` gives a person's.
		subjects := make([]any, 0, min(len(rec.Subjects), maxRecordSubjects))
		for _, s := range rec.Subjects {
			if len(subjects) == maxRecordSubjects {
				break
			}
			// A record holds at most maxRecordSubjects subjects, each once
			// (addSubject sees to both): a search of the few kept so far
			// costs less than a set.
			if !slices.Contains(subjects, any(s)) {
				subjects = append(subjects, s)
			}
		}
		details["subjects"] = subjects
	}
	if len(rec.Checks) > 0 {
		details["checks"] = rec.Checks
	}
	if rec.Injection != nil {
		details["injectionScore"] = rec.Injection.Score
	}
	if len(rec.Attempts) > 0 {
		attempts := make([]map[string]any, len(rec.Attempts))
		for i, at := range rec.Attempts {
			attempts[i] = map[string]any{"target": at.Target, "durationUs": at.Duration.Microseconds()}
			if at.Err != "" {
				attempts[i]["error"] = string(at.Err)
			}
		}
		details["attempts"] = attempts
	}
}

// callOutcome maps a call's outcome to the audit log's: refused by policy
// or limits is denied, anything else that did not succeed failed.
func callOutcome(code string) audit.Outcome {
	switch code {
	case "ok":
		return audit.OK
	case CodeForbidden, CodeBlocked, CodeInjection, CodeRateLimited, CodeBudget:
		return audit.Denied
	}
	return audit.Failed
}
