package sqlstore

import (
	"strconv"
	"strings"

	"github.com/moatproject/moat/internal/store"
)

// stmt indexes a statement defined once with ? placeholders and rebound per
// dialect at init, so a call never rewrites SQL.
type stmt int

var sqlText []string

// define registers query and returns its index. It runs during package
// variable initialisation only.
func define(query string) stmt {
	sqlText = append(sqlText, query)
	return stmt(len(sqlText) - 1)
}

// statements holds every query in each dialect's placeholder style; filled by
// init after all define calls have run.
var statements map[store.Dialect][]string

func init() {
	statements = map[store.Dialect][]string{
		store.SQLite:   sqlText,
		store.Postgres: rebindAll(sqlText, dollarPlaceholders),
	}
}

func rebindAll(queries []string, rebind func(string) string) []string {
	out := make([]string, len(queries))
	for i, q := range queries {
		out[i] = rebind(q)
	}
	return out
}

// dollarPlaceholders turns ? into $1, $2, … Our statements carry no ? inside
// string literals, so a plain scan is enough.
func dollarPlaceholders(query string) string {
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
