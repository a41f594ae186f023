package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/moatproject/moat/internal/vault"
)

// SecretResolver gives a connector's credential from the vault, checking
// the secret's environment and bindings and recording the access first
// (vault.Vault.Resolve).
type SecretResolver interface {
	Resolve(ctx context.Context, a vault.Access, env, name string) ([]byte, error)
}

// A connector whose credential is a vault secret is built with a marker in
// place of the value, so that its SDK or template puts the marker wherever
// the credential goes (a bearer token, Azure's api-key, Anthropic's
// x-api-key, an http connector's header). vaultCredential, the connector's
// HTTP transport, swaps the marker for the value in each request that
// carries it, after the vault has checked that this secret may go to that
// request's host, for this connector and model, in this environment. A
// redirect to another host is a new request: it gets the value only if the
// binding allows that host too, so no definition or redirect can carry the
// credential anywhere else.
type vaultCredential struct {
	base      http.RoundTripper
	secrets   SecretResolver
	env       string
	connector string
	secret    string
	marker    string
}

// newCredentialMarker returns a fresh marker: unguessable, so nothing but
// the connector it was made for holds it, and no secret itself.
func newCredentialMarker() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "moat-vault-credential-" + hex.EncodeToString(b[:])
}

func (t *vaultCredential) RoundTrip(req *http.Request) (*http.Response, error) {
	var carrying []string
	for name, values := range req.Header {
		for _, v := range values {
			if strings.Contains(v, t.marker) {
				carrying = append(carrying, name)
				break
			}
		}
	}
	if len(carrying) == 0 {
		return t.base.RoundTrip(req)
	}
	scope := callScopeFrom(req.Context())
	access := vault.Access{
		Environment: t.env, Connector: t.connector, Host: req.URL.Host,
		RunID: scope.runID, Workflow: scope.workflow, Model: scope.model,
	}
	value, err := t.secrets.Resolve(req.Context(), access, t.env, t.secret)
	if err != nil {
		err = &CredentialDeniedError{Connector: t.connector, Secret: t.secret, Host: req.URL.Host, Err: err}
		scope.setDenied(err)
		return nil, err
	}
	out := req.Clone(req.Context())
	for _, name := range carrying {
		for i, v := range out.Header[name] {
			out.Header[name][i] = strings.ReplaceAll(v, t.marker, string(value))
		}
	}
	return t.base.RoundTrip(out)
}

// CredentialDeniedError is a call whose credential the vault did not give:
// a host, connector or model the secret is not bound to, another
// environment, a sealed vault, a missing or expired secret. It never holds
// the value.
type CredentialDeniedError struct {
	Connector, Secret, Host string
	Err                     error
}

func (e *CredentialDeniedError) Error() string {
	return fmt.Sprintf("connector %s: credential secret %s not given for %s: %v", e.Connector, e.Secret, e.Host, e.Err)
}

func (e *CredentialDeniedError) Unwrap() error { return e.Err }

// callScope is what a credential transport needs to know of the call it
// sends, carried in the request's context: who asks and for which model;
// and where it reports a refused credential, which connectors would
// otherwise report as a mere transport failure (and the gateway retry).
type callScope struct {
	runID, workflow, model string
	denied                 *error
}

type callScopeKey struct{}

func withCallScope(ctx context.Context, s callScope) context.Context {
	return context.WithValue(ctx, callScopeKey{}, s)
}

func callScopeFrom(ctx context.Context) callScope {
	s, _ := ctx.Value(callScopeKey{}).(callScope)
	return s
}

func (s callScope) setDenied(err error) {
	if s.denied != nil && *s.denied == nil {
		*s.denied = err
	}
}

// vaultHTTPClient is base with the credential transport in front of its own.
func vaultHTTPClient(base *http.Client, t *vaultCredential) *http.Client {
	c := http.Client{}
	if base != nil {
		c = *base
	}
	t.base = c.Transport
	if t.base == nil {
		t.base = http.DefaultTransport
	}
	c.Transport = t
	return &c
}
