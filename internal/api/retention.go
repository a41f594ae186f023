package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/moatproject/moat/internal/retention"
)

type eraseInput struct {
	Body struct {
		Subject string `json:"subject" minLength:"1" maxLength:"1024" doc:"an identifier of the person: an e-mail address, a phone or card number, a name …; matched after normalising case, spaces and separators"`
	}
}

type eraseOutput struct {
	Body retention.EraseResult
}

type purgeOutput struct {
	Body retention.PurgeResult
}

func actorOf(ctx context.Context) string {
	if p, ok := PrincipalFrom(ctx); ok {
		return "key:" + p.TokenID
	}
	return "anonymous"
}

func (h *handlers) registerRetention(api huma.API, p *retention.Purger) {
	huma.Register(api, huma.Operation{
		OperationID: "erase-subject", Method: http.MethodPost, Path: "/api/v1/runs/erase",
		Summary:     "Erase every run holding a person's identifier",
		Description: "Runs are found through the index of HMACs of the identifiers in their payloads, never by reading payloads. Each run's payload keys are destroyed, then its payloads deleted; a run not finished is cancelled first. The audit log keeps the identifier only as an HMAC.",
		Tags:        []string{"runs"},
	}, func(ctx context.Context, in *eraseInput) (*eraseOutput, error) {
		res, err := p.Erase(ctx, actorOf(ctx), in.Body.Subject, h.Engine)
		if errors.Is(err, retention.ErrNoSubject) {
			return nil, huma.Error404NotFound("no run holds this identifier; nothing was erased")
		}
		if err != nil {
			return nil, h.apiError(err)
		}
		return &eraseOutput{Body: res}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "purge-runs", Method: http.MethodPost, Path: "/api/v1/runs/purge",
		Summary:     "Purge expired run payloads now",
		Description: "What the purge job does every --purge-interval: each payload kind whose retention has run out loses its key, then its rows.",
		Tags:        []string{"runs"},
	}, func(ctx context.Context, _ *struct{}) (*purgeOutput, error) {
		res, err := p.PurgeExpired(ctx, actorOf(ctx))
		if err != nil {
			return nil, h.apiError(err)
		}
		if res.Runs == nil {
			res.Runs = []string{}
		}
		return &purgeOutput{Body: res}, nil
	})
}
