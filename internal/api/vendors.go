package api

import (
	"fmt"

	"github.com/danielgtaylor/huma/v2"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/store"
)

// VendorView is a vendor as the API answers it.
type VendorView struct {
	gateway.Vendor
	ResourceMeta
}

func (h *handlers) registerVendors(api huma.API) {
	registerResource(h, api, resourceKind{kind: gateway.KindVendor, plural: "vendors", singular: "vendor"},
		func(r store.Resource, applied *AppliedResource) (VendorView, error) {
			v := VendorView{ResourceMeta: metaOf(r, applied)}
			if err := decodeJSON(r.Spec, &v.Vendor); err != nil {
				return VendorView{}, fmt.Errorf("api: stored vendor %s does not decode: %w", r.Name, err)
			}
			return v, nil
		})
}
