package nodes

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/vault"
	"github.com/moatproject/moat/internal/workflow"
)

// Secrets is the vault as nodes see it: the only way a step gets a secret's
// plaintext. vault.Vault.Resolve checks the secret's environment and
// bindings and records the access before it returns the value, which the
// caller clears after use.
type Secrets interface {
	Resolve(ctx context.Context, a vault.Access, env, name string) ([]byte, error)
}

// httpCredentialConnector is the connector an http.request step's secret
// is resolved for: a secret is bound for such steps with
// `moat secret set NAME --connector http.request --host HOST`.
const httpCredentialConnector = "http.request"

// Credential schemes of an http.request step.
const (
	schemeBearer = "bearer" // Authorization: Bearer VALUE
	schemeBasic  = "basic"  // Authorization: Basic base64(username:VALUE)
	schemeHeader = "header" // the bare value in a header of the step's choice
)

var httpCredentialSchemes = []string{schemeBearer, schemeBasic, schemeHeader}

const (
	maxCredentialUsername = 256
	maxCredentialHeader   = 256
	// secretNamePattern is vault.ValidSecretName as a schema pattern.
	secretNamePattern = `^[A-Za-z][A-Za-z0-9_.-]{0,127}$`
	// headerNamePattern is an RFC 9110 field name (a token).
	headerNamePattern = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
)

// credentialReservedHeaders are headers a credential cannot be sent in:
// Go's client writes some of them itself and drops what a request's
// headers say, and the others are what the step's own request means.
var credentialReservedHeaders = []string{
	"Host", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection", "Keep-Alive",
	"Proxy-Connection", "Te", "Trailer", "Upgrade", "Idempotency-Key",
}

// httpCredentialSchema is the schema of `with.credential`. It holds names
// only: the value stays in the vault.
func httpCredentialSchema() map[string]any {
	s := object([]string{"secret"}, map[string]any{
		"secret": map[string]any{"type": "string", "pattern": secretNamePattern,
			"description": "the name of a vault secret of this server's environment, bound to connector http.request and to the request's host"},
		"scheme": map[string]any{"type": "string", "enum": []any{schemeBearer, schemeBasic, schemeHeader}, "default": schemeBearer,
			"description": "bearer: Authorization: Bearer VALUE; basic: the value is the password of username; header: the bare value in header"},
		"username": map[string]any{"type": "string", "minLength": 1, "maxLength": maxCredentialUsername, "description": "scheme basic's username"},
		"header":   map[string]any{"type": "string", "maxLength": maxCredentialHeader, "pattern": headerNamePattern, "description": "scheme header's header name, as in X-Api-Key"},
	})
	s["description"] = "a vault secret sent with each request, only to hosts the secret is bound to; set it with `moat secret set NAME --connector http.request --host HOST`"
	return s
}

// httpCredential is a step's `with.credential`: which secret and how it is
// sent, never the value.
type httpCredential struct {
	Secret   string
	Scheme   string
	Username string
	Header   string
}

// readHTTPCredential reads `with.credential` and refuses what its schema
// refuses, so a stored definition checked by an older schema still fails
// closed when it runs.
func readHTTPCredential(v any) (httpCredential, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return httpCredential{}, errors.New("credential: must be an object, as in {secret: NAME}")
	}
	var c httpCredential
	for _, k := range slices.Sorted(maps.Keys(m)) {
		s, ok := m[k].(string)
		switch {
		case k != "secret" && k != "scheme" && k != "username" && k != "header":
			return httpCredential{}, fmt.Errorf("credential: unknown field %q (secret, scheme, username, header)", k)
		case !ok:
			return httpCredential{}, fmt.Errorf("credential.%s: must be a string", k)
		}
		switch k {
		case "secret":
			c.Secret = s
		case "scheme":
			c.Scheme = s
		case "username":
			c.Username = s
		case "header":
			c.Header = s
		}
	}
	switch {
	case !vault.ValidSecretName(c.Secret):
		return httpCredential{}, errors.New("credential.secret: must name a vault secret: a letter, then letters, digits, '_', '-' or '.', at most 128")
	case hasKey(m, "scheme") && !slices.Contains(httpCredentialSchemes, c.Scheme):
		return httpCredential{}, fmt.Errorf("credential.scheme: must be one of %s", strings.Join(httpCredentialSchemes, ", "))
	case utf8.RuneCountInString(c.Username) > maxCredentialUsername || (hasKey(m, "username") && c.Username == ""):
		return httpCredential{}, fmt.Errorf("credential.username: must be 1 to %d characters", maxCredentialUsername)
	case len(c.Header) > maxCredentialHeader || (hasKey(m, "header") && !validHeaderName(c.Header)):
		return httpCredential{}, errors.New("credential.header: must be an HTTP header name")
	}
	if c.Scheme == "" {
		c.Scheme = schemeBearer
	}
	return c, nil
}

func hasKey(m map[string]any, k string) bool {
	_, ok := m[k]
	return ok
}

// problems are the rules across fields a schema does not say clearly:
// pointers are within `with`.
func (c httpCredential) problems() []workflow.FieldProblem {
	var out []workflow.FieldProblem
	add := func(field, msg string) {
		out = append(out, workflow.FieldProblem{Pointer: "/credential/" + field, Message: msg})
	}
	switch {
	case c.Scheme == schemeBasic && c.Username == "":
		add("username", "is required with scheme basic (the secret is the password)")
	case c.Scheme == schemeBasic && (strings.ContainsRune(c.Username, ':') || !printable(c.Username) || strings.Contains(c.Username, "{{")):
		add("username", "must be printable, without ':' and without a template")
	case c.Scheme != schemeBasic && c.Username != "":
		add("username", "only scheme basic has a username")
	}
	switch {
	case c.Scheme == schemeHeader && c.Header == "":
		add("header", "is required with scheme header: the header the value is sent in, as in X-Api-Key")
	case c.Scheme == schemeHeader && slices.ContainsFunc(credentialReservedHeaders, func(h string) bool { return strings.EqualFold(h, c.Header) }):
		add("header", c.Header+" cannot carry a credential; name a header such as X-Api-Key")
	case c.Scheme != schemeHeader && c.Header != "":
		add("header", "only scheme header names a header (bearer and basic use Authorization)")
	}
	return out
}

// headerName is the header the credential is sent in.
func (c httpCredential) headerName() string {
	if c.Scheme == schemeHeader {
		return c.Header
	}
	return "Authorization"
}

// headerValue is what the credential's header carries for value.
func (c httpCredential) headerValue(value []byte) string {
	switch c.Scheme {
	case schemeBasic:
		pair := append([]byte(c.Username+":"), value...)
		defer clear(pair)
		return "Basic " + base64.StdEncoding.EncodeToString(pair)
	case schemeHeader:
		return string(value)
	}
	return "Bearer " + string(value)
}

// checkHTTPCredential is Check's part for `with.credential`: a malformed
// one is the schema's to report; a header the credential sets must not be
// set by `headers` too; and a URL written out must not send it in clear.
func checkHTTPCredential(with map[string]any) []workflow.FieldProblem {
	v, ok := with["credential"]
	if !ok {
		return nil
	}
	c, err := readHTTPCredential(v)
	if err != nil {
		return nil
	}
	problems := c.problems()
	if h, ok := with["headers"].(map[string]any); ok {
		for _, k := range slices.Sorted(maps.Keys(h)) {
			if strings.EqualFold(k, c.headerName()) {
				problems = append(problems, workflow.FieldProblem{Pointer: "/headers/" + escapePointer(k),
					Message: "the credential sets " + c.headerName() + "; remove it from headers"})
			}
		}
	}
	if raw, ok := with["url"].(string); ok && !strings.Contains(raw, "{{") {
		if u, err := url.Parse(raw); err == nil && !clearTextAllowed(u) {
			problems = append(problems, workflow.FieldProblem{Pointer: "/url", Message: errClearTextCredential.Error()})
		}
	}
	return problems
}

var errClearTextCredential = errors.New("a credential is sent over https only (plain http only to a loopback host such as 127.0.0.1)")

// clearTextAllowed reports whether a credential may go to u: over https,
// or over plain http to this machine, where nothing is on the wire.
func clearTextAllowed(u *url.URL) bool {
	if u.Scheme == "https" {
		return true
	}
	if u.Scheme != "http" {
		return false
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}

// CredentialError is an http.request step whose credential was not given
// for a request: the vault refused (another host, connector or
// environment; expired), could not (sealed, missing), or the request would
// have carried it in clear. It never holds the value.
type CredentialError struct {
	Secret, Host string
	Err          error
}

func (e *CredentialError) Error() string {
	return fmt.Sprintf("credential: secret %s not given for %s: %v", e.Secret, e.Host, e.Err)
}

func (e *CredentialError) Unwrap() error { return e.Err }

// credentialTransport sends an http.request step's requests with its vault
// secret. The value is resolved for each request, for that request's host,
// so a redirect to another host is a new request the vault must allow
// again; and it is added to a copy of each request, so the client never
// carries it to the next hop itself.
type credentialTransport struct {
	base    http.RoundTripper
	cred    httpCredential
	secrets Secrets
	env     string
	// access is who asks; each request adds its host.
	access vault.Access

	mu sync.Mutex
	// sent are the values put on the wire, which the answer must not echo
	// into the step's output.
	sent []string
}

// newCredentialTransport prepares the credential of c's step.
func newCredentialTransport(c *Call, setting any) (*credentialTransport, error) {
	cred, err := readHTTPCredential(setting)
	if err != nil {
		return nil, Permanent(err)
	}
	if p := cred.problems(); len(p) > 0 {
		return nil, Permanent(fmt.Errorf("credential.%s: %s", strings.ReplaceAll(strings.TrimPrefix(p[0].Pointer, "/credential/"), "/", "."), p[0].Message))
	}
	if c.Env == nil || c.Env.Secrets == nil {
		return nil, Permanent(fmt.Errorf("credential: secret %s: this server has no vault, so the step cannot authenticate", cred.Secret))
	}
	access := vault.Access{Environment: c.Env.Environment, Connector: httpCredentialConnector, RunID: c.RunID}
	if c.Plan != nil && c.Plan.Definition != nil {
		access.Workflow = c.Plan.Definition.Project + "/" + c.Plan.Definition.Name
	}
	base := http.DefaultTransport
	if c.Env.HTTP != nil && c.Env.HTTP.Transport != nil {
		base = c.Env.HTTP.Transport
	}
	return &credentialTransport{base: base, cred: cred, secrets: c.Env.Secrets, env: c.Env.Environment, access: access}, nil
}

// client is a copy of base (its redirect policy, its timeout) that sends
// through t.
func (t *credentialTransport) client(base *http.Client) *http.Client {
	var c http.Client
	if base != nil {
		c = *base
	}
	c.Transport = t
	return &c
}

func (t *credentialTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	refuse := func(err error) (*http.Response, error) {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, &CredentialError{Secret: t.cred.Secret, Host: req.URL.Host, Err: err}
	}
	if !clearTextAllowed(req.URL) {
		return refuse(errClearTextCredential)
	}
	access := t.access
	access.Host = req.URL.Host
	value, err := t.secrets.Resolve(req.Context(), access, t.env, t.cred.Secret)
	if err != nil {
		return refuse(err)
	}
	defer clear(value)
	if !validHeaderValue(value) {
		return refuse(errors.New("the secret's value holds a line break or another control character; set it again without"))
	}
	header := t.cred.headerValue(value)
	t.mu.Lock()
	t.sent = append(t.sent, string(value), header)
	t.mu.Unlock()
	out := req.Clone(req.Context())
	out.Header.Set(t.cred.headerName(), header)
	return t.base.RoundTrip(out)
}

func (t *credentialTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

const redactedCredential = "[credential redacted]"

// redact removes from b what the transport sent: a server that echoes its
// request (a debugging endpoint, an error page) must not put the secret in
// the run's record.
func (t *credentialTransport) redact(b []byte) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.sent {
		if s != "" && bytes.Contains(b, []byte(s)) {
			b = bytes.ReplaceAll(b, []byte(s), []byte(redactedCredential))
		}
	}
	return b
}

func (t *credentialTransport) redactString(s string) string {
	return string(t.redact([]byte(s)))
}

// validHeaderValue: no control character but tab, which would end the
// header or be refused by the client.
func validHeaderValue(v []byte) bool {
	for _, c := range v {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// printable reports whether s holds no control character.
func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
