package gateway

import (
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/vault"
	"github.com/moatproject/moat/internal/workflow"
)

// Limits on a resource, so that a stored resource stays small enough to be
// loaded on every reload.
const (
	maxDescription    = 1000
	maxRegion         = 64
	maxEnvName        = 128
	maxModelNames     = 100
	maxModelName      = 200
	maxPrices         = 200
	maxChain          = 10
	maxEnvironments   = 20
	maxHTTPHeaders    = 50
	maxHeaderValue    = 8192
	maxURL            = 2048
	maxResponsePath   = 200
	maxResponseBytes  = 64 << 20
	maxLabels         = 1000
	maxLabel          = 200
	maxExamples       = 10_000
	maxExampleText    = 16 << 10
	maxCassettePath   = 1024
	maxOrganization   = 200
	maxAzureVersion   = 64
	maxConnectorLimit = 1 << 31
	maxTimeout        = 10 * time.Minute
)

// Limits on a credential's scheme settings.
const (
	maxCredentialField = 256
	maxScopes          = 50
)

var (
	// resourceNameRE is the rule of workflow and project names.
	resourceNameRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	envVarRE        = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)
	environmentRE   = regexp.MustCompile(`^[a-z][a-z0-9]{0,31}$`)
	azureVersionRE  = regexp.MustCompile(`^[A-Za-z0-9.-]+$`)
	vendorLocations = []string{OnPremises, PrivateCloud, ManagedService}
	connectorTypes  = []string{TypeOpenAI, TypeAnthropic, TypeHTTP, TypeLocal, TypeReplay}
	httpMethods     = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch}
)

// problems collects "field: message" lines.
type problems []string

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, field+": "+fmt.Sprintf(format, args...))
}

func checkName(p *problems, field, name string) {
	if !resourceNameRE.MatchString(name) {
		p.add(field, "must be 1 to 63 lower-case letters, digits and dashes, starting and ending with a letter or digit")
	}
}

func checkDescription(p *problems, d string) {
	if len(d) > maxDescription {
		p.add("description", "must be at most %d bytes", maxDescription)
	}
}

// CheckVendor lists every problem of one vendor, each as "field: message".
func CheckVendor(v Vendor) []string {
	var p problems
	checkName(&p, "name", v.Name)
	checkDescription(&p, v.Description)
	if !slices.Contains(vendorLocations, v.Location) {
		p.add("location", "must be one of %s", strings.Join(vendorLocations, ", "))
	}
	if len(v.Region) > maxRegion {
		p.add("region", "must be at most %d bytes", maxRegion)
	}
	if v.RetentionDays != nil && *v.RetentionDays < -1 {
		p.add("retentionDays", "must be -1 (unknown), 0 (nothing kept) or a number of days")
	}
	return p
}

// CheckConnector lists every problem of one connector on its own; the
// references to other resources are checked by Resources.Check.
func CheckConnector(c Connector) []string {
	var p problems
	checkName(&p, "name", c.Name)
	checkDescription(&p, c.Description)
	if !slices.Contains(connectorTypes, c.Type) {
		p.add("type", "must be one of %s", strings.Join(connectorTypes, ", "))
	}
	if c.Vendor == "" {
		p.add("vendor", "is required: the name of the Vendor that processes what this connector sends")
	} else {
		checkName(&p, "vendor", c.Vendor)
	}
	checkBaseURL(&p, "baseURL", c.Type, c.BaseURL)
	checkCredential(&p, "credential", c.Type, c.Credential)
	checkTLS(&p, "tls", c.Type, c.TLS)
	if c.Timeout != "" {
		d, err := workflow.ParseDuration(c.Timeout)
		switch {
		case err != nil:
			p.add("timeout", "must be a duration such as 60s or 2m")
		case d <= 0 || d > maxTimeout:
			p.add("timeout", "must be more than 0 and at most %s", maxTimeout)
		}
	}
	checkModelNames(&p, "models", c.Models)
	checkPrices(&p, c.Prices)
	checkLimits(&p, c.Limits)
	checkTypeSettings(&p, c)
	checkEnvironments(&p, c)
	return p
}

func checkBaseURL(p *problems, field, typ, base string) {
	if base == "" {
		return
	}
	if typ != TypeOpenAI && typ != TypeAnthropic {
		// An unknown type is reported once, under type.
		if slices.Contains(connectorTypes, typ) {
			p.add(field, "only openai and anthropic connectors have a base URL")
		}
		return
	}
	if len(base) > maxURL {
		p.add(field, "must be at most %d bytes", maxURL)
		return
	}
	// The URL is not repeated: it may be wrong in a way that carries a key.
	if err := connectors.CheckBaseURL(typ, base); err != nil {
		p.add(field, "must be an absolute http or https URL without user information")
	}
}

func checkCredential(p *problems, field, typ string, c *Credential) {
	if c == nil {
		return
	}
	switch {
	case c.Env == "" && c.Secret == "":
		p.add(field, "needs secret (the name of a vault secret, set with moat secret set) or env (an environment variable holding the value)")
	case c.Env != "" && c.Secret != "":
		p.add(field, "names both a vault secret and an environment variable; keep one")
	case c.Secret != "" && !vault.ValidSecretName(c.Secret):
		p.add(field+".secret", "must be a secret name: letters, digits, '_', '-' or '.', starting with a letter, at most 128")
	case c.Env != "" && (len(c.Env) > maxEnvName || !envVarRE.MatchString(c.Env)):
		p.add(field+".env", "must be an environment variable name (A-Z, 0-9 and _, not starting with a digit, at most %d)", maxEnvName)
	}
	if c.Header != "" {
		if typ != TypeHTTP {
			p.add(field+".header", "only http connectors choose the header their credential is sent in")
		} else if !validHeaderName(c.Header) {
			p.add(field+".header", "must be a valid HTTP header name")
		}
	}
	checkCredentialScheme(p, field, typ, c)
}

// checkCredentialScheme checks the scheme and the fields only some
// schemes have.
func checkCredentialScheme(p *problems, field, typ string, c *Credential) {
	if c.Scheme != "" && !slices.Contains(credentialSchemes, c.Scheme) {
		p.add(field+".scheme", "must be one of %s", strings.Join(credentialSchemes, ", "))
		return
	}
	scheme := c.scheme()
	switch {
	case c.Scheme == SchemeHeader && typ != TypeHTTP && slices.Contains(connectorTypes, typ):
		p.add(field+".scheme", "only http connectors send the bare value in a header of their choice")
	case scheme == SchemeHeader && c.Header == "" && typ == TypeHTTP:
		p.add(field+".header", "is required with scheme header: the header the value is sent in")
	}
	if scheme == SchemeBasic {
		switch {
		case c.Username == "":
			p.add(field+".username", "is required with scheme basic (the secret is the password)")
		case len(c.Username) > maxCredentialField || strings.ContainsRune(c.Username, ':') || !printable(c.Username):
			p.add(field+".username", "must be at most %d printable characters without ':'", maxCredentialField)
		}
	} else if c.Username != "" {
		p.add(field+".username", "only scheme basic has a username")
	}
	if scheme != SchemeOAuth2 {
		for _, f := range []struct {
			name string
			set  bool
		}{{"tokenURL", c.TokenURL != ""}, {"clientID", c.ClientID != ""}, {"scopes", len(c.Scopes) > 0}, {"audience", c.Audience != ""}} {
			if f.set {
				p.add(field+"."+f.name, "only scheme oauth2 has %s", f.name)
			}
		}
		return
	}
	checkTokenURL(p, field+".tokenURL", c.TokenURL)
	switch {
	case c.ClientID == "":
		p.add(field+".clientID", "is required with scheme oauth2 (the secret is the client secret)")
	case len(c.ClientID) > maxCredentialField || !printable(c.ClientID):
		p.add(field+".clientID", "must be at most %d printable characters", maxCredentialField)
	}
	if len(c.Scopes) > maxScopes {
		p.add(field+".scopes", "must list at most %d scopes", maxScopes)
	} else {
		for i, scope := range c.Scopes {
			if !validScope(scope) {
				p.add(fmt.Sprintf("%s.scopes[%d]", field, i), "must be 1 to %d characters, printable, without spaces, '\\' or '\"'", maxCredentialField)
			}
		}
	}
	if len(c.Audience) > maxURL || !printable(c.Audience) {
		p.add(field+".audience", "must be at most %d printable characters", maxURL)
	}
}

// checkTokenURL: https, or plain http to a loopback host only, since the
// client secret goes there.
func checkTokenURL(p *problems, field, raw string) {
	if raw == "" {
		p.add(field, "is required with scheme oauth2: the token endpoint's URL")
		return
	}
	if len(raw) > maxURL {
		p.add(field, "must be at most %d bytes", maxURL)
		return
	}
	// The URL is not repeated: it may be wrong in a way that carries a key.
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		p.add(field, "must be an absolute https URL")
	case u.Scheme != "https" && !(u.Scheme == "http" && loopbackHost(u.Hostname())):
		p.add(field, "must be https (plain http only to a loopback host such as 127.0.0.1): the client secret is sent there")
	case u.User != nil:
		p.add(field, "must not carry user information: the client secret comes from the credential")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		p.add(field, "must not have a fragment")
	default:
		for _, k := range slices.Sorted(maps.Keys(u.Query())) {
			if workflow.IsCredentialParam(k) {
				p.add(field, "query parameter %s looks like a credential: the client secret comes from the credential", k)
			}
		}
	}
}

// loopbackHost reports whether host (without a port) is this machine.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// validScope is an RFC 6749 scope-token, bounded.
func validScope(s string) bool {
	if s == "" || len(s) > maxCredentialField {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// printable reports whether s has no control character.
func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || !utf8.ValidRune(r) || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// checkTLS checks a connector's TLS settings; a CA bundle must parse now,
// so that a bad one is refused when it is applied.
func checkTLS(p *problems, field, typ string, t *ConnectorTLS) {
	if t == nil {
		return
	}
	if typ != TypeOpenAI && typ != TypeAnthropic && typ != TypeHTTP {
		if slices.Contains(connectorTypes, typ) {
			p.add(field, "only openai, anthropic and http connectors connect to an upstream")
		}
		return
	}
	if _, ok := tlsVersions[t.MinVersion]; !ok {
		p.add(field+".minVersion", "must be 1.2 or 1.3: nothing below TLS 1.2 is accepted")
	}
	if c := t.ClientCertificate; c != nil {
		switch {
		case c.Secret == "":
			p.add(field+".clientCertificate.secret", "is required: a vault secret holding the PEM certificate chain and private key")
		case !vault.ValidSecretName(c.Secret):
			p.add(field+".clientCertificate.secret", "must be a secret name: letters, digits, '_', '-' or '.', starting with a letter, at most 128")
		}
	}
	switch {
	case t.CABundle != "" && t.CAFile != "":
		p.add(field, "set caBundle or caFile, not both")
	case t.CABundle != "":
		if _, err := parseCABundle([]byte(t.CABundle)); err != nil {
			p.add(field+".caBundle", "%v", err)
		}
	case t.CAFile != "":
		if len(t.CAFile) > maxCAFilePath || strings.ContainsRune(t.CAFile, 0) {
			p.add(field+".caFile", "must be a file path of at most %d bytes", maxCAFilePath)
		}
	}
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func checkModelNames(p *problems, field string, models []string) {
	if len(models) > maxModelNames {
		p.add(field, "must list at most %d models", maxModelNames)
		return
	}
	seen := map[string]bool{}
	for i, m := range models {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case strings.TrimSpace(m) == "":
			p.add(f, "must not be empty")
		case len(m) > maxModelName:
			p.add(f, "must be at most %d bytes", maxModelName)
		case seen[m]:
			p.add(f, "is listed twice")
		}
		seen[m] = true
	}
}

func checkPrices(p *problems, prices map[string]ModelPrice) {
	if len(prices) > maxPrices {
		p.add("prices", "must list at most %d models", maxPrices)
		return
	}
	for _, m := range slices.Sorted(maps.Keys(prices)) {
		f := "prices." + m
		if m == "" || len(m) > maxModelName {
			p.add("prices", "model names must be 1 to %d bytes", maxModelName)
			continue
		}
		price := prices[m]
		if !nonNegative(price.Input) {
			p.add(f+".input", "must be a non-negative number")
		}
		if !nonNegative(price.Output) {
			p.add(f+".output", "must be a non-negative number")
		}
	}
}

func nonNegative(f float64) bool { return f >= 0 && !math.IsInf(f, 0) && !math.IsNaN(f) }

func checkLimits(p *problems, l *LimitSpec) {
	if l == nil {
		return
	}
	if l.RequestsPerMinute < 0 || l.RequestsPerMinute > maxConnectorLimit {
		p.add("limits.requestsPerMinute", "must be between 0 (no limit) and %d", maxConnectorLimit)
	}
	if l.TokensPerMinute < 0 || l.TokensPerMinute > maxConnectorLimit {
		p.add("limits.tokensPerMinute", "must be between 0 (no limit) and %d", maxConnectorLimit)
	}
	// The budget is kept in micro-dollars; beyond 1e12 dollars it would
	// not fit.
	if !nonNegative(l.BudgetUSD) || l.BudgetUSD > 1e12 {
		p.add("limits.budgetUSD", "must be a non-negative number of dollars (0 is no limit)")
	}
	if l.BudgetPeriod != "" && l.BudgetPeriod != Month && l.BudgetPeriod != Day {
		p.add("limits.budgetPeriod", "must be %s or %s", Month, Day)
	}
}

// checkTypeSettings checks that only the block of the connector's type is
// present, and what it holds.
func checkTypeSettings(p *problems, c Connector) {
	blocks := []struct {
		typ     string
		present bool
	}{
		{TypeOpenAI, c.OpenAI != nil}, {TypeHTTP, c.HTTP != nil}, {TypeLocal, c.Local != nil}, {TypeReplay, c.Replay != nil},
	}
	for _, b := range blocks {
		if b.present && b.typ != c.Type {
			p.add(b.typ, "only a connector of type %s has this block", b.typ)
		}
	}
	switch c.Type {
	case TypeOpenAI:
		if c.OpenAI != nil {
			checkOpenAI(p, c)
		}
	case TypeHTTP:
		if c.HTTP == nil {
			p.add("http", "is required for an http connector (url and response)")
			return
		}
		checkHTTP(p, *c.HTTP)
	case TypeLocal:
		if c.Local != nil {
			checkLocal(p, *c.Local)
		}
	case TypeReplay:
		if c.Replay == nil {
			p.add("replay", "is required for a replay connector (cassette)")
			return
		}
		checkReplay(p, *c.Replay)
	}
}

func checkOpenAI(p *problems, c Connector) {
	o := c.OpenAI
	if len(o.Organization) > maxOrganization {
		p.add("openai.organization", "must be at most %d bytes", maxOrganization)
	}
	if o.AzureAPIVersion != "" {
		if c.BaseURL == "" {
			p.add("openai.azureAPIVersion", "needs baseURL: the Azure resource's endpoint")
		}
		if len(o.AzureAPIVersion) > maxAzureVersion || !azureVersionRE.MatchString(o.AzureAPIVersion) {
			p.add("openai.azureAPIVersion", "must be an API version such as 2024-10-21")
		}
	}
}

func checkHTTP(p *problems, h HTTPSettings) {
	if h.URL == "" {
		p.add("http.url", "is required")
	} else if len(h.URL) > maxURL {
		p.add("http.url", "must be at most %d bytes", maxURL)
	} else if u, err := url.Parse(h.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add("http.url", "must be an absolute http or https URL")
	} else {
		if u.User != nil {
			p.add("http.url", "must not carry user information: a credential comes from the connector's credential")
		}
		for _, k := range slices.Sorted(maps.Keys(u.Query())) {
			if workflow.IsCredentialParam(k) {
				p.add("http.url", "query parameter %s looks like a credential: a credential comes from the connector's credential", k)
			}
		}
	}
	if h.Method != "" && !slices.Contains(httpMethods, h.Method) {
		p.add("http.method", "must be one of %s", strings.Join(httpMethods, ", "))
	}
	if len(h.Headers) > maxHTTPHeaders {
		p.add("http.headers", "must have at most %d headers", maxHTTPHeaders)
	} else {
		for _, k := range slices.Sorted(maps.Keys(h.Headers)) {
			f := "http.headers." + k
			v := h.Headers[k]
			switch {
			case !validHeaderName(k):
				p.add("http.headers", "a header name is not a valid HTTP header name")
			case workflow.IsCredentialHeader(k) && v != "":
				p.add(f, "must not hold a literal credential: set credential.env (and credential.header) instead")
			case len(v) > maxHeaderValue:
				p.add(f, "must be at most %d bytes", maxHeaderValue)
			case strings.ContainsAny(v, "\r\n\x00"):
				p.add(f, "must not contain a line break or NUL")
			}
		}
	}
	switch {
	case strings.TrimSpace(h.Response) == "":
		p.add("http.response", "is required: the dotted path of the answer in the JSON response, such as choices.0.text")
	case len(h.Response) > maxResponsePath || slices.Contains(strings.Split(h.Response, "."), ""):
		p.add("http.response", "must be a dotted path of non-empty segments, at most %d bytes", maxResponsePath)
	}
	if h.MaxResponseBytes < 0 || h.MaxResponseBytes > maxResponseBytes {
		p.add("http.maxResponseBytes", "must be between 0 (the default) and %d", maxResponseBytes)
	}
}

func checkLocal(p *problems, l LocalSettings) {
	if len(l.Labels) > maxLabels {
		p.add("local.labels", "must list at most %d labels", maxLabels)
	}
	for i, label := range l.Labels {
		if label == "" || len(label) > maxLabel {
			p.add(fmt.Sprintf("local.labels[%d]", i), "must be 1 to %d bytes", maxLabel)
		}
	}
	if len(l.Examples) > maxExamples {
		p.add("local.examples", "must list at most %d examples", maxExamples)
		return
	}
	for i, e := range l.Examples {
		f := fmt.Sprintf("local.examples[%d]", i)
		if strings.TrimSpace(e.Text) == "" || len(e.Text) > maxExampleText {
			p.add(f+".text", "must be 1 to %d bytes", maxExampleText)
		}
		switch {
		case e.Label == "" || len(e.Label) > maxLabel:
			p.add(f+".label", "must be 1 to %d bytes", maxLabel)
		case len(l.Labels) > 0 && !slices.Contains(l.Labels, e.Label):
			p.add(f+".label", "is not one of local.labels")
		}
	}
}

func checkReplay(p *problems, r ReplaySettings) {
	switch {
	case r.Cassette == "":
		p.add("replay.cassette", "is required: the cassette file, relative to the data dir unless absolute")
	case len(r.Cassette) > maxCassettePath || strings.ContainsRune(r.Cassette, 0):
		p.add("replay.cassette", "must be a file path of at most %d bytes", maxCassettePath)
	}
	if r.Record != "" {
		checkName(p, "replay.record", r.Record)
	}
}

func checkEnvironments(p *problems, c Connector) {
	if len(c.Environments) > maxEnvironments {
		p.add("environments", "must name at most %d environments", maxEnvironments)
		return
	}
	for _, env := range slices.Sorted(maps.Keys(c.Environments)) {
		if !environmentRE.MatchString(env) {
			p.add("environments", "environment names are lower-case words such as dev, staging or prod")
			continue
		}
		f := "environments." + env
		o := c.Environments[env]
		checkBaseURL(p, f+".baseURL", c.Type, o.BaseURL)
		checkCredential(p, f+".credential", c.Type, o.Credential)
		checkTLS(p, f+".tls", c.Type, o.TLS)
		checkModelNames(p, f+".models", o.Models)
	}
}

// CheckModel lists every problem of one model alias on its own.
func CheckModel(m Model) []string {
	var p problems
	checkName(&p, "name", m.Name)
	checkDescription(&p, m.Description)
	checkChain(&p, "chain", m.Chain)
	if len(m.Environments) > maxEnvironments {
		p.add("environments", "must name at most %d environments", maxEnvironments)
		return p
	}
	for _, env := range slices.Sorted(maps.Keys(m.Environments)) {
		if !environmentRE.MatchString(env) {
			p.add("environments", "environment names are lower-case words such as dev, staging or prod")
			continue
		}
		checkChain(&p, "environments."+env, m.Environments[env])
	}
	return p
}

func checkChain(p *problems, field string, chain []ModelTarget) {
	if len(chain) == 0 || len(chain) > maxChain {
		p.add(field, "must list 1 to %d targets", maxChain)
		return
	}
	for i, t := range chain {
		f := fmt.Sprintf("%s[%d]", field, i)
		if t.Connector == "" {
			p.add(f+".connector", "is required")
		} else {
			checkName(p, f+".connector", t.Connector)
		}
		if len(t.Model) > maxModelName {
			p.add(f+".model", "must be at most %d bytes", maxModelName)
		}
	}
}

// ResourceProblem is one problem of one resource. Message starts with the
// field it is about ("location: must be …").
type ResourceProblem struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Message string `json:"message"`
}

// Field is the field the problem is about, "" when it names none.
func (p ResourceProblem) Field() string {
	field, _, ok := strings.Cut(p.Message, ": ")
	if !ok || strings.ContainsAny(field, " \"") {
		return ""
	}
	return field
}

// ResourceError lists every problem of a set of resources.
type ResourceError struct {
	Problems []ResourceProblem
}

func (e *ResourceError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gateway: %d problem(s) in resources", len(e.Problems))
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n  %s %s: %s", p.Kind, p.Name, p.Message)
	}
	return b.String()
}

// Check checks every resource and the references between them, and lists
// every problem at once in a *ResourceError, or returns nil.
func (r Resources) Check() error {
	var out []ResourceProblem
	add := func(kind, name string, msgs []string) {
		for _, m := range msgs {
			out = append(out, ResourceProblem{Kind: kind, Name: name, Message: m})
		}
	}
	vendors := map[string]bool{}
	for _, v := range r.Vendors {
		add(KindVendor, v.Name, CheckVendor(v))
		if vendors[v.Name] {
			add(KindVendor, v.Name, []string{"name: another vendor has this name"})
		}
		vendors[v.Name] = true
	}
	byName := map[string]Connector{}
	for _, c := range r.Connectors {
		add(KindConnector, c.Name, CheckConnector(c))
		if _, dup := byName[c.Name]; dup {
			add(KindConnector, c.Name, []string{"name: another connector has this name"})
		}
		byName[c.Name] = c
	}
	for _, c := range r.Connectors {
		if c.Vendor != "" && !vendors[c.Vendor] {
			add(KindConnector, c.Name, []string{fmt.Sprintf("vendor: no vendor named %q; apply the Vendor first", c.Vendor)})
		}
		if c.Replay != nil && c.Replay.Record != "" {
			switch rec, ok := byName[c.Replay.Record]; {
			case !ok:
				add(KindConnector, c.Name, []string{fmt.Sprintf("replay.record: no connector named %q", c.Replay.Record)})
			case rec.Type == TypeReplay:
				add(KindConnector, c.Name, []string{fmt.Sprintf("replay.record: connector %q is itself a replay connector", c.Replay.Record)})
			}
		}
	}
	models := map[string]bool{}
	for _, m := range r.Models {
		add(KindModel, m.Name, CheckModel(m))
		if models[m.Name] {
			add(KindModel, m.Name, []string{"name: another model has this name"})
		}
		models[m.Name] = true
		chains := map[string][]ModelTarget{"chain": m.Chain}
		for env, chain := range m.Environments {
			chains["environments."+env] = chain
		}
		for _, field := range slices.Sorted(maps.Keys(chains)) {
			for i, t := range chains[field] {
				if t.Connector == "" {
					continue
				}
				f := fmt.Sprintf("%s[%d]", field, i)
				c, ok := byName[t.Connector]
				switch {
				case !ok:
					add(KindModel, m.Name, []string{fmt.Sprintf("%s.connector: no connector named %q; apply the Connector first", f, t.Connector)})
				case t.Model != "" && len(c.Models) > 0 && !slices.Contains(c.Models, t.Model):
					add(KindModel, m.Name, []string{fmt.Sprintf("%s.model: connector %q does not list this model in its models", f, t.Connector)})
				}
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return &ResourceError{Problems: out}
}

// Dependents names the resources ("Connector openai") that refer to the
// resource kind/name, which therefore cannot be deleted while they exist.
func (r Resources) Dependents(kind, name string) []string {
	var out []string
	switch kind {
	case KindVendor:
		for _, c := range r.Connectors {
			if c.Vendor == name {
				out = append(out, KindConnector+" "+c.Name)
			}
		}
	case KindConnector:
		for _, c := range r.Connectors {
			if c.Replay != nil && c.Replay.Record == name && c.Name != name {
				out = append(out, KindConnector+" "+c.Name)
			}
		}
		for _, m := range r.Models {
			if modelUses(m, name) {
				out = append(out, KindModel+" "+m.Name)
			}
		}
	}
	return out
}

func modelUses(m Model, connector string) bool {
	uses := func(chain []ModelTarget) bool {
		return slices.ContainsFunc(chain, func(t ModelTarget) bool { return t.Connector == connector })
	}
	if uses(m.Chain) {
		return true
	}
	for _, chain := range m.Environments {
		if uses(chain) {
			return true
		}
	}
	return false
}
