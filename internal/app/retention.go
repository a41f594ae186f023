package app

import (
	"context"
	"fmt"
	"time"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/retention"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/postgres"
	"github.com/moatproject/moat/internal/store/sqlite"
	"github.com/moatproject/moat/internal/vault"
	"github.com/moatproject/moat/internal/workflow"
)

// openRetention seals run payloads under per-run keys kept apart from the
// database (SQLite: <data-dir>/run-keys.db; Postgres: table run_keys),
// indexes their subjects, and prepares the purge job.
func (a *App) openRetention(ctx context.Context) error {
	rules, interval, err := retentionSettings(a.Config.Retention, a.Config.RetentionClasses, a.Config.PurgeInterval)
	if err != nil {
		return err
	}
	var keys store.RunKeyStore
	if a.Config.DatabaseURL == "" {
		if keys, err = sqlite.OpenRunKeys(ctx, a.Config.RunKeysPath()); err != nil {
			return err
		}
	} else {
		keys = postgres.RunKeys(a.Store)
	}
	a.runKeys = keys
	cipher := a.Vault.PayloadKeys(keys, vault.PayloadKeysOptions{})
	digest := subjectDigest(a.Audit)
	a.Store.SetPayloadSealer(&retention.Sealer{Cipher: cipher, Digest: digest, Rules: rules})
	a.Retention = &retention.Purger{Store: a.Store, Cipher: cipher, Digest: digest, Audit: a.Audit, Log: a.Log}
	a.retentionRules = rules
	a.purgeInterval = interval
	return nil
}

// subjectDigest keys the subject index with the audit log's HMAC key, in a
// domain of its own, so that neither digest can stand for the other.
func subjectDigest(l *audit.Log) retention.Digest {
	return func(normalised string) []byte { return l.HMACSum("moat/retention/subject/v1", normalised) }
}

func retentionSettings(keep string, classes []string, every string) (retention.Rules, time.Duration, error) {
	rules := retention.Rules{Classes: map[string]time.Duration{}}
	var err error
	if keep != "0" {
		if rules.Default, err = workflow.ParseDuration(keep); err != nil || rules.Default <= 0 {
			return rules, 0, fmt.Errorf("config: --retention %q: want a duration such as 30d, or 0 to keep payloads until erased", keep)
		}
	}
	for _, c := range classes {
		class, d, err := retention.ParseClassRule(c)
		if err != nil {
			return rules, 0, fmt.Errorf("config: --retention-class: %w", err)
		}
		rules.Classes[class] = d
	}
	interval, err := workflow.ParseDuration(every)
	if err != nil || interval < time.Second {
		return rules, 0, fmt.Errorf("config: --purge-interval %q: want a duration of at least 1s", every)
	}
	return rules, interval, nil
}

// startPurging runs the purge job until Close.
func (a *App) startPurging() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Retention.Run(ctx, a.purgeInterval)
	}()
	a.stopPurging = func() {
		cancel()
		<-done
	}
}
