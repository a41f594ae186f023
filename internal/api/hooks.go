package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/moatproject/moat/internal/engine"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/workflow"
)

// respondWait bounds how long a webhook caller waits for a respond step.
const respondWait = 30 * time.Second

// webhook starts a run of the workflow listening on the path. When the
// workflow has a respond step, the caller gets that step's answer;
// otherwise 202 with the run's id.
func (h *handlers) webhook(w http.ResponseWriter, r *http.Request) {
	path := r.PathValue("path")
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && mt != "text/json") {
			writeProblem(w, http.StatusUnsupportedMediaType, "webhook bodies must be JSON: send Content-Type: application/json")
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeProblem(w, http.StatusRequestEntityTooLarge, "webhook body is larger than 1 MiB")
		return
	}
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "could not read the body")
		return
	}
	wf, err := h.Store.FindWebhook(r.Context(), path)
	if errors.Is(err, store.ErrNotFound) {
		writeProblem(w, http.StatusNotFound, "no workflow listens on /hooks/"+path)
		return
	}
	if err != nil {
		h.writeError(w, err)
		return
	}
	var input any = map[string]any{}
	if len(body) > 0 {
		if input, err = workflow.DecodeJSON(body); err != nil {
			writeProblem(w, http.StatusBadRequest, "malformed JSON body: "+err.Error(), problemDetail{Location: "body", Message: err.Error()})
			return
		}
	}
	run, err := h.Engine.StartRun(r.Context(), engine.StartRequest{WorkflowID: wf.ID, Input: input, Trigger: "webhook"})
	var inputErr *engine.InputError
	if errors.As(err, &inputErr) {
		details := make([]problemDetail, len(inputErr.Problems))
		for i, p := range inputErr.Problems {
			details[i] = problemDetail{Location: "body" + p.Pointer, Message: p.Message}
		}
		writeProblem(w, http.StatusUnprocessableEntity, "the body does not match the workflow's input schema", details...)
		return
	}
	if err != nil {
		h.writeError(w, err)
		return
	}
	w.Header().Set("X-Moat-Run-Id", run.ID)

	responders, err := h.Engine.Responders(r.Context(), run.VersionID)
	if err != nil || len(responders) == 0 {
		writeJSON(w, http.StatusAccepted, map[string]any{"runId": run.ID, "status": run.Status})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), respondWait)
	defer cancel()
	run, steps, _ := h.Engine.WaitFor(ctx, run.ID, func(_ store.Run, steps []store.Step) bool {
		return respondedStep(steps, responders) != nil || respondersFinished(steps, responders)
	})
	if s := respondedStep(steps, responders); s != nil {
		writeResponse(w, run.ID, s.Output)
		return
	}
	switch {
	case run.Status == store.RunFailed:
		writeProblem(w, http.StatusBadGateway, "run "+run.ID+" failed before it responded: "+run.Error)
	default:
		writeJSON(w, http.StatusAccepted, map[string]any{"runId": run.ID, "status": run.Status})
	}
}

func respondedStep(steps []store.Step, responders []string) *store.Step {
	for i := range steps {
		for _, id := range responders {
			if steps[i].StepID == id && steps[i].Status == store.StepSucceeded {
				return &steps[i]
			}
		}
	}
	return nil
}

// respondersFinished reports whether every respond step has ended without
// answering (on a branch not taken), so waiting longer is pointless.
func respondersFinished(steps []store.Step, responders []string) bool {
	final := 0
	for _, s := range steps {
		if slices.Contains(responders, s.StepID) && s.Status.Final() {
			final++
		}
	}
	return final == len(responders)
}

// protectedHeaders are Moat's own: a respond step may not replace them.
var protectedHeaders = []string{"X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "X-Moat-Run-Id"}

// writeResponse sends a respond step's output: {status, headers, body}.
func writeResponse(w http.ResponseWriter, runID string, output []byte) {
	var out struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    json.RawMessage   `json:"body"`
	}
	if err := json.Unmarshal(output, &out); err != nil || out.Status == 0 {
		out.Status = http.StatusOK
	}
	if out.Status < 200 || out.Status > 599 {
		// A 1xx is not a final answer (101 would even claim a protocol switch).
		writeProblem(w, http.StatusBadGateway, fmt.Sprintf("run %s responded with status %d, which cannot end an HTTP exchange", runID, out.Status))
		return
	}
	for k, v := range out.Headers {
		if !slices.Contains(protectedHeaders, http.CanonicalHeaderKey(k)) {
			w.Header().Set(k, v)
		}
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(out.Status)
	if len(out.Body) > 0 {
		_, _ = w.Write(out.Body)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeError answers a plain handler's error as apiError would answer a
// huma operation's, so both kinds of route say the same thing.
func (h *handlers) writeError(w http.ResponseWriter, err error) {
	var model *huma.ErrorModel
	if !errors.As(h.apiError(err), &model) {
		writeProblem(w, http.StatusInternalServerError, "internal error; see the server log")
		return
	}
	writeProblem(w, model.Status, model.Detail)
}
