package gateway

import (
	"context"
	"fmt"

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
func (r AuditRecorder) RecordStart(ctx context.Context, rec Record) error {
	return r.append(ctx, rec, audit.Requested)
}

func (r AuditRecorder) Record(ctx context.Context, rec Record) error {
	return r.append(ctx, rec, callOutcome(rec.Outcome))
}

func (r AuditRecorder) append(ctx context.Context, rec Record, outcome audit.Outcome) error {
	id := rec.Identity
	details := map[string]any{
		"requestId":   rec.RequestID,
		"environment": rec.Environment,
		"usage":       map[string]int{"promptTokens": rec.Usage.PromptTokens, "completionTokens": rec.Usage.CompletionTokens},
		"costMicros":  rec.CostMicros,
		"latencyUs":   rec.Latency.Microseconds(),
		"overheadUs":  rec.Overhead.Microseconds(),
	}
	for k, v := range map[string]string{
		"alias": rec.Alias, "connector": rec.Connector, "vendor": rec.Vendor, "model": rec.Model,
		"project": id.Project, "workflow": id.Workflow, "run": id.Run, "step": id.Step, "keyName": id.Name,
		"inputSha256": rec.InputDigest, "outputSha256": rec.OutputDigest, "error": rec.Error,
	} {
		if v != "" {
			details[k] = v
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
		seen := make(map[audit.SensitiveValue]bool, len(rec.Subjects))
		for _, s := range rec.Subjects {
			if len(subjects) == maxRecordSubjects {
				break
			}
			if !seen[s] {
				seen[s] = true
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
	resource := "model/" + rec.Alias
	if rec.Alias == "" {
		resource = "connector/" + rec.Connector
	}
	_, err := r.Log.Append(ctx, audit.Record{
		Actor:    id.Kind + ":" + id.ID,
		Action:   "ai.call",
		Resource: resource,
		Outcome:  outcome,
		Details:  details,
	})
	if err != nil {
		return fmt.Errorf("gateway: audit record of AI call %s: %w", rec.RequestID, err)
	}
	return nil
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
