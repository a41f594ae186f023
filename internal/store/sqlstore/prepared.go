package sqlstore

import (
	"context"
	"database/sql"
	"sync"
)

// prepared holds the statements of one pool, each prepared on first use.
// SQLite through modernc parses every statement it is given afresh, which
// costs about a third of the engine's time; a prepared statement is parsed
// once per connection. (pgx caches prepared statements by itself.)
type prepared struct {
	db  *sql.DB
	sql []string

	mu    sync.Mutex
	stmts []*sql.Stmt
}

func newPrepared(db *sql.DB, text []string) *prepared {
	return &prepared{db: db, sql: text, stmts: make([]*sql.Stmt, len(text))}
}

// prepareAll prepares every statement. The writer's statements must be
// prepared before any transaction: its pool has one connection, which a
// transaction holds, so preparing on the pool from inside one would wait
// for ever.
func (p *prepared) prepareAll(ctx context.Context) error {
	for s := range p.sql {
		if _, err := p.get(ctx, stmt(s)); err != nil {
			return err
		}
	}
	return nil
}

// lookup returns an already prepared statement, or nil.
func (p *prepared) lookup(s stmt) *sql.Stmt {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stmts[s]
}

// get returns the statement, preparing it on the pool if needed.
func (p *prepared) get(ctx context.Context, s stmt) (*sql.Stmt, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.stmts[s]; st != nil {
		return st, nil
	}
	st, err := p.db.PrepareContext(ctx, p.sql[s])
	if err != nil {
		return nil, err
	}
	p.stmts[s] = st
	return st, nil
}

func (p *prepared) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, st := range p.stmts {
		if st != nil {
			st.Close()
			p.stmts[i] = nil
		}
	}
}
