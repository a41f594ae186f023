package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/moatproject/moat/internal/store"
)

const (
	vaultStateCols = `primary_term, min_decryption_term, check_value, kdf_salt, kdf_time, kdf_memory, kdf_threads, created_at, updated_at`
	secretMetaCols = `id, environment, name, version, key_term, bindings, rotation_period, block_expired, created_at, updated_at, last_used_at`
	secretCols     = secretMetaCols + `, ciphertext`
)

var (
	stmtInitVaultState = define(`INSERT INTO vault_state (id, ` + vaultStateCols + `) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	stmtGetVaultState  = define(`SELECT ` + vaultStateCols + ` FROM vault_state WHERE id = 1`)
	// A no-op update takes the row's write lock on Postgres (and the
	// database's on SQLite) until the transaction ends.
	stmtLockVaultState   = define(`UPDATE vault_state SET updated_at = updated_at WHERE id = 1 RETURNING ` + vaultStateCols)
	stmtUpdateVaultState = define(`UPDATE vault_state SET primary_term = ?, min_decryption_term = ?, updated_at = ? WHERE id = 1`)
	stmtAddVaultKey      = define(`INSERT INTO vault_keys (term, wrapped, created_at) VALUES (?, ?, ?)`)
	stmtListVaultKeys    = define(`SELECT term, wrapped, created_at FROM vault_keys ORDER BY term`)
	stmtDeleteVaultKeys  = define(`DELETE FROM vault_keys WHERE term < ?`)

	stmtCreateSecret  = define(`INSERT INTO vault_secrets (` + secretCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	stmtReplaceSecret = define(`UPDATE vault_secrets SET version = ?, key_term = ?, ciphertext = ?, bindings = ?, rotation_period = ?, block_expired = ?, updated_at = ?
		WHERE id = ? AND version = ?`)
	stmtGetSecret          = define(`SELECT ` + secretCols + ` FROM vault_secrets WHERE environment = ? AND name = ?`)
	stmtListSecrets        = define(`SELECT ` + secretMetaCols + ` FROM vault_secrets WHERE environment = ? ORDER BY environment, name`)
	stmtListAllSecrets     = define(`SELECT ` + secretMetaCols + ` FROM vault_secrets ORDER BY environment, name`)
	stmtSecretID           = define(`SELECT id FROM vault_secrets WHERE environment = ? AND name = ?`)
	stmtDeleteSecretUses   = define(`DELETE FROM vault_secret_uses WHERE secret_id = ?`)
	stmtDeleteSecret       = define(`DELETE FROM vault_secrets WHERE id = ?`)
	stmtCountSecretsByTerm = define(`SELECT key_term, COUNT(*) FROM vault_secrets GROUP BY key_term`)
	stmtSecretsBelowTerm   = define(`SELECT ` + secretCols + ` FROM vault_secrets WHERE key_term < ? AND id > ? ORDER BY id LIMIT ?`)
	stmtRewrapSecret       = define(`UPDATE vault_secrets SET key_term = ?, ciphertext = ? WHERE id = ? AND version = ? AND key_term = ?`)
	stmtTouchSecret        = define(`UPDATE vault_secrets SET last_used_at = ? WHERE id = ?`)
	stmtRecordSecretUse    = define(`INSERT INTO vault_secret_uses (secret_id, workflow, environment, first_used_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (secret_id, workflow, environment) DO NOTHING`)
)

// maxSecretBatch bounds one ListSecretsBelowTerm.
const maxSecretBatch = 10_000

func scanVaultState(r scanner) (store.VaultState, error) {
	var st store.VaultState
	var primary, minTerm, kdfTime, kdfMemory, kdfThreads, created, updated int64
	err := r.Scan(&primary, &minTerm, &st.Check, &st.KDF.Salt, &kdfTime, &kdfMemory, &kdfThreads, &created, &updated)
	if err != nil {
		return store.VaultState{}, err
	}
	st.PrimaryTerm, st.MinDecryptionTerm = uint32(primary), uint32(minTerm)
	st.KDF.Time, st.KDF.MemoryKiB, st.KDF.Threads = uint32(kdfTime), uint32(kdfMemory), uint8(kdfThreads)
	st.CreatedAt, st.UpdatedAt = fromMicros(created), fromMicros(updated)
	return st, nil
}

func (q *Queries) InitVault(ctx context.Context, st store.VaultState, first store.VaultKey) error {
	if st.PrimaryTerm == 0 || first.Term != st.PrimaryTerm || len(st.Check) == 0 || len(first.Wrapped) == 0 {
		return fmt.Errorf("store: init vault: a primary term, its key and a check value are required: %w", store.ErrInvalid)
	}
	_, err := q.exec(ctx, stmtInitVaultState, int64(st.PrimaryTerm), int64(st.MinDecryptionTerm), st.Check,
		st.KDF.Salt, int64(st.KDF.Time), int64(st.KDF.MemoryKiB), int64(st.KDF.Threads), micros(st.CreatedAt), micros(st.UpdatedAt))
	if err != nil {
		return q.fail(err, "init vault")
	}
	return q.AddVaultKey(ctx, first)
}

func (q *Queries) GetVaultState(ctx context.Context) (store.VaultState, error) {
	st, err := scanVaultState(q.queryRow(ctx, stmtGetVaultState))
	if err != nil {
		return store.VaultState{}, q.fail(err, "vault state")
	}
	return st, nil
}

func (q *Queries) LockVaultState(ctx context.Context) (store.VaultState, error) {
	st, err := scanVaultState(q.queryRow(ctx, stmtLockVaultState))
	if err != nil {
		return store.VaultState{}, q.fail(err, "lock vault state")
	}
	return st, nil
}

func (q *Queries) UpdateVaultState(ctx context.Context, st store.VaultState) error {
	res, err := q.exec(ctx, stmtUpdateVaultState, int64(st.PrimaryTerm), int64(st.MinDecryptionTerm), micros(st.UpdatedAt))
	if err != nil {
		return q.fail(err, "update vault state")
	}
	return q.mustAffect(res, "update vault state")
}

func (q *Queries) AddVaultKey(ctx context.Context, k store.VaultKey) error {
	if k.Term == 0 || len(k.Wrapped) == 0 {
		return fmt.Errorf("store: add vault key: a term and its wrapped key are required: %w", store.ErrInvalid)
	}
	if _, err := q.exec(ctx, stmtAddVaultKey, int64(k.Term), k.Wrapped, micros(k.CreatedAt)); err != nil {
		return q.fail(err, "add vault key term %d", k.Term)
	}
	return nil
}

func (q *Queries) ListVaultKeys(ctx context.Context) ([]store.VaultKey, error) {
	rows, err := q.query(ctx, stmtListVaultKeys)
	if err != nil {
		return nil, q.fail(err, "list vault keys")
	}
	keys, err := collect(rows, func(r scanner) (store.VaultKey, error) {
		var k store.VaultKey
		var term, created int64
		err := r.Scan(&term, &k.Wrapped, &created)
		k.Term, k.CreatedAt = uint32(term), fromMicros(created)
		return k, err
	})
	if err != nil {
		return nil, q.fail(err, "list vault keys")
	}
	return keys, nil
}

func (q *Queries) DeleteVaultKeysBelow(ctx context.Context, term uint32) (int, error) {
	res, err := q.exec(ctx, stmtDeleteVaultKeys, int64(term))
	if err != nil {
		return 0, q.fail(err, "delete vault keys below term %d", term)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, q.fail(err, "delete vault keys below term %d", term)
	}
	return int(n), nil
}

// scanSecret scans secretMetaCols and, when withCiphertext, the ciphertext.
func scanSecret(withCiphertext bool) func(r scanner) (store.Secret, error) {
	return func(r scanner) (store.Secret, error) {
		var s store.Secret
		var term, period, block, created, updated int64
		var bindings string
		var used sql.NullInt64
		dest := []any{&s.ID, &s.Environment, &s.Name, &s.Version, &term, &bindings, &period, &block, &created, &updated, &used}
		if withCiphertext {
			dest = append(dest, &s.Ciphertext)
		}
		if err := r.Scan(dest...); err != nil {
			return store.Secret{}, err
		}
		if err := json.Unmarshal([]byte(bindings), &s.Bindings); err != nil {
			return store.Secret{}, fmt.Errorf("bindings of secret %s: %w", s.ID, err)
		}
		s.KeyTerm, s.RotationPeriod, s.BlockExpired = uint32(term), time.Duration(period)*time.Microsecond, block != 0
		s.CreatedAt, s.UpdatedAt, s.LastUsedAt = fromMicros(created), fromMicros(updated), fromNullMicros(used)
		return s, nil
	}
}

func secretArgs(s store.Secret) (bindings string, period, block int64, err error) {
	b, err := json.Marshal(s.Bindings)
	if err != nil {
		return "", 0, 0, err
	}
	if s.BlockExpired {
		block = 1
	}
	return string(b), s.RotationPeriod.Microseconds(), block, nil
}

func validSecret(s store.Secret) bool {
	return s.ID != "" && s.Environment != "" && s.Name != "" && s.Version > 0 && s.KeyTerm > 0 && len(s.Ciphertext) > 0
}

// Errors name a secret by id or by environment and name, never by value.

func (q *Queries) CreateSecret(ctx context.Context, s store.Secret) error {
	if !validSecret(s) {
		return fmt.Errorf("store: create secret: id, environment, name, version, key term and ciphertext are required: %w", store.ErrInvalid)
	}
	bindings, period, block, err := secretArgs(s)
	if err != nil {
		return fmt.Errorf("store: create secret %s: %w", s.ID, err)
	}
	_, err = q.exec(ctx, stmtCreateSecret, s.ID, s.Environment, s.Name, s.Version, int64(s.KeyTerm), bindings, period, block,
		micros(s.CreatedAt), micros(s.UpdatedAt), nullMicros(s.LastUsedAt), s.Ciphertext)
	if err != nil {
		return q.fail(err, "create secret %s/%s", s.Environment, s.Name)
	}
	return nil
}

func (q *Queries) ReplaceSecret(ctx context.Context, s store.Secret) error {
	if !validSecret(s) || s.Version < 2 {
		return fmt.Errorf("store: replace secret: id, a version above 1, key term and ciphertext are required: %w", store.ErrInvalid)
	}
	bindings, period, block, err := secretArgs(s)
	if err != nil {
		return fmt.Errorf("store: replace secret %s: %w", s.ID, err)
	}
	res, err := q.exec(ctx, stmtReplaceSecret, s.Version, int64(s.KeyTerm), s.Ciphertext, bindings, period, block, micros(s.UpdatedAt), s.ID, s.Version-1)
	if err != nil {
		return q.fail(err, "replace secret %s", s.ID)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return q.fail(err, "replace secret %s", s.ID)
	}
	if n == 0 {
		return fmt.Errorf("store: replace secret %s: version %d is not the next one: %w", s.ID, s.Version, store.ErrConflict)
	}
	return nil
}

func (q *Queries) GetSecret(ctx context.Context, environment, name string) (store.Secret, error) {
	s, err := scanSecret(true)(q.queryRow(ctx, stmtGetSecret, environment, name))
	if err != nil {
		return store.Secret{}, q.fail(err, "secret %s/%s", environment, name)
	}
	return s, nil
}

func (q *Queries) ListSecrets(ctx context.Context, environment string) ([]store.Secret, error) {
	var rows *sql.Rows
	var err error
	if environment == "" {
		rows, err = q.query(ctx, stmtListAllSecrets)
	} else {
		rows, err = q.query(ctx, stmtListSecrets, environment)
	}
	if err != nil {
		return nil, q.fail(err, "list secrets of %q", environment)
	}
	out, err := collect(rows, scanSecret(false))
	if err != nil {
		return nil, q.fail(err, "list secrets of %q", environment)
	}
	return out, nil
}

func (q *Queries) DeleteSecret(ctx context.Context, environment, name string) error {
	var id string
	if err := q.queryRow(ctx, stmtSecretID, environment, name).Scan(&id); err != nil {
		return q.fail(err, "delete secret %s/%s", environment, name)
	}
	if _, err := q.exec(ctx, stmtDeleteSecretUses, id); err != nil {
		return q.fail(err, "delete uses of secret %s", id)
	}
	res, err := q.exec(ctx, stmtDeleteSecret, id)
	if err != nil {
		return q.fail(err, "delete secret %s", id)
	}
	return q.mustAffect(res, "delete secret %s", id)
}

func (q *Queries) CountSecretsByTerm(ctx context.Context) (map[uint32]int, error) {
	rows, err := q.query(ctx, stmtCountSecretsByTerm)
	if err != nil {
		return nil, q.fail(err, "count secrets by key term")
	}
	type count struct {
		term uint32
		n    int
	}
	counts, err := collect(rows, func(r scanner) (count, error) {
		var term int64
		var c count
		err := r.Scan(&term, &c.n)
		c.term = uint32(term)
		return c, err
	})
	if err != nil {
		return nil, q.fail(err, "count secrets by key term")
	}
	out := make(map[uint32]int, len(counts))
	for _, c := range counts {
		out[c.term] = c.n
	}
	return out, nil
}

func (q *Queries) ListSecretsBelowTerm(ctx context.Context, term uint32, afterID string, limit int) ([]store.Secret, error) {
	if limit < 1 || limit > maxSecretBatch {
		return nil, fmt.Errorf("store: list secrets below term %d: limit must be 1..%d: %w", term, maxSecretBatch, store.ErrInvalid)
	}
	rows, err := q.query(ctx, stmtSecretsBelowTerm, int64(term), afterID, limit)
	if err != nil {
		return nil, q.fail(err, "list secrets below term %d", term)
	}
	out, err := collect(rows, scanSecret(true))
	if err != nil {
		return nil, q.fail(err, "list secrets below term %d", term)
	}
	return out, nil
}

func (q *Queries) RewrapSecret(ctx context.Context, id string, version int, fromTerm, toTerm uint32, ciphertext []byte) (bool, error) {
	if len(ciphertext) == 0 || toTerm == 0 {
		return false, fmt.Errorf("store: rewrap secret %s: a term and ciphertext are required: %w", id, store.ErrInvalid)
	}
	res, err := q.exec(ctx, stmtRewrapSecret, int64(toTerm), ciphertext, id, version, int64(fromTerm))
	if err != nil {
		return false, q.fail(err, "rewrap secret %s", id)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, q.fail(err, "rewrap secret %s", id)
	}
	return n == 1, nil
}

func (q *Queries) TouchSecret(ctx context.Context, id string, at time.Time) error {
	res, err := q.exec(ctx, stmtTouchSecret, micros(at), id)
	if err != nil {
		return q.fail(err, "touch secret %s", id)
	}
	return q.mustAffect(res, "touch secret %s", id)
}

func (q *Queries) RecordSecretUse(ctx context.Context, u store.SecretUse) (bool, error) {
	res, err := q.exec(ctx, stmtRecordSecretUse, u.SecretID, u.Workflow, u.Environment, micros(u.At))
	if err != nil {
		if errors.Is(q.classify(err), store.ErrConflict) {
			return false, nil
		}
		return false, q.fail(err, "record use of secret %s", u.SecretID)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, q.fail(err, "record use of secret %s", u.SecretID)
	}
	return n == 1, nil
}

// The write methods below shadow those of the embedded read-pool Queries.

func (s *Store) InitVault(ctx context.Context, st store.VaultState, first store.VaultKey) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.InitVault(ctx, st, first) })
}

func (s *Store) LockVaultState(ctx context.Context) (st store.VaultState, err error) {
	err = s.InTx(ctx, func(tx store.Tx) error {
		st, err = tx.LockVaultState(ctx)
		return err
	})
	return st, err
}

func (s *Store) UpdateVaultState(ctx context.Context, st store.VaultState) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.UpdateVaultState(ctx, st) })
}

func (s *Store) AddVaultKey(ctx context.Context, k store.VaultKey) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.AddVaultKey(ctx, k) })
}

func (s *Store) DeleteVaultKeysBelow(ctx context.Context, term uint32) (n int, err error) {
	err = s.InTx(ctx, func(tx store.Tx) error {
		n, err = tx.DeleteVaultKeysBelow(ctx, term)
		return err
	})
	return n, err
}

func (s *Store) CreateSecret(ctx context.Context, sec store.Secret) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.CreateSecret(ctx, sec) })
}

func (s *Store) ReplaceSecret(ctx context.Context, sec store.Secret) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.ReplaceSecret(ctx, sec) })
}

func (s *Store) DeleteSecret(ctx context.Context, environment, name string) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.DeleteSecret(ctx, environment, name) })
}

func (s *Store) RewrapSecret(ctx context.Context, id string, version int, fromTerm, toTerm uint32, ciphertext []byte) (ok bool, err error) {
	err = s.InTx(ctx, func(tx store.Tx) error {
		ok, err = tx.RewrapSecret(ctx, id, version, fromTerm, toTerm, ciphertext)
		return err
	})
	return ok, err
}

func (s *Store) TouchSecret(ctx context.Context, id string, at time.Time) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.TouchSecret(ctx, id, at) })
}

func (s *Store) RecordSecretUse(ctx context.Context, u store.SecretUse) (first bool, err error) {
	err = s.InTx(ctx, func(tx store.Tx) error {
		first, err = tx.RecordSecretUse(ctx, u)
		return err
	})
	return first, err
}
