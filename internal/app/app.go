// Package app wires Moat together: config → store → engine → HTTP server.
package app

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/moatproject/moat/internal/api"
	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/config"
	"github.com/moatproject/moat/internal/engine"
	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/nodes"
	"github.com/moatproject/moat/internal/retention"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/postgres"
	"github.com/moatproject/moat/internal/store/sqlite"
	"github.com/moatproject/moat/internal/vault"
)

// Version is set at build time with -ldflags "-X …/app.Version=…".
var Version = "dev"

// App is a wired Moat instance.
type App struct {
	Config  config.Config
	Store   store.Store
	Engine  *engine.Engine
	Gateway *gateway.Gateway
	Audit   *audit.Log
	Vault   *vault.Vault
	Log     *slog.Logger
	// Retention purges expired run payloads and erases subjects' runs.
	Retention *retention.Purger

	lock           *os.File
	started        bool
	runKeys        store.RunKeyStore
	retentionRules retention.Rules
	purgeInterval  time.Duration
	stopPurging    func()
}

// Open prepares the data dir, the database and the engine. With SQLite it
// takes an exclusive lock on the data dir: one process per embedded database.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("app: data dir %s: %w", cfg.DataDir, err)
	}
	a := &App{Config: cfg, Log: log}
	var err error
	if cfg.DatabaseURL == "" {
		if a.lock, err = lockDir(cfg.DataDir); err != nil {
			return nil, err
		}
		a.Store, err = sqlite.Open(ctx, cfg.DatabasePath())
	} else {
		a.Store, err = postgres.Open(ctx, cfg.DatabaseURL)
	}
	if err != nil {
		a.Close()
		return nil, err
	}
	if err = a.openAudit(ctx); err == nil {
		err = a.openVault(ctx)
	}
	if err == nil {
		err = a.openRetention(ctx)
	}
	if err != nil {
		a.Close()
		return nil, err
	}
	egress := nodes.NewHTTPClient(nodes.EgressPolicy{AllowPrivate: cfg.AllowPrivateEgress})
	if err = a.openGateway(ctx, egress); err != nil {
		a.Close()
		return nil, err
	}
	registry := nodes.Builtins()
	registry.SetConnectors(func(name string) bool { return a.Gateway.Catalog().HasConnector(name) })
	a.Engine, err = engine.New(engine.Config{
		Store:       a.Store,
		Registry:    registry,
		AI:          a.Gateway,
		Secrets:     a.Vault,
		HTTP:        egress,
		Logger:      log,
		Environment: cfg.Environment,
		Workers:     cfg.Workers,
		Retention:   a.retentionRules.For,
	})
	if err == nil {
		err = a.Engine.Migrate(ctx)
	}
	if err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// lockDir holds an exclusive advisory lock on the data dir for the life of
// the process; the kernel drops it if the process dies, even by kill -9.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "moat.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("app: lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("app: another moat process is using %s (the embedded database allows one); stop it or use --data-dir", dir)
	}
	return f, nil
}

// Start begins executing runs, resuming any left unfinished.
func (a *App) Start(ctx context.Context) error {
	if err := a.Engine.Start(ctx, a.Config.DatabaseURL == ""); err != nil {
		return err
	}
	a.startPurging()
	a.started = true
	return nil
}

// Handler is the HTTP API.
func (a *App) Handler() http.Handler {
	return api.New(api.Deps{Store: a.Store, Engine: a.Engine, Gateway: a.Gateway, Vault: a.Vault, Audit: a.Audit, Retention: a.Retention, Logger: a.Log, Version: Version, Ready: func(context.Context) error {
		if !a.started {
			return errors.New("engine not started")
		}
		return nil
	}})
}

// Bootstrap creates the first API token when there is none, writes it to
// <data-dir>/bootstrap.token (mode 0600) and returns it; it returns "" when
// tokens already exist.
func (a *App) Bootstrap(ctx context.Context) (string, error) {
	n, err := a.Store.CountTokens(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	// Creating an API key is recorded first, and not done when it cannot
	// be recorded.
	rec := audit.Record{Actor: "system:bootstrap", Action: "apikey.create", Resource: "apikey/bootstrap", Outcome: audit.Requested,
		Details: map[string]any{"role": "admin", "file": a.Config.TokenPath()}}
	if _, err := a.Audit.Append(ctx, rec); err != nil {
		return "", fmt.Errorf("app: bootstrap token: %w", err)
	}
	var token string
	err = a.Store.InTx(ctx, func(tx store.Tx) error {
		n, err := tx.CountTokens(ctx)
		if err != nil || n > 0 {
			return err
		}
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		token = "moat_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
		if err := tx.CreateToken(ctx, store.Token{ID: store.NewID("tok"), Name: "bootstrap", Role: "admin", Hash: api.HashToken(token), CreatedAt: time.Now().UTC()}); err != nil {
			return err
		}
		// Written inside the transaction: if the file cannot be written the
		// token is not created, so nobody is locked out.
		return writeSecretFile(a.Config.TokenPath(), token+"\n")
	})
	rec.Outcome = audit.OK
	if err != nil {
		rec.Outcome, rec.Details["error"] = audit.Failed, err.Error()
	}
	if _, auditErr := a.Audit.Append(ctx, rec); auditErr != nil && err == nil {
		err = auditErr
	}
	if err != nil {
		return "", fmt.Errorf("app: bootstrap token: %w", err)
	}
	return token, nil
}

func writeSecretFile(path, content string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Serve answers HTTP until ctx ends, then shuts down gracefully: the server
// stops taking requests, running jobs get up to 10 s to finish.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.Log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if stopErr := a.Engine.Stop(shutdownCtx); stopErr != nil && err == nil {
		err = stopErr
	}
	return err
}

// Close releases the database and the data-dir lock.
func (a *App) Close() {
	if a.stopPurging != nil {
		a.stopPurging()
	}
	if a.Audit != nil {
		// Signs a last checkpoint of what was appended since the previous.
		if err := a.Audit.Close(); err != nil {
			a.Log.Error("audit log: close", "err", err)
		}
	}
	if a.runKeys != nil {
		a.runKeys.Close()
	}
	if a.Store != nil {
		a.Store.Close()
	}
	if a.lock != nil {
		a.lock.Close()
	}
}
