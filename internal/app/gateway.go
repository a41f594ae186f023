package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/moatproject/moat/internal/api"
	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/store"
)

// openGateway starts the AI gateway on the store's resources. Connectors
// send through the same egress policy as http.request: a model server on
// loopback or a private network (Ollama, vLLM) needs --allow-private-egress.
func (a *App) openGateway(ctx context.Context, egress *http.Client) error {
	key, err := hashKey(a.Config.DataDir)
	if err != nil {
		return err
	}
	limits := map[string]gateway.Limits{}
	for kind, flag := range map[string]struct{ name, value string }{
		"key":      {"--ai-limits-per-key", a.Config.AILimitsPerKey},
		"workflow": {"--ai-limits-per-workflow", a.Config.AILimitsPerWorkflow},
	} {
		if limits[kind], err = gateway.ParseLimits(flag.value); err != nil {
			return fmt.Errorf("app: %s: %w", flag.name, err)
		}
	}
	a.Gateway, err = gateway.New(ctx, gateway.Config{
		Environment: a.Config.Environment,
		Resources:   storeResources{a.Store},
		Tokens:      storeTokens{a.Store},
		Recorder:    gateway.AuditRecorder{Log: a.Audit},
		Secrets:     a.Vault,
		HashKey:     key,
		HTTPClient:  egress,
		DataDir:     a.Config.DataDir,
		Limits:      limits,
	})
	return err
}

// storeResources reads the gateway's resources from the store.
type storeResources struct{ store store.Store }

func (s storeResources) LoadResources(ctx context.Context) (gateway.Resources, error) {
	all, err := s.store.ListResources(ctx, "")
	if err != nil {
		return gateway.Resources{}, err
	}
	return api.DecodeResources(all)
}

// storeTokens keeps runs' tokens in the store.
type storeTokens struct{ store store.Store }

func (s storeTokens) LoadTokens(ctx context.Context, runID string) ([]gateway.TokenEntry, error) {
	rows, err := s.store.LoadRunTokens(ctx, runID)
	if err != nil {
		return nil, err
	}
	out := make([]gateway.TokenEntry, len(rows))
	for i, r := range rows {
		out[i] = gateway.TokenEntry{Token: r.Token, Class: r.Class, Value: r.Value}
	}
	return out, nil
}

func (s storeTokens) SaveTokens(ctx context.Context, runID string, tokens []gateway.TokenEntry) error {
	rows := make([]store.RunToken, len(tokens))
	now := time.Now().UTC()
	for i, t := range tokens {
		rows[i] = store.RunToken{Token: t.Token, Class: t.Class, Value: t.Value, CreatedAt: now}
	}
	return s.store.InTx(ctx, func(tx store.Tx) error { return tx.AddRunTokens(ctx, runID, rows) })
}

// hashKey is the key of the gateway's Hash action, made on first start.
// Digests only compare within one key, so every node of a cluster must
// share the file until the vault holds it.
func hashKey(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, "gateway-hash.key")
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) != 32 {
			return nil, fmt.Errorf("app: %s holds %d bytes, want 32", path, len(key))
		}
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("app: hash key: %w", err)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("app: hash key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, fmt.Errorf("app: hash key: %w", err)
	}
	return key, f.Close()
}
