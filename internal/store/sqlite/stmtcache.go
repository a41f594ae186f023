package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"reflect"
)

// River sends its queries as plain SQL through database/sql's QueryContext,
// not as prepared statements, and the driver parses and plans each one
// afresh: on the engine's runs with an effect step that was 40 % of the
// process's CPU, and an idle server spent two thirds of its CPU preparing
// River's poll for due jobs (BENCHMARKS.md). The writer's connection
// therefore keeps the statements of the queries it runs and runs them
// again, as SQLite means prepared statements to be used; the store's own
// queries are prepared statements already.

// maxCachedStatements bounds the statements a connection keeps: River's
// queries are a few dozen, and SQL built per call (lists of varying length)
// past the bound simply runs unprepared.
const maxCachedStatements = 256

// cachingConnector opens connections that reuse their statements.
type cachingConnector struct{ driver.Connector }

func (c cachingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(sqliteConn)
	if !ok {
		conn.Close()
		return nil, errDriverConn
	}
	return &cachingConn{sqliteConn: sc, stmts: map[string]*cachedStmt{}}, nil
}

var errDriverConn = errors.New("store: the sqlite driver's connection lacks the methods database/sql uses with a context")

// sqliteConn is what database/sql uses of the driver's connection.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// queryStmt is what the cache uses of the driver's statement.
type queryStmt interface {
	driver.Stmt
	driver.StmtQueryContext
}

type cachedStmt struct {
	stmt queryStmt
	// inUse is set while rows read from the statement are open: the same
	// query run meanwhile (inside one transaction) gets a statement of its
	// own. database/sql uses a connection from one goroutine at a time.
	inUse bool
}

type cachingConn struct {
	sqliteConn
	stmts map[string]*cachedStmt
}

// QueryContext runs query on its kept statement, preparing it the first
// time.
func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	s, ok := c.stmts[query]
	if !ok && len(c.stmts) < maxCachedStatements {
		prepared, err := c.PrepareContext(ctx, query)
		if err != nil {
			return nil, err
		}
		stmt, canQuery := prepared.(queryStmt)
		if !canQuery {
			prepared.Close()
			return c.sqliteConn.QueryContext(ctx, query, args)
		}
		s = &cachedStmt{stmt: stmt}
		c.stmts[query] = s
	}
	if s == nil || s.inUse {
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	rows, err := s.stmt.QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	s.inUse = true
	return &cachedRows{Rows: rows, stmt: s}, nil
}

func (c *cachingConn) Close() error {
	for _, s := range c.stmts {
		s.stmt.Close()
	}
	return c.sqliteConn.Close()
}

// cachedRows gives its statement back when closed. It passes on the
// driver's column types, with database/sql's defaults where the driver
// has none.
type cachedRows struct {
	driver.Rows
	stmt *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	r.stmt.inUse = false
	return err
}

func (r *cachedRows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

func (r *cachedRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *cachedRows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *cachedRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *cachedRows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}
