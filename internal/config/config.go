// Package config holds the server's settings: flags, with MOAT_* environment
// variables as defaults.
package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Config is everything `moat serve` and `moat run` need.
type Config struct {
	Addr    string // listen address; loopback by default
	DataDir string // holds moat.db, bootstrap.token and the lock
	// TemporaryDataDir says DataDir is removed when the command ends
	// (`moat run` without --data-dir): nothing in it outlives the process,
	// so warnings about keeping it safe do not apply.
	TemporaryDataDir bool
	DatabaseURL      string // postgres://… to use Postgres instead of SQLite
	Environment      string // dev, staging or prod
	// AllowPrivateEgress lets http.request reach loopback and private
	// networks (development only).
	AllowPrivateEgress bool
	// AILimitsPerKey and AILimitsPerWorkflow bound the AI calls of each API
	// key and of each workflow ("rpm=600,tpm=100000,budget=50/month");
	// connectors carry their own limits.
	AILimitsPerKey      string
	AILimitsPerWorkflow string
	// AuditFile and AuditWebhook are copies of the audit log outside the
	// database: a JSON-lines file (rotated by size) and a SIEM's HTTP
	// collector. AuditRequire names those ("file", "webhook") that must
	// accept each record for the audited action to go ahead.
	AuditFile    string
	AuditWebhook string
	AuditRequire []string
	// TLSCert and TLSKey are PEM files Moat serves HTTPS with (TLS 1.2 at
	// least); ClientCA, a PEM bundle, makes it require client
	// certificates signed by one of those CAs (mutual TLS).
	TLSCert, TLSKey, ClientCA string
	// Retention is how long finished runs' payloads are kept unless a
	// workflow says otherwise ("30d"; "0" keeps them until erased);
	// RetentionClasses cap it for payloads holding a data class
	// ("pii.card=7d"); PurgeInterval is how often expired payloads are
	// destroyed.
	Retention        string
	RetentionClasses []string
	PurgeInterval    string
	LogFormat        string // json or text
	LogLevel         string // debug, info, warn, error
	Workers          int
}

// Environments are the names a deployment may use.
var Environments = []string{"dev", "staging", "prod"}

// Default returns the defaults, overridden by MOAT_* variables.
func Default() Config {
	c := Config{
		Addr:        envOr("MOAT_ADDR", "127.0.0.1:8080"),
		DataDir:     envOr("MOAT_DATA_DIR", "./moat-data"),
		DatabaseURL: os.Getenv("MOAT_DATABASE_URL"),
		Environment: envOr("MOAT_ENV", "dev"),
		LogFormat:   envOr("MOAT_LOG_FORMAT", "text"),
		LogLevel:    envOr("MOAT_LOG_LEVEL", "info"),

		AILimitsPerKey:      os.Getenv("MOAT_AI_LIMITS_PER_KEY"),
		AILimitsPerWorkflow: os.Getenv("MOAT_AI_LIMITS_PER_WORKFLOW"),

		AuditFile:    os.Getenv("MOAT_AUDIT_FILE"),
		AuditWebhook: os.Getenv("MOAT_AUDIT_WEBHOOK"),

		Retention:     envOr("MOAT_RETENTION", "30d"),
		PurgeInterval: envOr("MOAT_PURGE_INTERVAL", "1m"),

		TLSCert:  os.Getenv("MOAT_TLS_CERT"),
		TLSKey:   os.Getenv("MOAT_TLS_KEY"),
		ClientCA: os.Getenv("MOAT_CLIENT_CA"),
	}
	if v := os.Getenv("MOAT_RETENTION_CLASSES"); v != "" {
		c.RetentionClasses = strings.Split(v, ",")
	}
	if v := os.Getenv("MOAT_AUDIT_REQUIRE"); v != "" {
		c.AuditRequire = strings.Split(v, ",")
	}
	c.AllowPrivateEgress, _ = strconv.ParseBool(os.Getenv("MOAT_ALLOW_PRIVATE_EGRESS"))
	c.Workers, _ = strconv.Atoi(os.Getenv("MOAT_WORKERS"))
	return c
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Validate reports the first setting that cannot work, naming it.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("config: --addr %q: %w", c.Addr, err)
	}
	if c.DataDir == "" {
		return fmt.Errorf("config: --data-dir must not be empty")
	}
	if c.DatabaseURL != "" && !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		return fmt.Errorf("config: --database-url must start with postgres:// (SQLite needs no URL: it lives in --data-dir)")
	}
	if !slices.Contains(Environments, c.Environment) {
		return fmt.Errorf("config: --env %q: want one of %s", c.Environment, strings.Join(Environments, ", "))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return fmt.Errorf("config: log format %q: want json or text", c.LogFormat)
	}
	for _, name := range c.AuditRequire {
		switch {
		case name == "file" && c.AuditFile != "", name == "webhook" && c.AuditWebhook != "":
		case name == "file" || name == "webhook":
			return fmt.Errorf("config: --audit-require %s: no --audit-%s is configured", name, name)
		default:
			return fmt.Errorf("config: --audit-require %q: want file or webhook", name)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("config: --tls-cert and --tls-key go together")
	}
	if c.ClientCA != "" && c.TLSCert == "" {
		return fmt.Errorf("config: --client-ca needs --tls-cert and --tls-key: client certificates are checked in the TLS handshake")
	}
	if c.Workers < 0 || c.Workers > 10000 {
		return fmt.Errorf("config: workers %d out of range", c.Workers)
	}
	return nil
}

// DatabasePath is the SQLite file inside the data dir.
func (c Config) DatabasePath() string { return filepath.Join(c.DataDir, "moat.db") }

// RunKeysPath is the SQLite file of run payload keys, beside the database
// but apart from it.
func (c Config) RunKeysPath() string { return filepath.Join(c.DataDir, "run-keys.db") }

// TokenPath is where the bootstrap token is written.
func (c Config) TokenPath() string { return filepath.Join(c.DataDir, "bootstrap.token") }

// Loopback reports whether Addr listens only on this machine.
func (c Config) Loopback() bool {
	host, _, _ := net.SplitHostPort(c.Addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
