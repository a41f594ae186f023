package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/connectors/anthropic"
	"github.com/moatproject/moat/internal/connectors/httpjson"
	"github.com/moatproject/moat/internal/connectors/local"
	"github.com/moatproject/moat/internal/connectors/openai"
	"github.com/moatproject/moat/internal/connectors/replay"
	"github.com/moatproject/moat/internal/workflow"
)

// CatalogOptions are what BuildCatalog needs besides the resources.
type CatalogOptions struct {
	Environment string
	HTTPClient  *http.Client
	DataDir     string
	Getenv      func(string) string
	// Secrets gives the credentials connectors name as vault secrets; a
	// connector naming one fails closed at each call when it is nil.
	Secrets SecretResolver
	// Now is the clock OAuth 2.0 access tokens age by; time.Now when nil.
	Now func() time.Time
}

// Catalog is the resources compiled for one environment: connectors built,
// aliases resolved. It is immutable and safe for concurrent use.
type Catalog struct {
	env string
	// connectors usable here, by name.
	connectors map[string]*catalogConnector
	// defined lists every connector of the resources, usable here or not,
	// so that an error can tell "not here" from "no such connector".
	defined map[string]bool
	// aliases by name; an alias with no usable target has an empty chain.
	aliases map[string][]RouteTarget
	// usableAliases are the names of the aliases with a target, sorted.
	usableAliases []string
	models        []ModelInfo
}

// catalogConnector is a connector as built for this environment.
type catalogConnector struct {
	name   string
	conn   connectors.Connector
	vendor Vendor
	// models allowed, in order (the first is the default); empty allows any.
	models []string
	prices map[string]Price
	free   bool
	limits *Limits
}

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

// Bounds on what the catalog converts and repeats.
const (
	// maxPriceUSD per million tokens: far above any real price, far below
	// what micro-dollars in an int64 can hold.
	maxPriceUSD = 1e6
	// maxBudgetUSD of one limit, for the same reason.
	maxBudgetUSD = 1e12
	// maxKnownInError is how many alias names an unknown-model error lists.
	maxKnownInError = 20
	// maxNameInError bounds a caller-supplied name repeated in an error.
	maxNameInError = 128
)

// CredentialMissingError is why every call of a connector whose credential
// cannot be had fails: its environment variable is not set, or it names a
// vault secret on a server without a vault. It names where the credential
// should come from, never a value.
type CredentialMissingError struct {
	Connector string
	// Missing says what is missing, as "environment variable X is not set".
	Missing string
}

func (e *CredentialMissingError) Error() string {
	return fmt.Sprintf("connector %s: credential %s", e.Connector, e.Missing)
}

// BuildCatalog checks res (Resources.Check) and builds every connector
// usable in opts.Environment.
func BuildCatalog(res Resources, opts CatalogOptions) (*Catalog, error) {
	if err := res.Check(); err != nil {
		return nil, err
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	// One transport for the catalog's connectors, refusing TLS below 1.2.
	opts.HTTPClient = hardenedClient(opts.HTTPClient)
	vendors := make(map[string]Vendor, len(res.Vendors))
	for _, v := range res.Vendors {
		vendors[v.Name] = v
	}
	c := &Catalog{
		env:        opts.Environment,
		connectors: map[string]*catalogConnector{},
		defined:    map[string]bool{},
		aliases:    map[string][]RouteTarget{},
	}
	specs := map[string]Connector{}
	for _, spec := range res.Connectors {
		c.defined[spec.Name] = true
		if eff, ok := effectiveConnector(spec, opts.Environment); ok {
			specs[spec.Name] = eff
		}
	}
	// Dependency order: a recording replay connector wraps another one, so
	// every other connector is built first.
	names := make([]string, 0, len(specs))
	for name := range specs {
		names = append(names, name)
	}
	slices.Sort(names)
	slices.SortStableFunc(names, func(a, b string) int {
		return boolOrder(specs[a].Type == TypeReplay) - boolOrder(specs[b].Type == TypeReplay)
	})
	for _, name := range names {
		spec := specs[name]
		vendor, ok := vendors[spec.Vendor]
		if !ok {
			return nil, fmt.Errorf("gateway: connector %s: vendor %q is not defined", name, spec.Vendor)
		}
		built, err := c.build(spec, opts)
		if err != nil {
			return nil, fmt.Errorf("gateway: connector %s: %w", name, err)
		}
		cc := &catalogConnector{name: name, conn: built, vendor: vendor, models: slices.Clone(spec.Models), free: spec.Type == TypeLocal}
		if cc.prices, err = convertPrices(spec.Prices); err != nil {
			return nil, fmt.Errorf("gateway: connector %s: %w", name, err)
		}
		if cc.limits, err = convertLimits(spec.Limits); err != nil {
			return nil, fmt.Errorf("gateway: connector %s: %w", name, err)
		}
		c.connectors[name] = cc
	}
	for _, m := range res.Models {
		chain := m.Chain
		if envChain, ok := m.Environments[opts.Environment]; ok {
			chain = envChain
		}
		targets := make([]RouteTarget, 0, len(chain))
		for _, link := range chain {
			cc, ok := c.connectors[link.Connector]
			if !ok {
				if !c.defined[link.Connector] {
					return nil, fmt.Errorf("gateway: model alias %s: connector %q is not defined", m.Name, link.Connector)
				}
				continue // defined, but not usable in this environment
			}
			model := link.Model
			if model == "" {
				model = cc.defaultModel()
			}
			if !cc.allows(model) {
				return nil, fmt.Errorf("gateway: model alias %s: connector %s does not allow model %q in environment %q (allowed: %s)",
					m.Name, cc.name, model, opts.Environment, strings.Join(cc.models, ", "))
			}
			targets = append(targets, cc.target(model))
		}
		c.aliases[m.Name] = targets
		if len(targets) > 0 {
			c.usableAliases = append(c.usableAliases, m.Name)
		}
	}
	slices.Sort(c.usableAliases)
	c.models = c.listModels()
	return c, nil
}

func boolOrder(b bool) int {
	if b {
		return 1
	}
	return 0
}

// effectiveConnector is spec as it is in env, or false when it may not be
// used there.
func effectiveConnector(spec Connector, env string) (Connector, bool) {
	if len(spec.Environments) == 0 {
		return spec, true
	}
	over, ok := spec.Environments[env]
	if !ok {
		return Connector{}, false
	}
	if over.BaseURL != "" {
		spec.BaseURL = over.BaseURL
	}
	if over.Credential != nil {
		spec.Credential = over.Credential
	}
	if len(over.Models) > 0 {
		spec.Models = over.Models
	}
	if over.TLS != nil {
		spec.TLS = over.TLS
	}
	return spec, true
}

// build constructs the connector of spec; connectors it depends on are
// already in c.connectors.
func (c *Catalog) build(spec Connector, opts CatalogOptions) (connectors.Connector, error) {
	var timeout time.Duration
	if spec.Timeout != "" {
		d, err := workflow.ParseDuration(spec.Timeout)
		if err != nil {
			return nil, fmt.Errorf("timeout: %w", err)
		}
		if d <= 0 {
			return nil, errors.New("timeout must be positive")
		}
		timeout = d
	}
	settings, err := loadConnectorTLS(spec.TLS, opts.DataDir)
	if err != nil {
		return nil, err
	}
	client, err := connectorHTTPClient(opts.HTTPClient, settings, spec, opts)
	if err != nil {
		return nil, err
	}
	// A credential that is configured but not set does not stop the
	// catalog (other connectors still work); the connector fails closed at
	// each call instead.
	cred, err := buildCredential(spec, opts, opts.HTTPClient, client, settings)
	if err != nil {
		return nil, err
	}
	secret, missing := cred.key, cred.missing
	if settings.clientCertificate != "" && opts.Secrets == nil && missing == "" {
		missing = "vault secret " + settings.clientCertificate + " for the client certificate (this server has no vault)"
	}
	opts.HTTPClient = timeUpstream(directPlainHTTP(cred.client))
	switch spec.Type {
	case TypeOpenAI:
		cfg := openai.Config{BaseURL: spec.BaseURL, APIKey: secret, Timeout: timeout, HTTPClient: opts.HTTPClient}
		if s := spec.OpenAI; s != nil {
			cfg.Organization = s.Organization
			cfg.LegacyMaxTokens = s.LegacyMaxTokens
			cfg.AzureAPIVersion = s.AzureAPIVersion
		}
		if missing != "" {
			// Built with a stand-in key (Azure requires one) only so that
			// bad settings fail now rather than at the first call; this
			// connector is then dropped.
			cfg.APIKey = "credential-not-set"
			if _, err := openai.New(cfg); err != nil {
				return nil, err
			}
			return missingCredential(spec, missing), nil
		}
		return openai.New(cfg)
	case TypeAnthropic:
		conn, err := anthropic.New(anthropic.Config{BaseURL: spec.BaseURL, APIKey: secret, Timeout: timeout, HTTPClient: opts.HTTPClient})
		if err != nil || missing == "" {
			return conn, err
		}
		return missingCredential(spec, missing), nil
	case TypeHTTP:
		if spec.HTTP == nil {
			return nil, errors.New("type http needs http settings")
		}
		cfg := httpjson.Config{
			URL:              spec.HTTP.URL,
			Method:           spec.HTTP.Method,
			Body:             spec.HTTP.Body,
			Response:         spec.HTTP.Response,
			Timeout:          timeout,
			HTTPClient:       opts.HTTPClient,
			MaxResponseBytes: spec.HTTP.MaxResponseBytes,
		}
		cfg.Headers = httpHeaders(spec.HTTP.Headers, spec.Credential, secret)
		conn, err := httpjson.New(cfg)
		if err != nil || missing == "" {
			return conn, err
		}
		return missingCredential(spec, missing), nil
	case TypeLocal:
		var cfg local.Config
		if s := spec.Local; s != nil {
			cfg.Labels = slices.Clone(s.Labels)
			cfg.Examples = make([]connectors.Example, len(s.Examples))
			for i, ex := range s.Examples {
				cfg.Examples[i] = connectors.Example{Text: ex.Text, Label: ex.Label}
			}
		}
		return local.New(cfg)
	case TypeReplay:
		return c.buildReplay(spec, opts)
	}
	return nil, fmt.Errorf("unknown type %q", truncateName(spec.Type))
}

func (c *Catalog) buildReplay(spec Connector, opts CatalogOptions) (connectors.Connector, error) {
	if spec.Replay == nil || spec.Replay.Cassette == "" {
		return nil, errors.New("type replay needs a cassette")
	}
	path := spec.Replay.Cassette
	if !filepath.IsAbs(path) {
		if opts.DataDir == "" {
			return nil, errors.New("the cassette path is relative and no data directory is set")
		}
		path = filepath.Join(opts.DataDir, path)
	}
	if spec.Replay.Record == "" {
		return replay.NewPlayer(path)
	}
	inner, ok := c.connectors[spec.Replay.Record]
	if !ok {
		if c.defined[spec.Replay.Record] {
			return nil, fmt.Errorf("records connector %s, which may not be used in environment %q", spec.Replay.Record, c.env)
		}
		return nil, fmt.Errorf("records connector %q, which is not defined", truncateName(spec.Replay.Record))
	}
	if _, isReplay := inner.conn.(*replay.Recorder); isReplay {
		return nil, fmt.Errorf("records connector %s, which is itself a replay connector", spec.Replay.Record)
	}
	if _, isReplay := inner.conn.(*replay.Player); isReplay {
		return nil, fmt.Errorf("records connector %s, which is itself a replay connector", spec.Replay.Record)
	}
	// A first recording may go to a directory that does not exist yet.
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create the cassette's directory: %w", err)
	}
	return replay.NewRecorder(inner.conn, path)
}

// credentialMissing stands for a connector whose credential is not set:
// every call fails, permanently, naming the variable.
type credentialMissing struct {
	kind string
	err  error
}

func missingCredential(spec Connector, missing string) connectors.Connector {
	return &credentialMissing{
		kind: spec.Type,
		// Rejected: retrying or falling back to the same connector cannot
		// help until the credential is configured and the server restarted.
		err: &connectors.UpstreamError{Kind: connectors.ErrRejected, Err: &CredentialMissingError{Connector: spec.Name, Missing: missing}},
	}
}

func (m *credentialMissing) Kind() string { return m.kind }

func (m *credentialMissing) Chat(context.Context, connectors.Request) (connectors.Response, error) {
	return connectors.Response{}, m.err
}

func (m *credentialMissing) ChatStream(context.Context, connectors.Request, func(connectors.Chunk) error) error {
	return m.err
}

func convertPrices(prices map[string]ModelPrice) (map[string]Price, error) {
	out := make(map[string]Price, len(prices))
	for model, p := range prices {
		in, err := microDollars(p.Input, maxPriceUSD)
		if err != nil {
			return nil, fmt.Errorf("input price of model %q: %w", truncateName(model), err)
		}
		outp, err := microDollars(p.Output, maxPriceUSD)
		if err != nil {
			return nil, fmt.Errorf("output price of model %q: %w", truncateName(model), err)
		}
		out[model] = Price{InputPerMillion: in, OutputPerMillion: outp}
	}
	return out, nil
}

func convertLimits(spec *LimitSpec) (*Limits, error) {
	if spec == nil {
		return nil, nil
	}
	if spec.RequestsPerMinute < 0 || spec.TokensPerMinute < 0 {
		return nil, errors.New("limits must not be negative")
	}
	budget, err := microDollars(spec.BudgetUSD, maxBudgetUSD)
	if err != nil {
		return nil, fmt.Errorf("budget: %w", err)
	}
	period := spec.BudgetPeriod
	switch period {
	case "":
		period = Month
	case Month, Day:
	default:
		return nil, fmt.Errorf("budget period %q is neither %q nor %q", truncateName(string(period)), Month, Day)
	}
	return &Limits{RequestsPerMinute: spec.RequestsPerMinute, TokensPerMinute: spec.TokensPerMinute, Budget: budget, BudgetPeriod: period}, nil
}

// microDollars converts US dollars to micro-dollars, refusing what is not
// a finite amount between 0 and max.
func microDollars(usd, max float64) (int64, error) {
	if math.IsNaN(usd) || usd < 0 || usd > max {
		return 0, fmt.Errorf("amount must be between 0 and %g US dollars", max)
	}
	return int64(math.Round(usd * 1e6)), nil
}

func (cc *catalogConnector) defaultModel() string {
	if len(cc.models) > 0 {
		return cc.models[0]
	}
	return ""
}

func (cc *catalogConnector) allows(model string) bool {
	return len(cc.models) == 0 || slices.Contains(cc.models, model)
}

// target is the route target of one model of this connector; each has its
// own copies, so no caller can change what another sees.
func (cc *catalogConnector) target(model string) RouteTarget {
	name := cc.name
	if model != "" {
		name += "/" + model
	}
	t := RouteTarget{
		Target:        Target{Name: name, Connector: cc.conn, Model: model},
		ConnectorName: cc.name,
		Vendor:        cc.vendor,
		Free:          cc.free,
	}
	if cc.free {
		t.Price = &Price{Free: true}
	} else if p, ok := cc.prices[model]; ok {
		t.Price = &p
	}
	if cc.limits != nil {
		l := *cc.limits
		t.Limits = &l
	}
	return t
}

func (c *Catalog) listModels() []ModelInfo {
	out := make([]ModelInfo, 0, len(c.usableAliases))
	for _, name := range c.usableAliases {
		out = append(out, ModelInfo{ID: name})
	}
	var pairs []ModelInfo
	for _, cc := range c.connectors {
		for _, m := range cc.models {
			pairs = append(pairs, ModelInfo{ID: cc.name + "/" + m, Connector: cc.name, Vendor: cc.vendor.Name})
		}
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].ID < pairs[j].ID })
	return append(out, pairs...)
}

// Resolve finds the route for an alias (connector == "") or for a
// connector's model (model "" for its default); an unknown name is a
// *Error with CodeUnknownModel.
func (c *Catalog) Resolve(alias, connector, model string) (Route, error) {
	switch {
	case connector != "" && alias != "":
		return Route{}, &Error{Stage: "shape", Code: CodeUnknownModel, Message: "name either a model alias or a connector, not both"}
	case connector != "":
		return c.resolveConnector(connector, model)
	case alias == "":
		return Route{}, &Error{Stage: "shape", Code: CodeUnknownModel, Message: "no model named: give a model alias or a connector"}
	}
	targets, ok := c.aliases[alias]
	if !ok {
		return Route{}, &Error{Stage: "shape", Code: CodeUnknownModel, Message: fmt.Sprintf("unknown model %q: no alias of that name (%s)", truncateName(alias), c.knownAliases())}
	}
	if len(targets) == 0 {
		return Route{}, &Error{Stage: "who", Code: CodeUnknownModel, Message: fmt.Sprintf("model alias %s has no connector usable in environment %s", alias, c.envName())}
	}
	return Route{Alias: alias, Targets: slices.Clone(targets)}, nil
}

func (c *Catalog) resolveConnector(name, model string) (Route, error) {
	cc, ok := c.connectors[name]
	if !ok {
		if c.defined[name] {
			return Route{}, &Error{Stage: "who", Code: CodeUnknownModel, Message: fmt.Sprintf("connector %s may not be used in environment %s", name, c.envName())}
		}
		return Route{}, &Error{Stage: "shape", Code: CodeUnknownModel, Message: fmt.Sprintf("unknown connector %q", truncateName(name))}
	}
	if model == "" {
		model = cc.defaultModel()
	}
	if !cc.allows(model) {
		return Route{}, &Error{Stage: "shape", Code: CodeUnknownModel, Message: fmt.Sprintf("connector %s does not allow model %q (allowed: %s)", name, truncateName(model), strings.Join(cc.models, ", "))}
	}
	return Route{Targets: []RouteTarget{cc.target(model)}}, nil
}

func (c *Catalog) knownAliases() string {
	if len(c.usableAliases) == 0 {
		return "no alias is usable here"
	}
	shown := c.usableAliases[:min(len(c.usableAliases), maxKnownInError)]
	s := "known: " + strings.Join(shown, ", ")
	if more := len(c.usableAliases) - len(shown); more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

func (c *Catalog) envName() string {
	if c.env == "" {
		return `""`
	}
	return c.env
}

// truncateName bounds a name taken from a request or a resource before it
// is repeated in an error.
func truncateName(s string) string {
	if len(s) <= maxNameInError {
		return s
	}
	cut := maxNameInError
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// HasConnector reports whether a connector of that name is usable here.
func (c *Catalog) HasConnector(name string) bool {
	_, ok := c.connectors[name]
	return ok
}

// HasModel reports whether an alias of that name is usable here.
func (c *Catalog) HasModel(name string) bool {
	return len(c.aliases[name]) > 0
}

// Models lists the aliases and connector models usable here, sorted.
func (c *Catalog) Models() []ModelInfo { return slices.Clone(c.models) }

// Connector returns a built connector by name.
func (c *Catalog) Connector(name string) (connectors.Connector, bool) {
	cc, ok := c.connectors[name]
	if !ok {
		return nil, false
	}
	return cc.conn, true
}

// Environment is the environment the catalog was built for.
func (c *Catalog) Environment() string { return c.env }

// directPlainHTTP is c sending plain-HTTP requests through a
// connectors.DirectTransport, when c's transport is net/http's own (a
// client-certificate transport is for TLS alone and stays as it is).
func directPlainHTTP(c *http.Client) *http.Client {
	t, ok := c.Transport.(*http.Transport)
	if !ok {
		return c
	}
	out := *c
	out.Transport = connectors.NewDirectTransport(t)
	return &out
}
