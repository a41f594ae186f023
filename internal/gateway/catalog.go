package gateway

// CONTRACT (helper B1 implements; remove this line when done).

import (
	"net/http"

	"github.com/moatproject/moat/internal/connectors"
)

// CatalogOptions are what BuildCatalog needs besides the resources.
type CatalogOptions struct {
	Environment string
	HTTPClient  *http.Client
	DataDir     string
	Getenv      func(string) string
}

// Catalog is the resources compiled for one environment: connectors built,
// aliases resolved. It is immutable and safe for concurrent use.
type Catalog struct{}

// Route is where a request goes: the chain of targets, in order.
type Route struct {
	Alias   string // "" when the request named a connector
	Targets []RouteTarget
}

// RouteTarget is one target with what the other stages need to know of it.
type RouteTarget struct {
	Target        // Name (for the breaker), Connector, Model
	ConnectorName string
	Vendor        Vendor
	Price         *Price // nil when the connector has no price for the model
	Free          bool   // a local model: calls cost nothing
	Limits        *Limits
}

// ModelInfo is one model a caller may name (GET /v1/models).
type ModelInfo struct {
	ID        string `json:"id"`
	Connector string `json:"connector,omitempty"` // for a connector model
	Vendor    string `json:"vendor,omitempty"`
}

// BuildCatalog checks res (Resources.Check) and builds every connector
// usable in opts.Environment.
func BuildCatalog(res Resources, opts CatalogOptions) (*Catalog, error) { panic("contract") }

// Resolve finds the route for an alias (connector == "") or for a
// connector's model (model "" for its default); an unknown name is a
// *Error with CodeUnknownModel.
func (c *Catalog) Resolve(alias, connector, model string) (Route, error) { panic("contract") }

// HasConnector reports whether a connector of that name is usable here.
func (c *Catalog) HasConnector(name string) bool { panic("contract") }

// HasModel reports whether an alias of that name is usable here.
func (c *Catalog) HasModel(name string) bool { panic("contract") }

// Models lists the aliases and connector models usable here, sorted.
func (c *Catalog) Models() []ModelInfo { panic("contract") }

// Connector returns a built connector by name.
func (c *Catalog) Connector(name string) (connectors.Connector, bool) { panic("contract") }
