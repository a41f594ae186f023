package gateway

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/moatproject/moat/internal/connectors"
)

// credentialSchemes are the schemes a credential may name.
var credentialSchemes = []string{SchemeBearer, SchemeBasic, SchemeHeader, SchemeOAuth2}

// scheme is the credential's scheme, the default when it names none: the
// bare value in a header other than Authorization, else bearer.
func (c *Credential) scheme() string {
	switch {
	case c.Scheme != "":
		return c.Scheme
	case c.Header != "" && !strings.EqualFold(c.Header, "Authorization"):
		return SchemeHeader
	}
	return SchemeBearer
}

// connectorCredential is what a connector is built with for its
// credential.
type connectorCredential struct {
	// key is what the connector's SDK or template holds where the
	// credential goes: an environment variable's value, or a marker that
	// the credential transport replaces in each request.
	key string
	// missing, when not "", says why the credential cannot be had; every
	// call of the connector then fails.
	missing string
	// client sends the connector's requests.
	client *http.Client
}

// buildCredential prepares spec's credential. client sends the
// connector's requests (with its TLS settings); base is the catalog's
// client, which an OAuth 2.0 token request starts from.
func buildCredential(spec Connector, opts CatalogOptions, base, client *http.Client, settings connectorTLS) (connectorCredential, error) {
	out := connectorCredential{client: client}
	cred := spec.Credential
	if cred == nil {
		return out, nil
	}
	scheme := cred.scheme()
	t := &credentialTransport{connector: spec.Name, scheme: scheme, username: cred.Username, header: "Authorization"}
	if spec.Type == TypeHTTP && cred.Header != "" {
		t.header = cred.Header
	}
	switch {
	case cred.Secret != "" && opts.Secrets == nil:
		out.missing = "vault secret " + cred.Secret + " (this server has no vault)"
		return out, nil
	case cred.Secret != "":
		t.secret = cred.Secret
		t.source = vaultSecretSource{secrets: opts.Secrets, env: opts.Environment, connector: spec.Name, name: cred.Secret}
	default:
		value := opts.Getenv(cred.Env)
		if value == "" {
			out.missing = "environment variable " + cred.Env + " is not set"
			return out, nil
		}
		if scheme == SchemeBearer || scheme == SchemeHeader {
			// The connector holds the value itself, as before the vault:
			// an environment variable is bound to nothing.
			out.key = value
			return out, nil
		}
		t.env = cred.Env
		t.source = staticSource(value)
	}
	t.marker = newCredentialMarker()
	if scheme == SchemeOAuth2 {
		u, err := url.Parse(cred.TokenURL)
		if err != nil || u.Host == "" {
			return out, errors.New("credential.tokenURL must be an absolute https URL")
		}
		tokenClient, err := tokenHTTPClient(base, settings)
		if err != nil {
			return out, err
		}
		now := opts.Now
		if now == nil {
			now = time.Now
		}
		t.tokens = &oauthTokens{
			tokenURL: cred.TokenURL, tokenHost: u.Host, clientID: cred.ClientID,
			scopes: slices.Clone(cred.Scopes), audience: cred.Audience,
			client: tokenClient, secret: t.source.value, denied: t.denial, now: now,
		}
	}
	out.key = t.marker
	c := *client
	t.base = c.Transport
	if t.base == nil {
		t.base = http.DefaultTransport
	}
	c.Transport = t
	out.client = &c
	return out, nil
}

// httpHeaders are an http connector's configured headers plus the
// credential (key is its value or marker), which replaces a configured
// header of the same name.
func httpHeaders(configured map[string]string, cred *Credential, key string) map[string]string {
	out := make(map[string]string, len(configured)+1)
	for k, v := range configured {
		out[k] = v
	}
	if cred == nil || key == "" {
		return out
	}
	name := cred.Header
	if name == "" {
		name = "Authorization"
	}
	value := key
	if cred.scheme() == SchemeBearer {
		value = "Bearer " + key
	}
	for k := range out {
		if strings.EqualFold(k, name) {
			delete(out, k)
		}
	}
	out[name] = value
	return out
}

// credentialSource gives a credential's value for a request to host.
type credentialSource interface {
	value(ctx context.Context, host string) ([]byte, error)
}

// staticSource is an environment variable's value: bound to nothing.
type staticSource string

func (s staticSource) value(context.Context, string) ([]byte, error) { return []byte(s), nil }

// credentialTransport is the HTTP transport of a connector whose
// credential is not simply held by the connector: a vault secret (resolved
// per request, for that request's host) or a basic or OAuth 2.0 scheme.
// The connector is built with a marker where the credential goes (an SDK's
// key, an http connector's header); each request carrying the marker gets
// the credential in its place. A redirect to another host is a new
// request: it gets a vault secret only if the binding allows that host
// too, so no definition or redirect can carry it anywhere else.
//
// Bearer and header schemes replace the marker by the value (as in
// "Bearer MARKER", or Anthropic's x-api-key). Basic and OAuth 2.0 replace
// every header carrying the marker by one header (Authorization unless an
// http connector names another) with "Basic …" or "Bearer TOKEN": an SDK's
// own key header (Anthropic's x-api-key, Azure's api-key) cannot carry
// them.
type credentialTransport struct {
	base      http.RoundTripper
	connector string
	// secret or env names where the value comes from, for errors.
	secret, env string
	source      credentialSource
	marker      string
	scheme      string
	header      string
	username    string
	// tokens are SchemeOAuth2's; the value is the client secret.
	tokens *oauthTokens
}

func (t *credentialTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	carrying := headersCarrying(req.Header, t.marker)
	if len(carrying) == 0 {
		return t.base.RoundTrip(req)
	}
	ctx := req.Context()
	// For OAuth 2.0 the value is not sent upstream but the token it buys
	// is: the vault checks that this secret may be used for this host
	// just the same, and records the use.
	value, err := t.source.value(ctx, req.URL.Host)
	if err != nil {
		connectors.CloseRequestBody(req)
		return nil, t.deny(ctx, req.URL.Host, err)
	}
	out := req.Clone(ctx)
	switch t.scheme {
	case SchemeOAuth2:
		clear(value)
		return t.sendWithToken(req, out, carrying)
	case SchemeBasic:
		pair := append([]byte(t.username+":"), value...)
		setCredentialHeader(out.Header, carrying, t.header, "Basic "+base64.StdEncoding.EncodeToString(pair))
		clear(pair)
	default:
		for _, name := range carrying {
			for i, v := range out.Header[name] {
				out.Header[name][i] = strings.ReplaceAll(v, t.marker, string(value))
			}
		}
	}
	clear(value)
	return t.base.RoundTrip(out)
}

// sendWithToken sends out with the access token; if the upstream answers
// 401 and the request can be sent again, it refreshes the token once and
// does.
func (t *credentialTransport) sendWithToken(req, out *http.Request, carrying []string) (*http.Response, error) {
	ctx := req.Context()
	tok, err := t.tokens.token(ctx, "")
	if err != nil {
		connectors.CloseRequestBody(req)
		return nil, t.tokenFailed(ctx, err)
	}
	setCredentialHeader(out.Header, carrying, t.header, "Bearer "+tok)
	resp, err := t.base.RoundTrip(out)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	retry, ok := rewound(req)
	if !ok {
		return resp, nil
	}
	discardBody(resp)
	fresh, err := t.tokens.token(ctx, tok)
	if err != nil {
		connectors.CloseRequestBody(retry)
		return nil, t.tokenFailed(ctx, err)
	}
	setCredentialHeader(retry.Header, carrying, t.header, "Bearer "+fresh)
	return t.base.RoundTrip(retry)
}

func (t *credentialTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// denial is why the credential was not given for host.
func (t *credentialTransport) denial(host string, err error) error {
	return &CredentialDeniedError{Connector: t.connector, Secret: t.secret, Env: t.env, Host: host, Err: err}
}

// deny reports a refused credential to the call, which then fails without
// a retry.
func (t *credentialTransport) deny(ctx context.Context, host string, err error) error {
	d := t.denial(host, err)
	callScopeFrom(ctx).setDenied(d)
	return d
}

// tokenFailed is the error of a request that got no token: a refusal (the
// vault's, or the token endpoint's) fails the call at once; anything else
// is a failure a retry may get past.
func (t *credentialTransport) tokenFailed(ctx context.Context, err error) error {
	var denied *CredentialDeniedError
	if errors.As(err, &denied) {
		callScopeFrom(ctx).setDenied(denied)
		return denied
	}
	var te *TokenError
	if errors.As(err, &te) && te.permanent() {
		return t.deny(ctx, te.Host, te)
	}
	return err
}

// headersCarrying names the headers of h with a value holding marker.
func headersCarrying(h http.Header, marker string) []string {
	var out []string
	for name, values := range h {
		if slices.ContainsFunc(values, func(v string) bool { return strings.Contains(v, marker) }) {
			out = append(out, name)
		}
	}
	return out
}

// setCredentialHeader replaces the headers carrying the marker by name.
func setCredentialHeader(h http.Header, carrying []string, name, value string) {
	for _, c := range carrying {
		delete(h, c)
	}
	h.Set(name, value)
}

// rewound is a copy of req that can be sent again, or false when its body
// cannot be had a second time.
func rewound(req *http.Request) (*http.Request, bool) {
	out := req.Clone(req.Context())
	if req.Body == nil || req.Body == http.NoBody {
		return out, true
	}
	if req.GetBody == nil {
		return nil, false
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, false
	}
	out.Body = body
	return out, true
}

// discardBody reads a little of a response no one will read, so that its
// connection may be reused, and closes it.
func discardBody(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
}
