package api

import (
	"fmt"

	"github.com/danielgtaylor/huma/v2"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/store"
)

// ModelView is a model alias as the API answers it.
type ModelView struct {
	gateway.Model
	ResourceMeta
}

func (h *handlers) registerModels(api huma.API) {
	registerResource(h, api, resourceKind{kind: gateway.KindModel, plural: "models", singular: "model"},
		func(r store.Resource, applied *AppliedResource) (ModelView, error) {
			v := ModelView{ResourceMeta: metaOf(r, applied)}
			if err := decodeJSON(r.Spec, &v.Model); err != nil {
				return ModelView{}, fmt.Errorf("api: stored model %s does not decode: %w", r.Name, err)
			}
			return v, nil
		})
}
