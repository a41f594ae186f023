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
	// The log is done with the details when Append returns: they go back
	// to the pool, emptied, rather than a copy of rec escaping per record.
	details := auditDetailsPool.Get().(*auditDetails)
	details.rec, details.requested = rec, outcome == audit.Requested
	_, err := r.Log.Append(ctx, audit.Record{
		Actor:       id.Kind + ":" + id.ID,
		Action:      "ai.call",
		Resource:    resource,
		Outcome:     outcome,
		DetailsFrom: details,
	})
	*details = auditDetails{}
	auditDetailsPool.Put(details)
	if err != nil {
		return fmt.Errorf("gateway: audit record of AI call %s: %w", rec.RequestID, err)
	}
	return nil
}

// auditDetails writes a record's details as the audit log keeps them,
// without building a map for each record: its keys in sorted order. A
// requested record has no usage, cost or timing yet. (The map it stands
// for is auditDetailsReference, in the tests.)
type auditDetails struct {
	rec       Record
	requested bool
}

var auditDetailsPool = sync.Pool{New: func() any { return new(auditDetails) }}

func (d *auditDetails) WriteDetails(w *audit.DetailsWriter) {
	rec, id := &d.rec, &d.rec.Identity
	field := func(key, value string) {
		if value != "" {
			w.Key(key)
			w.String(value)
		}
	}
	w.Object()
	field("alias", rec.Alias)
	if len(rec.Attempts) > 0 {
		w.Key("attempts")
		w.Array()
		for _, at := range rec.Attempts {
			w.Object()
			w.Key("durationUs")
			w.Int(at.Duration.Microseconds())
			field("error", string(at.Err))
			w.Key("target")
			w.String(at.Target)
			w.End()
		}
		w.End()
	}
	if len(rec.Checks) > 0 {
		w.Key("checks")
		w.Array()
		for _, c := range rec.Checks {
			w.String(c)
		}
		w.End()
	}
	field("connector", rec.Connector)
	if !d.requested {
		w.Key("costMicros")
		w.Int(rec.CostMicros)
	}
	if len(rec.Decisions) > 0 {
		w.Key("decisions")
		w.IntMap(rec.Decisions)
	}
	w.Key("environment")
	w.String(rec.Environment)
	field("error", rec.Error)
	if len(rec.Findings) > 0 {
		w.Key("findings")
		w.IntMap(rec.Findings)
	}
	if rec.Injection != nil {
		w.Key("injectionScore")
		w.Float(rec.Injection.Score)
	}
	field("inputSha256", rec.InputDigest)
	field("keyName", id.Name)
	if !d.requested {
		w.Key("latencyUs")
		w.Int(rec.Latency.Microseconds())
	}
	field("model", rec.Model)
	field("outputSha256", rec.OutputDigest)
	if !d.requested {
		w.Key("overheadUs")
		w.Int(rec.Overhead.Microseconds())
	}
	field("project", id.Project)
	w.Key("requestId")
	w.String(rec.RequestID)
	field("run", id.Run)
	field("step", id.Step)
	if len(rec.Subjects) > 0 {
		// Stored as their HMACs only: `moat audit hmac` gives a person's.
		// Each once, the first maxRecordSubjects of them (addSubject sees
		// to both; a search of the few before costs less than a set).
		w.Key("subjects")
		w.Array()
		kept := 0
		for i, s := range rec.Subjects {
			if kept == maxRecordSubjects {
				break
			}
			if !slices.Contains(rec.Subjects[:i], s) {
				w.Sensitive(s)
				kept++
			}
		}
		w.End()
	}
	if !d.requested {
		w.Key("usage")
		w.Object()
		w.Key("completionTokens")
		w.Int(int64(rec.Usage.CompletionTokens))
		w.Key("promptTokens")
		w.Int(int64(rec.Usage.PromptTokens))
		w.End()
	}
	field("vendor", rec.Vendor)
	field("workflow", id.Workflow)
	w.End()
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
