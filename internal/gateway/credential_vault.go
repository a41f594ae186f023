package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/moatproject/moat/internal/vault"
)

// SecretResolver gives a connector's credential from the vault, checking
// the secret's environment and bindings and recording the access first
// (vault.Vault.Resolve). The value returned is the caller's, which clears
// it after use.
type SecretResolver interface {
	Resolve(ctx context.Context, a vault.Access, env, name string) ([]byte, error)
}

// vaultSecretSource is a credential held in the vault: each request gets
// it only after the vault has checked that this secret may go to that
// request's host, for this connector and model, in this environment, and
// recorded the use.
type vaultSecretSource struct {
	secrets   SecretResolver
	env       string
	connector string
	name      string
}

func (s vaultSecretSource) value(ctx context.Context, host string) ([]byte, error) {
	scope := callScopeFrom(ctx)
	access := vault.Access{
		Environment: s.env, Connector: s.connector, Host: host,
		RunID: scope.runID, Workflow: scope.workflow, Model: scope.model,
	}
	return s.secrets.Resolve(ctx, access, s.env, s.name)
}

// newCredentialMarker returns a fresh marker: unguessable, so nothing but
// the connector it was made for holds it, and no secret itself.
func newCredentialMarker() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "moat-vault-credential-" + hex.EncodeToString(b[:])
}

// CredentialDeniedError is a call whose credential the vault did not give:
// a host, connector or model the secret is not bound to, another
// environment, a sealed vault, a missing or expired secret. It never holds
// the value.
//
// An OAuth 2.0 token endpoint refusing the client is one too: Host is then
// the token endpoint's. Env names the environment variable of a credential
// that is not in the vault.
type CredentialDeniedError struct {
	Connector, Secret, Env, Host string
	Err                          error
}

func (e *CredentialDeniedError) Error() string {
	source := "secret " + e.Secret
	if e.Secret == "" {
		source = "from environment variable " + e.Env
	}
	return fmt.Sprintf("connector %s: credential %s not given for %s: %v", e.Connector, source, e.Host, e.Err)
}

func (e *CredentialDeniedError) Unwrap() error { return e.Err }

// callScope is what a credential transport needs to know of the call it
// sends, carried in the request's context: who asks and for which model;
// and where it reports a refused credential, which connectors would
// otherwise report as a mere transport failure (and the gateway retry).
// The attempt's upstream clock rides along for timedTransport.
type callScope struct {
	runID, workflow, model string
	denied                 *error
	upstream               *upstreamClock
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
