package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/moatproject/moat/internal/store"
)

const tokenCols = `id, name, hash, role, created_at, last_used_at`

var (
	stmtCreateToken = define(`INSERT INTO api_tokens (` + tokenCols + `) VALUES (?, ?, ?, ?, ?, ?)`)
	stmtFindToken   = define(`SELECT ` + tokenCols + ` FROM api_tokens WHERE hash = ?`)
	stmtCountTokens = define(`SELECT COUNT(*) FROM api_tokens`)
	stmtTouchToken  = define(`UPDATE api_tokens SET last_used_at = ? WHERE id = ?`)
)

func scanToken(r scanner) (store.Token, error) {
	var t store.Token
	var created int64
	var used sql.NullInt64
	err := r.Scan(&t.ID, &t.Name, &t.Hash, &t.Role, &created, &used)
	t.CreatedAt, t.LastUsedAt = fromMicros(created), fromNullMicros(used)
	return t, err
}

func (q *Queries) CreateToken(ctx context.Context, t store.Token) error {
	_, err := q.exec(ctx, stmtCreateToken, t.ID, t.Name, t.Hash, t.Role, micros(t.CreatedAt), nullMicros(t.LastUsedAt))
	if err != nil {
		return q.fail(err, "create token %s", t.ID)
	}
	return nil
}

// FindToken names no hash in its errors: even a hash of a bearer token stays
// out of messages that may be logged.
func (q *Queries) FindToken(ctx context.Context, hash []byte) (store.Token, error) {
	t, err := scanToken(q.queryRow(ctx, stmtFindToken, hash))
	if err != nil {
		return store.Token{}, q.fail(err, "find token")
	}
	return t, nil
}

func (q *Queries) CountTokens(ctx context.Context) (int, error) {
	var n int
	if err := q.queryRow(ctx, stmtCountTokens).Scan(&n); err != nil {
		return 0, q.fail(err, "count tokens")
	}
	return n, nil
}

func (q *Queries) TouchToken(ctx context.Context, id string, at time.Time) error {
	res, err := q.exec(ctx, stmtTouchToken, micros(at), id)
	if err != nil {
		return q.fail(err, "touch token %s", id)
	}
	return q.mustAffect(res, "touch token %s", id)
}
