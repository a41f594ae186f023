package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/moatproject/moat/internal/engine"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/workflow"
)

// problemLocation names where a problem is: file:line:col when known, else
// the JSON pointer.
func problemLocation(p workflow.Problem) string {
	switch {
	case p.Line > 0:
		return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
	case p.Pointer != "":
		return p.Pointer
	}
	return p.File
}

func problemDetails(problems workflow.Problems) []error {
	out := make([]error, len(problems))
	for i, p := range problems {
		out[i] = &huma.ErrorDetail{Message: p.Message, Location: problemLocation(p)}
	}
	return out
}

// apiError turns a service error into an RFC 9457 answer a person can act
// on. Unexpected errors are logged and answered without internals.
func (h *handlers) apiError(err error) error {
	var problems workflow.Problems
	var inputErr *engine.InputError
	switch {
	case errors.As(err, &inputErr):
		// Located like huma's own problems: body.input, then the JSON
		// pointer within the input (none for the input as a whole).
		details := make([]error, len(inputErr.Problems))
		for i, p := range inputErr.Problems {
			details[i] = &huma.ErrorDetail{Message: p.Message, Location: "body.input" + p.Pointer}
		}
		return huma.Error422UnprocessableEntity("the input does not match the workflow's input schema", details...)
	case errors.As(err, &problems):
		return huma.Error422UnprocessableEntity(fmt.Sprintf("the workflow definition has %d problem(s)", len(problems)), problemDetails(problems)...)
	case errors.Is(err, store.ErrNotFound):
		return huma.Error404NotFound(err.Error())
	case errors.Is(err, store.ErrInvalid):
		return huma.Error422UnprocessableEntity(err.Error())
	case errors.Is(err, store.ErrConflict), errors.Is(err, engine.ErrFinal), errors.Is(err, engine.ErrNotPending):
		return huma.Error409Conflict(err.Error())
	case errors.Is(err, store.ErrUnavailable):
		h.Logger.Error("database unavailable", "error", err)
		return huma.Error503ServiceUnavailable("the database is unavailable (locked or unreachable); nothing was written, try again")
	}
	h.Logger.Error("request failed", "error", err)
	return huma.NewError(http.StatusInternalServerError, "internal error; see the server log")
}
