package gateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/audit/audittest"
	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/detect"
)

// auditDetailsReference is the map of a record's details that auditDetails
// writes without building it: the log must keep the same bytes either way.
func auditDetailsReference(rec Record) map[string]any {
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
	return details
}

func TestAuditDetailsAgreeWithReference(t *testing.T) {
	t.Parallel()
	full := Record{
		RequestID: "req_x", Time: time.Unix(1, 0), Environment: "prod",
		Identity: Identity{Kind: "run", ID: "r1", Name: "key", Project: "p", Workflow: "w", Run: "r1", Step: "s"},
		Alias:    "chat", Connector: "c", Vendor: "v", Model: "m",
		Findings: map[string]int{"pii.email": 2}, Decisions: map[string]int{"tokenize": 2},
		Injection: &detect.InjectionResult{Score: 0.25}, Checks: []string{"new_pii"},
		InputDigest: "in", OutputDigest: "out", Usage: connectors.Usage{PromptTokens: 3, CompletionTokens: 4},
		CostMicros: 9, Attempts: []Attempt{{Target: "a", Duration: 1500 * time.Microsecond}, {Target: "b", Err: ClassTimeout}},
		Latency: 2 * time.Millisecond, Overhead: 40 * time.Microsecond, Outcome: "check_failed", Error: "failed",
	}
	var many []audit.SensitiveValue
	for i := range 3 * maxRecordSubjects {
		many = append(many, audit.Sensitive(fmt.Sprintf("person-%d", i%(maxRecordSubjects+7))))
	}
	records := []Record{
		{},
		{RequestID: "req_y", Identity: Identity{Kind: "key", ID: "k"}, Connector: "c"},
		full,
	}
	for _, subjects := range [][]audit.SensitiveValue{
		{audit.Sensitive("a@example.com")},
		{audit.Sensitive("a"), audit.Sensitive("b"), audit.Sensitive("a")},
		many,
	} {
		r := full
		r.Subjects = subjects
		records = append(records, r)
	}
	log, st := audittest.New(t)
	for i, r := range records {
		for _, requested := range []bool{false, true} {
			want := auditDetailsReference(r)
			if requested {
				// A requested record leaves out what is zero before the call.
				for _, k := range []string{"usage", "costMicros", "latencyUs", "overheadUs"} {
					delete(want, k)
				}
			}
			if _, err := log.Append(t.Context(),
				audit.Record{Actor: "key:k", Action: "ai.call", Outcome: audit.OK, Details: want},
				audit.Record{Actor: "key:k", Action: "ai.call", Outcome: audit.OK, DetailsFrom: &auditDetails{rec: r, requested: requested}},
			); err != nil {
				t.Fatalf("record %d, requested %v: %v", i, requested, err)
			}
		}
	}
	recs := loggedRecords(t, log, st, 4*len(records))
	for i := 0; i < len(recs); i += 2 {
		if string(recs[i+1].Details) != string(recs[i].Details) {
			t.Errorf("record %d, requested %v: written\n%s\nwant\n%s", i/4, i%4 == 2, recs[i+1].Details, recs[i].Details)
		}
	}
}
