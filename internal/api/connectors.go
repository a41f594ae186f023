package api

import (
	"fmt"

	"github.com/danielgtaylor/huma/v2"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/store"
)

// ConnectorView is a connector as the API answers it. Its credential is
// the name of an environment variable: no secret is stored, so none can be
// shown.
type ConnectorView struct {
	gateway.Connector
	ResourceMeta
}

func (h *handlers) registerConnectors(api huma.API) {
	registerResource(h, api, resourceKind{kind: gateway.KindConnector, plural: "connectors", singular: "connector"},
		func(r store.Resource, applied *AppliedResource) (ConnectorView, error) {
			v := ConnectorView{ResourceMeta: metaOf(r, applied)}
			if err := decodeJSON(r.Spec, &v.Connector); err != nil {
				return ConnectorView{}, fmt.Errorf("api: stored connector %s does not decode: %w", r.Name, err)
			}
			return v, nil
		})
}
