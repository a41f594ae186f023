package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	"modernc.org/sqlite"
)

// openCaching opens a one-connection database whose connection keeps its
// statements, as the store's writer does.
func openCaching(t *testing.T) *sql.DB {
	t.Helper()
	connector, err := sqlite.NewConnector(filepath.Join(t.TempDir(), "cache.db") + "?" + pragmas)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(cachingConnector{connector})
	db.SetMaxOpenConns(1)
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return db
}

// keptStatements is how many statements the connection keeps, and how
// many of them have rows open.
func keptStatements(t *testing.T, db *sql.DB) (kept, inUse int) {
	t.Helper()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Raw(func(dc any) error {
		for _, s := range dc.(*cachingConn).stmts {
			kept++
			if s.inUse {
				inUse++
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return kept, inUse
}

func TestCachingConnReusesTheStatementOfAQuery(t *testing.T) {
	db := openCaching(t)
	for i := range 50 {
		var got int
		if err := db.QueryRow("SELECT ? + 1", i).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != i+1 {
			t.Fatalf("SELECT %d + 1 gave %d", i, got)
		}
	}
	if kept, inUse := keptStatements(t, db); kept != 1 || inUse != 0 {
		t.Errorf("after one query run 50 times the connection keeps %d statements, %d in use; want 1, 0", kept, inUse)
	}
	// Statements that change nothing are not kept; they run as before.
	if _, err := db.Exec("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	var sum int
	if err := db.QueryRow("SELECT sum(v) FROM t").Scan(&sum); err != nil || sum != 3 {
		t.Fatalf("sum = %d, %v; want 3", sum, err)
	}
}

func TestCachingConnRunsTheSameQueryWhileItsRowsAreOpen(t *testing.T) {
	db := openCaching(t)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	const query = "SELECT value FROM json_each(?)"
	outer, err := tx.Query(query, "[1,2,3]")
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	read := func(rows *sql.Rows, n int) {
		for range n {
			if !rows.Next() {
				t.Fatalf("rows ended early: %v", rows.Err())
			}
			var v int
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
	}
	read(outer, 1)
	inner, err := tx.Query(query, "[4,5]")
	if err != nil {
		t.Fatal(err)
	}
	read(inner, 2)
	if inner.Next() {
		t.Error("the inner query has a third row")
	}
	inner.Close()
	read(outer, 2)
	if outer.Next() {
		t.Error("the outer query has a fourth row")
	}
	outer.Close()
	if fmt.Sprint(got) != "[1 4 5 2 3]" {
		t.Errorf("read %v, want [1 4 5 2 3]", got)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if kept, inUse := keptStatements(t, db); kept != 1 || inUse != 0 {
		t.Errorf("with both rows closed the connection keeps %d statements, %d in use; want 1, 0", kept, inUse)
	}
	var v int
	if err := db.QueryRow(query, "[9]").Scan(&v); err != nil || v != 9 {
		t.Fatalf("after both closed: %d, %v", v, err)
	}
}

func TestCachingConnKeepsAtMostItsBound(t *testing.T) {
	db := openCaching(t)
	for i := range maxCachedStatements + 10 {
		var got int
		if err := db.QueryRow(fmt.Sprintf("SELECT %d", i)).Scan(&got); err != nil || got != i {
			t.Fatalf("SELECT %d gave %d, %v", i, got, err)
		}
	}
	if kept, _ := keptStatements(t, db); kept != maxCachedStatements {
		t.Errorf("kept %d statements, want %d", kept, maxCachedStatements)
	}
}

func TestCachingConnAfterErrors(t *testing.T) {
	db := openCaching(t)
	if _, err := db.Query("SELECT * FROM missing"); err == nil {
		t.Fatal("a query of a missing table succeeded")
	}
	// A kept statement that fails when run works again with other input.
	const query = "SELECT abs(?)"
	var got int64
	if err := db.QueryRow(query, int64(-9223372036854775808)).Scan(&got); err == nil {
		t.Fatal("abs of the least integer did not overflow")
	}
	if err := db.QueryRow(query, -7).Scan(&got); err != nil || got != 7 {
		t.Fatalf("abs(-7) = %d, %v", got, err)
	}
	// And after a cancelled context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := db.QueryRowContext(ctx, query, -1).Scan(&got); err == nil {
		t.Fatal("a query with a cancelled context succeeded")
	}
	if err := db.QueryRow(query, -8).Scan(&got); err != nil || got != 8 {
		t.Fatalf("abs(-8) = %d, %v", got, err)
	}
	// A kept statement follows the schema: "*" counts a column added later.
	if _, err := db.Exec("CREATE TABLE later (v INTEGER)"); err != nil {
		t.Fatal(err)
	}
	columns := func() []string {
		rows, err := db.Query("SELECT * FROM later")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		names, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	if got := columns(); len(got) != 1 {
		t.Fatalf("columns %v, want [v]", got)
	}
	if _, err := db.Exec("ALTER TABLE later ADD COLUMN w TEXT"); err != nil {
		t.Fatal(err)
	}
	if got := columns(); fmt.Sprint(got) != "[v w]" {
		t.Fatalf("after ALTER TABLE, columns %v, want [v w]", got)
	}
}
