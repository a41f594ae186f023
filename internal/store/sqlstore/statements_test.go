package sqlstore

import (
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/store"
)

func TestDollarPlaceholders(t *testing.T) {
	tests := []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE id = ?`, `SELECT a FROM t WHERE id = $1`},
		{`INSERT INTO t (a, b, c) VALUES (?, ?, ?)`, `INSERT INTO t (a, b, c) VALUES ($1, $2, $3)`},
		{`WHERE (created_at, id) < (?, ?) LIMIT ?`, `WHERE (created_at, id) < ($1, $2) LIMIT $3`},
	}
	for _, tc := range tests {
		if got := dollarPlaceholders(tc.in); got != tc.want {
			t.Errorf("dollarPlaceholders(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStatementsPerDialect(t *testing.T) {
	lite, pg := statements[store.SQLite], statements[store.Postgres]
	if len(lite) == 0 || len(lite) != len(pg) {
		t.Fatalf("%d SQLite and %d Postgres statements", len(lite), len(pg))
	}
	for i := range pg {
		if strings.Contains(pg[i], "?") {
			t.Errorf("Postgres statement %d keeps a ?: %s", i, pg[i])
		}
	}
}

func TestRunCursor(t *testing.T) {
	created, id, err := decodeRunCursor(encodeRunCursor(-42, "run:with:colons"))
	if err != nil || created != -42 || id != "run:with:colons" {
		t.Fatalf("round trip: %d %q %v", created, id, err)
	}
	for _, bad := range []string{"!", encodeRunCursor(1, ""), "MTIz", "eDpy"} {
		if _, _, err := decodeRunCursor(bad); err == nil {
			t.Errorf("decodeRunCursor(%q) accepted a malformed cursor", bad)
		}
	}
}
