package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/moatproject/moat/internal/store"
)

// maxRunTokensPerCall bounds one AddRunTokens: a call of the gateway issues
// a token per finding, far fewer than this.
const maxRunTokensPerCall = 10_000

const resourceCols = `kind, name, spec, hash, created_at, updated_at`

var (
	stmtGetResource      = define(`SELECT ` + resourceCols + ` FROM resources WHERE kind = ? AND name = ?`)
	stmtListResources    = define(`SELECT ` + resourceCols + ` FROM resources WHERE kind = ? ORDER BY kind, name`)
	stmtListAllResources = define(`SELECT ` + resourceCols + ` FROM resources ORDER BY kind, name`)
	stmtPutResource      = define(`INSERT INTO resources (` + resourceCols + `) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (kind, name) DO UPDATE SET spec = excluded.spec, hash = excluded.hash, updated_at = excluded.updated_at
		RETURNING ` + resourceCols)
	stmtDeleteResource = define(`DELETE FROM resources WHERE kind = ? AND name = ?`)

	stmtLoadRunTokens   = define(`SELECT token, class, value, created_at FROM run_tokens WHERE run_id = ? ORDER BY created_at, token`)
	stmtRunTokenByName  = define(`SELECT class, value FROM run_tokens WHERE run_id = ? AND token = ?`)
	stmtRunTokenByValue = define(`SELECT token FROM run_tokens WHERE run_id = ? AND class = ? AND value = ?`)
	stmtInsertRunToken  = define(`INSERT INTO run_tokens (run_id, token, class, value, created_at) VALUES (?, ?, ?, ?, ?)`)
)

func scanResource(r scanner) (store.Resource, error) {
	var res store.Resource
	var spec string
	var created, updated int64
	err := r.Scan(&res.Kind, &res.Name, &spec, &res.Hash, &created, &updated)
	res.Spec, res.CreatedAt, res.UpdatedAt = []byte(spec), fromMicros(created), fromMicros(updated)
	return res, err
}

// PutResource computes Hash from Spec when the caller leaves it empty.
func (q *Queries) PutResource(ctx context.Context, r store.Resource) (store.Resource, bool, error) {
	switch {
	case r.Kind == "" || r.Name == "":
		return store.Resource{}, false, fmt.Errorf("store: put resource: kind and name are required: %w", store.ErrInvalid)
	case !json.Valid(r.Spec):
		return store.Resource{}, false, fmt.Errorf("store: put %s %s: the spec is not JSON: %w", r.Kind, r.Name, store.ErrInvalid)
	}
	if r.Hash == "" {
		sum := sha256.Sum256(r.Spec)
		r.Hash = hex.EncodeToString(sum[:])
	}
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = r.CreatedAt
	}
	old, err := scanResource(q.queryRow(ctx, stmtGetResource, r.Kind, r.Name))
	switch {
	case err == nil && old.Hash == r.Hash:
		return old, false, nil
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		return store.Resource{}, false, q.fail(err, "put %s %s", r.Kind, r.Name)
	}
	out, err := scanResource(q.queryRow(ctx, stmtPutResource, r.Kind, r.Name, string(r.Spec), r.Hash, micros(r.CreatedAt), micros(r.UpdatedAt)))
	if err != nil {
		return store.Resource{}, false, q.fail(err, "put %s %s", r.Kind, r.Name)
	}
	return out, true, nil
}

func (q *Queries) GetResource(ctx context.Context, kind, name string) (store.Resource, error) {
	r, err := scanResource(q.queryRow(ctx, stmtGetResource, kind, name))
	if err != nil {
		return store.Resource{}, q.fail(err, "%s %s", kind, name)
	}
	return r, nil
}

func (q *Queries) ListResources(ctx context.Context, kind string) ([]store.Resource, error) {
	var rows *sql.Rows
	var err error
	if kind == "" {
		rows, err = q.query(ctx, stmtListAllResources)
	} else {
		rows, err = q.query(ctx, stmtListResources, kind)
	}
	if err != nil {
		return nil, q.fail(err, "list resources of kind %q", kind)
	}
	rs, err := collect(rows, scanResource)
	if err != nil {
		return nil, q.fail(err, "list resources of kind %q", kind)
	}
	return rs, nil
}

func (q *Queries) DeleteResource(ctx context.Context, kind, name string) error {
	res, err := q.exec(ctx, stmtDeleteResource, kind, name)
	if err != nil {
		return q.fail(err, "delete %s %s", kind, name)
	}
	return q.mustAffect(res, "delete %s %s", kind, name)
}

func (q *Queries) LoadRunTokens(ctx context.Context, runID string) ([]store.RunToken, error) {
	rows, err := q.query(ctx, stmtLoadRunTokens, runID)
	if err != nil {
		return nil, q.fail(err, "load tokens of run %s", runID)
	}
	ts, err := collect(rows, func(r scanner) (store.RunToken, error) {
		var t store.RunToken
		var created int64
		err := r.Scan(&t.Token, &t.Class, &t.Value, &created)
		t.CreatedAt = fromMicros(created)
		return t, err
	})
	if err != nil {
		return nil, q.fail(err, "load tokens of run %s", runID)
	}
	for i := range ts {
		if ts[i].Value, err = q.openText(ctx, tokenField(runID, ts[i].Class), ts[i].Value); err != nil {
			return nil, err
		}
	}
	return ts, nil
}

// AddRunTokens checks every token before it inserts any, so that a refused
// call adds nothing even inside a transaction the caller goes on with.
// Errors name tokens, which are placeholders, never the values.
func (q *Queries) AddRunTokens(ctx context.Context, runID string, tokens []store.RunToken) error {
	if runID == "" || len(tokens) > maxRunTokensPerCall {
		return fmt.Errorf("store: add tokens to run %q: a run id and at most %d tokens are required: %w", runID, maxRunTokensPerCall, store.ErrInvalid)
	}
	type classValue struct{ class, value string }
	byToken := map[string]classValue{}
	byValue := map[classValue]string{}
	var fresh []store.RunToken
	var sealedAll []store.Sealed
	for _, t := range tokens {
		if t.Token == "" || t.Class == "" {
			return fmt.Errorf("store: add tokens to run %s: a token and its class are required: %w", runID, store.ErrInvalid)
		}
		cv := classValue{t.Class, t.Value}
		if prev, ok := byToken[t.Token]; ok {
			if prev != cv {
				return fmt.Errorf("store: add tokens to run %s: token %s is given twice for different values: %w", runID, t.Token, store.ErrConflict)
			}
			continue
		}
		if prev, ok := byValue[cv]; ok {
			return fmt.Errorf("store: add tokens to run %s: tokens %s and %s stand for the same value: %w", runID, prev, t.Token, store.ErrConflict)
		}
		byToken[t.Token], byValue[cv] = cv, t.Token
		sealedValue, sealed, err := q.sealText(ctx, tokenField(runID, t.Class), t.Value)
		if err != nil {
			return err
		}
		t.Value = sealedValue
		cv.value = sealedValue
		sealedAll = append(sealedAll, sealed)

		var class, value string
		err = q.queryRow(ctx, stmtRunTokenByName, runID, t.Token).Scan(&class, &value)
		switch {
		case err == nil && (classValue{class, value}) == cv:
			continue // already there: adding it again is a no-op
		case err == nil:
			return fmt.Errorf("store: add tokens to run %s: token %s already stands for another value: %w", runID, t.Token, store.ErrConflict)
		case !errors.Is(err, sql.ErrNoRows):
			return q.fail(err, "add tokens to run %s", runID)
		}
		var other string
		err = q.queryRow(ctx, stmtRunTokenByValue, runID, t.Class, t.Value).Scan(&other)
		switch {
		case err == nil:
			return fmt.Errorf("store: add tokens to run %s: token %s stands for a value that already has token %s: %w", runID, t.Token, other, store.ErrConflict)
		case !errors.Is(err, sql.ErrNoRows):
			return q.fail(err, "add tokens to run %s", runID)
		}
		fresh = append(fresh, t)
	}
	for _, t := range fresh {
		if _, err := q.exec(ctx, stmtInsertRunToken, runID, t.Token, t.Class, t.Value, micros(t.CreatedAt)); err != nil {
			return q.fail(err, "add token %s to run %s", t.Token, runID)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	// Tokens of calls outside any run have no run row to hang subjects on.
	if err := q.queryRow(ctx, stmtRunExists, runID).Scan(new(int)); errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	return q.noteSealed(ctx, runID, sealedAll...)
}

// The write methods below shadow those of the embedded read-pool Queries.

func (s *Store) PutResource(ctx context.Context, r store.Resource) (out store.Resource, changed bool, err error) {
	err = s.InTx(ctx, func(tx store.Tx) error {
		out, changed, err = tx.PutResource(ctx, r)
		return err
	})
	return out, changed, err
}

func (s *Store) DeleteResource(ctx context.Context, kind, name string) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.DeleteResource(ctx, kind, name) })
}

func (s *Store) AddRunTokens(ctx context.Context, runID string, tokens []store.RunToken) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.AddRunTokens(ctx, runID, tokens) })
}
