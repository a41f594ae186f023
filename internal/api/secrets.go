package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/moatproject/moat/internal/vault"
)

// Secrets are write-only: a value goes in with PUT and never comes out of
// the API. Listings show metadata and rotation state.
//
// Wiring (server.go): Deps gets `Vault *vault.Vault`, and New calls
// `h.registerSecrets(hapi, d.Vault)` when it is set.

// SecretView is a secret as the API shows it: never its value.
type SecretView struct {
	ID               string              `json:"id"`
	Name             string              `json:"name"`
	Environment      string              `json:"environment"`
	Version          int                 `json:"version"`
	KeyTerm          uint32              `json:"keyTerm"`
	Connectors       []string            `json:"connectors"`
	Hosts            []string            `json:"hosts,omitempty"`
	Models           []string            `json:"models,omitempty"`
	RotationPeriod   string              `json:"rotationPeriod,omitempty" doc:"Go duration, e.g. 2160h0m0s"`
	RotateBy         *time.Time          `json:"rotateBy,omitempty"`
	Rotation         vault.RotationState `json:"rotation" enum:"ok,due,overdue"`
	BlockWhenExpired bool                `json:"blockWhenExpired"`
	CreatedAt        time.Time           `json:"createdAt"`
	UpdatedAt        time.Time           `json:"updatedAt"`
	LastUsedAt       *time.Time          `json:"lastUsedAt,omitempty"`
}

func secretView(in vault.SecretInfo) SecretView {
	v := SecretView{
		ID: in.ID, Name: in.Name, Environment: in.Environment, Version: in.Version, KeyTerm: in.KeyTerm,
		Connectors: in.Bindings.Connectors, Hosts: in.Bindings.Hosts, Models: in.Bindings.Models,
		RotateBy: in.RotateBy, Rotation: in.Rotation, BlockWhenExpired: in.BlockWhenExpired,
		CreatedAt: in.CreatedAt, UpdatedAt: in.UpdatedAt, LastUsedAt: in.LastUsedAt,
	}
	if v.Connectors == nil {
		v.Connectors = []string{}
	}
	if in.RotationPeriod > 0 {
		v.RotationPeriod = in.RotationPeriod.String()
	}
	return v
}

// putSecretBody is decoded by hand (not by huma) so that no validation
// message can ever quote the value back.
type putSecretBody struct {
	Value            *string  `json:"value"`
	Connectors       []string `json:"connectors"`
	Hosts            []string `json:"hosts"`
	Models           []string `json:"models"`
	RotationPeriod   string   `json:"rotationPeriod"`
	BlockWhenExpired bool     `json:"blockWhenExpired"`
}

var putSecretSchema = &huma.Schema{
	Type:                 "object",
	Required:             []string{"value", "connectors"},
	AdditionalProperties: false,
	Properties: map[string]*huma.Schema{
		"value":            {Type: "string", Description: "The value; write-only: no answer ever contains it. At most 64 KiB.", WriteOnly: true},
		"connectors":       {Type: "array", Items: &huma.Schema{Type: "string"}, Description: "Connectors that may use the secret; at least one."},
		"hosts":            {Type: "array", Items: &huma.Schema{Type: "string"}, Description: "Hosts it may be sent to: exact (api.example.com, 10.0.0.7, [::1]) or *.example.com, optionally :port."},
		"models":           {Type: "array", Items: &huma.Schema{Type: "string"}, Description: "For AI connectors, the models it may be used with; empty for any."},
		"rotationPeriod":   {Type: "string", Description: "How long a version may live, as a Go duration (2160h); empty for none."},
		"blockWhenExpired": {Type: "boolean", Description: "Refuse to resolve the secret once overdue for rotation."},
	},
}

// SecretPath addresses one secret.
type SecretPath struct {
	Environment string `path:"environment" maxLength:"32" doc:"environment, such as prod"`
	Name        string `path:"name" maxLength:"128" doc:"secret name, such as OPENAI_API_KEY"`
}

type putSecretInput struct {
	SecretPath
	RawBody []byte
}

type secretOutput struct {
	Status int
	Body   SecretView
}

type listSecretsInput struct {
	Environment string   `query:"environment" maxLength:"32" doc:"only this environment's secrets"`
	Rotation    []string `query:"rotation" enum:"ok,due,overdue" doc:"only secrets in these rotation states, e.g. rotation=due,overdue"`
}

type listSecretsOutput struct {
	Body struct {
		Secrets []SecretView `json:"secrets"`
	}
}

// VaultView is the vault's state.
type VaultView struct {
	vault.KeyStatus
	Environments []string    `json:"environments"`
	Rewrap       *RewrapView `json:"rewrap,omitempty"`
}

// RewrapView is the state of the background rewrap.
type RewrapView struct {
	Running   bool       `json:"running"`
	Term      uint32     `json:"term,omitempty"`
	Rewrapped int        `json:"rewrapped"`
	Failed    []string   `json:"failed,omitempty" doc:"ids of secrets whose data key did not open"`
	Error     string     `json:"error,omitempty"`
	StartedAt time.Time  `json:"startedAt"`
	EndedAt   *time.Time `json:"endedAt,omitempty"`
}

type vaultOutput struct {
	Body VaultView
}

// unsealInput's body, {"passphrase": "…"}, is decoded by hand: huma's
// validation messages would quote a passphrase of the wrong type.
type unsealInput struct {
	RawBody []byte
}

var unsealSchema = &huma.Schema{
	Type: "object",
	Properties: map[string]*huma.Schema{
		"passphrase": {Type: "string", WriteOnly: true, Description: "For a vault whose root key comes from a passphrase; omit otherwise."},
		"init":       {Type: "boolean", Description: "Create a new passphrase vault's keyring with this passphrase; refused once it exists."},
	},
}

type minTermInput struct {
	Body struct {
		Term uint32 `json:"term" minimum:"1" doc:"retire the key terms below this one"`
	}
}

// rewrapJob runs one background rewrap at a time.
type rewrapJob struct {
	mu   sync.Mutex
	last *RewrapView
}

// start begins a rewrap unless one is running; it survives the request.
func (j *rewrapJob) start(v *vault.Vault, onError func(error)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.last != nil && j.last.Running {
		return
	}
	view := &RewrapView{Running: true, StartedAt: time.Now().UTC()}
	j.last = view
	go func() {
		res, err := v.Rewrap(context.Background(), vault.RewrapOptions{Progress: func(r vault.RewrapResult) {
			j.mu.Lock()
			view.Term, view.Rewrapped = r.Term, r.Rewrapped
			j.mu.Unlock()
		}})
		j.mu.Lock()
		defer j.mu.Unlock()
		end := time.Now().UTC()
		view.Running, view.EndedAt, view.Term, view.Rewrapped, view.Failed = false, &end, res.Term, res.Rewrapped, res.Failed
		if err != nil {
			view.Error = err.Error()
			onError(err)
		}
	}()
}

func (j *rewrapJob) view() *RewrapView {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.last == nil {
		return nil
	}
	c := *j.last
	c.Failed = slices.Clone(c.Failed)
	return &c
}

// RegisterSecrets registers the secrets and vault operations on api, for a
// server (or a test) that builds its own huma API.
func RegisterSecrets(api huma.API, v *vault.Vault, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	(&handlers{Deps: Deps{Logger: logger}}).registerSecrets(api, v)
}

// registerSecrets registers the secrets and vault operations.
func (h *handlers) registerSecrets(api huma.API, v *vault.Vault) {
	tags := []string{"secrets"}
	job := &rewrapJob{}

	huma.Register(api, huma.Operation{
		OperationID: "list-secrets", Method: http.MethodGet, Path: "/api/v1/secrets",
		Summary: "List secrets", Tags: tags,
		Description: "Metadata only, never values: name, environment, version, creation and last use, bindings, rotation state. " +
			"rotation=due,overdue lists the secrets to rotate.",
	}, func(ctx context.Context, in *listSecretsInput) (*listSecretsOutput, error) {
		list, err := v.List(ctx, in.Environment)
		if err != nil {
			return nil, h.vaultError(err)
		}
		out := &listSecretsOutput{}
		out.Body.Secrets = []SecretView{}
		for _, s := range list {
			if len(in.Rotation) > 0 && !slices.Contains(in.Rotation, string(s.Rotation)) {
				continue
			}
			out.Body.Secrets = append(out.Body.Secrets, secretView(s))
		}
		return out, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-secret", Method: http.MethodGet, Path: "/api/v1/secrets/{environment}/{name}",
		Summary: "Get a secret's metadata", Tags: tags,
	}, func(ctx context.Context, in *SecretPath) (*secretOutput, error) {
		s, err := v.Get(ctx, in.Environment, in.Name)
		if err != nil {
			return nil, h.vaultError(err)
		}
		return &secretOutput{Status: http.StatusOK, Body: secretView(s)}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "put-secret", Method: http.MethodPut, Path: "/api/v1/secrets/{environment}/{name}",
		Summary: "Set a secret's value and settings",
		Description: "Stores a new version (201 for the first). The value is write-only; the answer and every later one hold only metadata. " +
			"The settings are given whole each time. No operation copies a value between environments.",
		Tags: tags, MaxBodyBytes: 128 << 10, DefaultStatus: http.StatusOK,
		// huma's validation messages quote the offending value: the body
		// is checked by decodeSecretBody and the vault instead.
		SkipValidateBody: true,
		RequestBody:      &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{"application/json": {Schema: putSecretSchema}}},
	}, func(ctx context.Context, in *putSecretInput) (*secretOutput, error) {
		var body putSecretBody
		if err := decodeSecretBody(in.RawBody, &body); err != nil {
			return nil, huma.Error422UnprocessableEntity("the body is not a secret", &huma.ErrorDetail{Location: "body", Message: err.Error()})
		}
		if body.Value == nil || *body.Value == "" {
			return nil, huma.Error422UnprocessableEntity("a value is required", &huma.ErrorDetail{Location: "body.value", Message: "required"})
		}
		opts := vault.Options{
			Bindings:         vault.Bindings{Connectors: body.Connectors, Hosts: body.Hosts, Models: body.Models},
			BlockWhenExpired: body.BlockWhenExpired,
		}
		if body.RotationPeriod != "" {
			d, err := time.ParseDuration(body.RotationPeriod)
			if err != nil {
				return nil, huma.Error422UnprocessableEntity("bad rotation period", &huma.ErrorDetail{Location: "body.rotationPeriod", Message: "a Go duration such as 2160h"})
			}
			opts.RotationPeriod = d
		}
		value := []byte(*body.Value)
		info, err := v.Set(ctx, in.Environment, in.Name, value, opts)
		clear(value)
		clear(in.RawBody)
		if err != nil {
			return nil, h.vaultError(err)
		}
		status := http.StatusOK
		if info.Version == 1 {
			status = http.StatusCreated
		}
		return &secretOutput{Status: status, Body: secretView(info)}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "delete-secret", Method: http.MethodDelete, Path: "/api/v1/secrets/{environment}/{name}",
		Summary: "Delete a secret", Tags: tags, DefaultStatus: http.StatusNoContent,
	}, func(ctx context.Context, in *SecretPath) (*struct{}, error) {
		if err := v.Delete(ctx, in.Environment, in.Name); err != nil {
			return nil, h.vaultError(err)
		}
		return nil, nil
	})

	jsonOnly(api, "/api/v1/secrets/{environment}/{name}", func(p *huma.PathItem) *huma.Operation { return p.Put })

	vaultTags := []string{"vault"}
	status := func(ctx context.Context) (*vaultOutput, error) {
		ks, err := v.KeyStatus(ctx)
		if err != nil {
			return nil, h.vaultError(err)
		}
		return &vaultOutput{Body: VaultView{KeyStatus: ks, Environments: v.Environments(), Rewrap: job.view()}}, nil
	}
	huma.Register(api, huma.Operation{
		OperationID: "get-vault", Method: http.MethodGet, Path: "/api/v1/vault",
		Summary: "The vault's state", Description: "Sealed or not, the key terms and how many secrets each wraps, and the last rewrap.", Tags: vaultTags,
	}, func(ctx context.Context, _ *struct{}) (*vaultOutput, error) { return status(ctx) })

	huma.Register(api, huma.Operation{
		OperationID: "rotate-vault-key", Method: http.MethodPost, Path: "/api/v1/vault/rotate",
		Summary: "Add a key term and make it primary", Tags: vaultTags,
		Description: "Older terms still decrypt. A background rewrap then moves every secret's data key to the new term; GET /api/v1/vault shows its progress.",
	}, func(ctx context.Context, _ *struct{}) (*vaultOutput, error) {
		if _, err := v.RotateKey(ctx); err != nil {
			return nil, h.vaultError(err)
		}
		job.start(v, h.rewrapFailed)
		return status(ctx)
	})

	huma.Register(api, huma.Operation{
		OperationID: "rewrap-vault", Method: http.MethodPost, Path: "/api/v1/vault/rewrap",
		Summary: "Resume the rewrap to the primary term", Tags: vaultTags,
		Description: "Starts the background rewrap unless it runs; after an interruption it picks up where it stopped.",
	}, func(ctx context.Context, _ *struct{}) (*vaultOutput, error) {
		if v.Sealed() {
			return nil, h.vaultError(vault.ErrSealed)
		}
		job.start(v, h.rewrapFailed)
		return status(ctx)
	})

	huma.Register(api, huma.Operation{
		OperationID: "set-min-decryption-term", Method: http.MethodPost, Path: "/api/v1/vault/min-decryption-term",
		Summary: "Retire the key terms below a term", Tags: vaultTags,
		Description: "Refused (409) while secrets still use them: rewrap first. Retired terms' keys are deleted and their ciphertexts refused.",
	}, func(ctx context.Context, in *minTermInput) (*vaultOutput, error) {
		if err := v.SetMinDecryptionTerm(ctx, in.Body.Term); err != nil {
			return nil, h.vaultError(err)
		}
		return status(ctx)
	})

	huma.Register(api, huma.Operation{
		OperationID: "seal-vault", Method: http.MethodPost, Path: "/api/v1/vault/seal",
		Summary: "Seal the vault", Tags: vaultTags,
		Description: "Zeroises the keys in memory; every use of a secret fails until the vault is unsealed.",
	}, func(ctx context.Context, _ *struct{}) (*vaultOutput, error) {
		v.Seal()
		return status(ctx)
	})

	huma.Register(api, huma.Operation{
		OperationID: "unseal-vault", Method: http.MethodPost, Path: "/api/v1/vault/unseal",
		Summary: "Unseal the vault", Tags: vaultTags, MaxBodyBytes: 4 << 10, SkipValidateBody: true,
		RequestBody: &huma.RequestBody{Content: map[string]*huma.MediaType{"application/json": {Schema: unsealSchema}}},
		Description: "With a passphrase vault, give the passphrase; a new one is created with init=true. " +
			"Wrong passphrases are answered 403 and further attempts wait longer and longer (429).",
	}, func(ctx context.Context, in *unsealInput) (*vaultOutput, error) {
		var body struct {
			Passphrase string `json:"passphrase"`
			Init       bool   `json:"init"`
		}
		if len(bytes.TrimSpace(in.RawBody)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(in.RawBody))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil {
				clear(in.RawBody)
				return nil, huma.Error422UnprocessableEntity(`the body is {"passphrase": "…", "init": false}`)
			}
		}
		clear(in.RawBody)
		pass := []byte(body.Passphrase)
		defer clear(pass)
		var err error
		if body.Init {
			err = v.Init(ctx, pass)
		} else {
			err = v.Unseal(ctx, pass)
		}
		if err != nil {
			return nil, h.vaultError(err)
		}
		return status(ctx)
	})
	jsonOnly(api, "/api/v1/vault/unseal", func(p *huma.PathItem) *huma.Operation { return p.Post })
}

// jsonOnly drops the binary body huma lists for a RawBody input: these
// bodies are JSON only.
func jsonOnly(api huma.API, path string, op func(*huma.PathItem) *huma.Operation) {
	if item := api.OpenAPI().Paths[path]; item != nil {
		if o := op(item); o != nil && o.RequestBody != nil {
			delete(o.RequestBody.Content, "application/octet-stream")
		}
	}
}

func (h *handlers) rewrapFailed(err error) {
	h.Logger.Error("vault rewrap stopped; POST /api/v1/vault/rewrap resumes it", "error", err)
}

// vaultError answers a vault error; none of them carries a value.
func (h *handlers) vaultError(err error) error {
	switch {
	case errors.Is(err, vault.ErrSealed):
		return huma.Error503ServiceUnavailable("the vault is sealed: unseal it with `moat unseal` (POST /api/v1/vault/unseal)")
	case errors.Is(err, vault.ErrNotFound):
		return huma.Error404NotFound(err.Error())
	case errors.Is(err, vault.ErrInvalid), errors.Is(err, vault.ErrUnknownEnvironment):
		return huma.Error422UnprocessableEntity(err.Error())
	case errors.Is(err, vault.ErrTermInUse), errors.Is(err, vault.ErrAlreadyInitialized):
		return huma.Error409Conflict(err.Error())
	case errors.Is(err, vault.ErrNotInitialized):
		return huma.Error409Conflict("the vault has no keyring yet: create it with `moat unseal --init` (init=true) and a passphrase")
	case errors.Is(err, vault.ErrWrongPassphrase):
		return huma.Error403Forbidden("wrong passphrase; the vault stays sealed")
	case errors.Is(err, vault.ErrUnsealRateLimited):
		return huma.NewError(http.StatusTooManyRequests, err.Error())
	}
	return h.apiError(err)
}

// decodeSecretBody decodes exactly one JSON object with known fields only.
// Its messages never quote the body: the value, or a value pasted where a
// field name belongs, stays out of answers and logs.
func decodeSecretBody(b []byte, body *putSecretBody) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(body); err != nil {
		if strings.HasPrefix(err.Error(), "json: unknown field ") {
			return errors.New("unknown field; the fields are value, connectors, hosts, models, rotationPeriod and blockWhenExpired")
		}
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			// Value is "number 123" for a number: keep only the kind.
			kind, _, _ := strings.Cut(typeErr.Value, " ")
			return fmt.Errorf("a %s where %s is expected", kind, article(typeErr.Type))
		}
		return errors.New(jsonErrorText(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}
