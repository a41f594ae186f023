package gateway

// Resources the gateway is configured with, applied with `moat apply` and
// stored as JSON. A workflow names a connector or a model alias, never a
// credential or a URL.

// Resource kinds.
const (
	KindVendor    = "Vendor"
	KindConnector = "Connector"
	KindModel     = "Model"
)

// Connector types.
const (
	TypeOpenAI    = "openai"
	TypeAnthropic = "anthropic"
	TypeHTTP      = "http"
	TypeLocal     = "local"
	TypeReplay    = "replay"
)

// Vendor is who processes what a connector sends: the profile policies read
// (kind Vendor). It is a resource of its own so that the governance issue can
// turn it into a reviewed registry without changing connectors.
type Vendor struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Location is OnPremises, PrivateCloud or ManagedService.
	Location             string `json:"location"`
	Region               string `json:"region,omitempty"`
	TrainsOnCustomerData bool   `json:"trainsOnCustomerData"`
	// RetentionDays: 0 keeps nothing, -1 is unknown (read as forever);
	// absent counts as unknown, so a vendor nobody asked is not trusted.
	RetentionDays *int `json:"retentionDays,omitempty"`
}

// Profile is what policy rules see of the vendor.
func (v Vendor) Profile() VendorProfile {
	retention := -1
	if v.RetentionDays != nil {
		retention = *v.RetentionDays
	}
	return VendorProfile{Name: v.Name, Location: v.Location, Region: v.Region, TrainsOnCustomerData: v.TrainsOnCustomerData, RetentionDays: retention}
}

// Connector is one configured AI or ML service (kind Connector).
type Connector struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Type is TypeOpenAI, TypeAnthropic, TypeHTTP, TypeLocal or TypeReplay.
	Type string `json:"type"`
	// Vendor names a Vendor resource; required.
	Vendor string `json:"vendor"`
	// BaseURL of an openai or anthropic API; the type's default when empty.
	BaseURL string `json:"baseURL,omitempty"`
	// Credential says where the API key comes from and how it is sent.
	Credential *Credential `json:"credential,omitempty"`
	// Timeout of one attempt, a duration such as "60s"; the type's default
	// when empty.
	Timeout string `json:"timeout,omitempty"`
	// Models this connector may be asked for; empty allows any. The first
	// is the default when a step names the connector but no model.
	Models []string `json:"models,omitempty"`
	// Prices per upstream model name, in US dollars per million tokens.
	Prices map[string]ModelPrice `json:"prices,omitempty"`
	// Limits on all calls through this connector.
	Limits *LimitSpec `json:"limits,omitempty"`
	// TLS settings of the connector's connections; nil keeps the defaults.
	TLS *ConnectorTLS `json:"tls,omitempty"`

	OpenAI *OpenAISettings `json:"openai,omitempty"`
	HTTP   *HTTPSettings   `json:"http,omitempty"`
	Local  *LocalSettings  `json:"local,omitempty"`
	Replay *ReplaySettings `json:"replay,omitempty"`

	// Environments, when set, lists the only environments that may use the
	// connector, each with what differs there. A connector without it may
	// be used in every environment.
	Environments map[string]ConnectorOverride `json:"environments,omitempty"`
}

// Credential names where a connector's secret comes from.
type Credential struct {
	// Secret names a vault secret of the server's environment holding the
	// value; each use is checked against the secret's bindings (this
	// connector, the request's host, the model) and recorded.
	Secret string `json:"secret,omitempty"`
	// Env is the name of an environment variable holding the value, for
	// servers without secrets in the vault yet; Secret or Env, not both.
	Env string `json:"env,omitempty"`
	// Header is the header an http connector sends it in (Authorization
	// by default). Without a scheme, Authorization gets "Bearer VALUE" and
	// any other header the bare value.
	Header string `json:"header,omitempty"`
	// Scheme is how the value is sent: SchemeBearer (the default; an
	// openai or anthropic connector sends it as its SDK sends a key),
	// SchemeBasic, SchemeHeader or SchemeOAuth2. Basic and oauth2 go in
	// Authorization (or an http connector's Header), replacing an SDK's
	// own key header such as x-api-key.
	Scheme string `json:"scheme,omitempty"`
	// Username of SchemeBasic; the value is the password.
	Username string `json:"username,omitempty"`
	// TokenURL, ClientID, Scopes and Audience are SchemeOAuth2's: the
	// value is the client secret, sent only to TokenURL's host (and only
	// if the secret is bound to it) to get the access token sent upstream.
	// The token goes only where the secret may be used: a vault secret is
	// bound to both hosts.
	TokenURL string   `json:"tokenURL,omitempty"`
	ClientID string   `json:"clientID,omitempty"`
	Scopes   []string `json:"scopes,omitempty"`
	Audience string   `json:"audience,omitempty"`
}

// Credential schemes.
const (
	// SchemeBearer sends "Authorization: Bearer VALUE" (or the value in
	// the SDK's own key header, such as Anthropic's x-api-key).
	SchemeBearer = "bearer"
	// SchemeBasic sends "Authorization: Basic base64(username:VALUE)".
	SchemeBasic = "basic"
	// SchemeHeader sends the bare value in Credential.Header.
	SchemeHeader = "header"
	// SchemeOAuth2 is the OAuth 2.0 client credentials grant (RFC 6749
	// section 4.4): the access token is sent as a bearer token.
	SchemeOAuth2 = "oauth2"
)

// ConnectorOverride is what differs in one environment.
type ConnectorOverride struct {
	BaseURL    string      `json:"baseURL,omitempty"`
	Credential *Credential `json:"credential,omitempty"`
	Models     []string    `json:"models,omitempty"`
	// TLS replaces the connector's TLS settings in this environment.
	TLS *ConnectorTLS `json:"tls,omitempty"`
}

// ConnectorTLS is how a connector's connections are secured beyond the
// defaults (TLS 1.2 at least, the system's roots).
type ConnectorTLS struct {
	// ClientCertificate, for mutual TLS, is a vault secret holding a PEM
	// certificate chain and its private key. It is resolved for each
	// request, bound to hosts like any credential.
	ClientCertificate *TLSClientCertificate `json:"clientCertificate,omitempty"`
	// CABundle (PEM certificates) or CAFile (a file of them, relative to
	// the server's data dir unless absolute) replaces the system's roots
	// to verify the upstream's certificate.
	CABundle string `json:"caBundle,omitempty"`
	CAFile   string `json:"caFile,omitempty"`
	// MinVersion is "1.2" (the default) or "1.3".
	MinVersion string `json:"minVersion,omitempty"`
}

// TLSClientCertificate names where a client certificate comes from.
type TLSClientCertificate struct {
	Secret string `json:"secret"`
}

// ModelPrice is a price in US dollars per million tokens.
type ModelPrice struct {
	Input  float64 `json:"input"`
	Output float64 `json:"output"`
}

// LimitSpec is Limits as written in a resource.
type LimitSpec struct {
	RequestsPerMinute int `json:"requestsPerMinute,omitempty"`
	TokensPerMinute   int `json:"tokensPerMinute,omitempty"`
	// BudgetUSD per BudgetPeriod ("month" or "day"; month when empty).
	BudgetUSD    float64 `json:"budgetUSD,omitempty"`
	BudgetPeriod Period  `json:"budgetPeriod,omitempty"`
}

// OpenAISettings are the openai type's own settings.
type OpenAISettings struct {
	Organization string `json:"organization,omitempty"`
	// LegacyMaxTokens sends max_tokens instead of max_completion_tokens.
	LegacyMaxTokens bool `json:"legacyMaxTokens,omitempty"`
	// AzureAPIVersion, when set, speaks Azure OpenAI: BaseURL is the
	// resource's endpoint (https://NAME.openai.azure.com), the model is
	// the deployment name, and the key goes in the api-key header.
	AzureAPIVersion string `json:"azureAPIVersion,omitempty"`
}

// HTTPSettings are the http type's: a JSON request template and where the
// answer is in the JSON response (see connectors/httpjson).
type HTTPSettings struct {
	URL              string            `json:"url"`
	Method           string            `json:"method,omitempty"`
	Headers          map[string]string `json:"headers,omitempty"`
	Body             any               `json:"body,omitempty"`
	Response         string            `json:"response"`
	MaxResponseBytes int64             `json:"maxResponseBytes,omitempty"`
}

// LocalSettings are the local type's: labelled examples to train its
// classifier (steps may also bring their own).
type LocalSettings struct {
	Labels   []string  `json:"labels,omitempty"`
	Examples []Example `json:"examples,omitempty"`
}

// Example is a labelled text.
type Example struct {
	Text  string `json:"text"`
	Label string `json:"label"`
}

// ReplaySettings are the replay type's: the cassette file (relative to the
// server's data dir unless absolute) and, to record, the connector whose
// answers are recorded into it.
type ReplaySettings struct {
	Cassette string `json:"cassette"`
	Record   string `json:"record,omitempty"`
}

// Model is a model alias (kind Model): a name workflows and API clients use,
// resolved to an ordered chain of connector models tried in turn.
type Model struct {
	Name        string        `json:"name"`
	Description string        `json:"description,omitempty"`
	Chain       []ModelTarget `json:"chain"`
	// Environments replace the chain in the environments they name.
	Environments map[string][]ModelTarget `json:"environments,omitempty"`
}

// ModelTarget is one link of an alias's chain.
type ModelTarget struct {
	Connector string `json:"connector"`
	// Model is the upstream's model name; the connector's default when empty.
	Model string `json:"model,omitempty"`
}

// Resources is everything the gateway is configured with.
type Resources struct {
	Vendors    []Vendor
	Connectors []Connector
	Models     []Model
}
