package audit

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlstore"
)

// The tamper tests build a log of tamperRecords records and tamper with
// it at random positions, MOAT_AUDIT_TAMPER_TRIALS times per kind (default
// 20, to keep the suite fast; the figure is 1000), in the database
// (SQL on the SQLite file, inside a transaction rolled back after each
// trial) and in an export file. Every trial must fail verification and
// name the tampered position as the first bad record.
const tamperRecords = 10_000

func tamperTrials(t *testing.T) int {
	if s := os.Getenv("MOAT_AUDIT_TAMPER_TRIALS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("MOAT_AUDIT_TAMPER_TRIALS=%q is not a positive number", s)
		}
		return n
	}
	return 20
}

func tamperRand(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MOAT_AUDIT_TAMPER_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("MOAT_AUDIT_TAMPER_SEED=%d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// buildTamperLog makes a closed log of tamperRecords records with a
// checkpoint every 1000.
func buildTamperLog(t *testing.T) (store.Store, note.Verifier) {
	s, _ := openStore(t)
	signer, verifier, hkey := testKeys(t)
	l := openLog(t, s, signer, hkey, Options{CheckpointEvery: 1000})
	fill(t, l, tamperRecords)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return s, verifier
}

func wantTamper(t *testing.T, what string, err error, seq int64) {
	t.Helper()
	var te *TamperError
	if !errors.As(err, &te) || !errors.Is(err, ErrTampered) {
		t.Fatalf("%s: verify returned %v, want a TamperError", what, err)
	}
	if te.Seq != seq {
		t.Fatalf("%s: verify names record %d (%v), want %d", what, te.Seq, err, seq)
	}
}

var sqliteQueries = sqlstore.Dialect{Name: store.SQLite, Classify: func(error) error { return nil }}

// inTamperTx runs tamper then Verify inside one transaction on the SQLite
// file, and rolls it back.
func inTamperTx(t *testing.T, s store.Store, v note.Verifier, opts VerifyOptions, tamper func(tx *sql.Tx) error) error {
	t.Helper()
	tx, err := s.WriterDB().BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := tamper(tx); err != nil {
		t.Fatal(err)
	}
	_, err = Verify(t.Context(), StoreSource(sqlstore.NewQueries(sqliteQueries, tx), 0), v, opts)
	return err
}

func exec(tx *sql.Tx, queries ...string) error {
	for _, q := range queries {
		if _, err := tx.Exec(q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

func TestTamperDatabase(t *testing.T) {
	s, v := buildTamperLog(t)
	verifyStore(t, s, v) // intact before
	trials := tamperTrials(t)
	rng := tamperRand(t)
	columns := []string{"at = at + 1", "actor = actor || 'x'", "action = 'secret.delete'", "resource = ''", "outcome = 'ok'", `details = '{"tampered":true}'`}
	kinds := []struct {
		name   string
		tamper func(tx *sql.Tx, trial int) (int64, error)
	}{
		{"modify", func(tx *sql.Tx, trial int) (int64, error) {
			k := rng.Int64N(tamperRecords)
			col := columns[trial%len(columns)]
			if col == "outcome = 'ok'" {
				col = "outcome = CASE outcome WHEN 'ok' THEN 'denied' ELSE 'ok' END"
			}
			return k, exec(tx, fmt.Sprintf("UPDATE audit_records SET %s WHERE seq = %d", col, k))
		}},
		{"delete", func(tx *sql.Tx, _ int) (int64, error) {
			k := rng.Int64N(tamperRecords)
			return k, exec(tx, fmt.Sprintf("DELETE FROM audit_records WHERE seq = %d", k))
		}},
		{"insert", func(tx *sql.Tx, _ int) (int64, error) {
			// Shift everything from k up by one and put a made-up record
			// (a copy of k by another actor, with k's hashes) at k.
			// The database skips a record that does not continue the log:
			// someone rewriting the file drops that trigger first.
			k := rng.Int64N(tamperRecords)
			err := exec(tx,
				"DROP TRIGGER audit_records_continue_log",
				fmt.Sprintf("UPDATE audit_records SET seq = -seq - 1 WHERE seq >= %d", k),
				"UPDATE audit_records SET seq = -seq WHERE seq < 0",
				fmt.Sprintf(`INSERT INTO audit_records SELECT %d, at, 'user:mallory', action, resource, outcome, details, hashes FROM audit_records WHERE seq = %d`, k, k+1))
			var n int64
			if err == nil {
				err = tx.QueryRow(`SELECT COUNT(*) FROM audit_records`).Scan(&n)
			}
			if err == nil && n != tamperRecords+1 {
				err = fmt.Errorf("the made-up record was not inserted: %d records", n)
			}
			return k, err
		}},
		{"swap", func(tx *sql.Tx, trial int) (int64, error) {
			i := rng.Int64N(tamperRecords - 1)
			j := i + 1 + rng.Int64N(tamperRecords-1-i)
			if trial%2 == 0 {
				// Whole rows, hashes and all, trade places.
				return i, exec(tx,
					fmt.Sprintf("UPDATE audit_records SET seq = -1 WHERE seq = %d", i),
					fmt.Sprintf("UPDATE audit_records SET seq = %d WHERE seq = %d", i, j),
					fmt.Sprintf("UPDATE audit_records SET seq = %d WHERE seq = -1", j))
			}
			// Contents trade places; the hashes stay.
			cols := "at, actor, action, resource, outcome, details"
			return i, exec(tx,
				fmt.Sprintf("CREATE TEMP TABLE swap AS SELECT seq, %s FROM audit_records WHERE seq IN (%d, %d)", cols, i, j),
				fmt.Sprintf(`UPDATE audit_records SET (%s) = (SELECT %s FROM swap WHERE swap.seq = %d + %d - audit_records.seq) WHERE seq IN (%d, %d)`, cols, cols, i, j, i, j),
				"DROP TABLE swap")
		}},
		{"truncate", func(tx *sql.Tx, _ int) (int64, error) {
			k := rng.Int64N(tamperRecords)
			return k, exec(tx, fmt.Sprintf("DELETE FROM audit_records WHERE seq >= %d", k))
		}},
	}
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			for trial := range trials {
				var k int64
				err := inTamperTx(t, s, v, VerifyOptions{}, func(tx *sql.Tx) (err error) {
					k, err = kind.tamper(tx, trial)
					return err
				})
				wantTamper(t, fmt.Sprintf("trial %d at %d", trial, k), err, k)
			}
		})
	}
	verifyStore(t, s, v) // intact after: every trial rolled back
}

// TestTamperDatabaseForger: someone who rewrites a record and recomputes
// every stored hash after it (they have the code, not the key) is caught
// by the first checkpoint past the change; the error names the first
// record after the last checkpoint that still matches.
func TestTamperDatabaseForger(t *testing.T) {
	s, v := buildTamperLog(t)
	const k = 4321
	err := inTamperTx(t, s, v, VerifyOptions{}, func(tx *sql.Tx) error {
		if err := exec(tx, fmt.Sprintf("UPDATE audit_records SET actor = 'user:mallory' WHERE seq = %d", k)); err != nil {
			return err
		}
		q := sqlstore.NewQueries(sqliteQueries, tx)
		tree, err := loadFrontier(t.Context(), q, k)
		if err != nil {
			return err
		}
		recs, err := q.ListAudit(t.Context(), k, tamperRecords)
		if err != nil {
			return err
		}
		var hs []tlog.Hash
		for _, r := range recs {
			st := stored{Seq: r.Seq, Time: r.Time, Actor: r.Actor, Action: r.Action, Resource: r.Resource, Outcome: r.Outcome, Details: r.Details}
			leaf, _ := leafHash(nil, &st)
			hs = tree.push(leaf, hs[:0])
			var b []byte
			for _, h := range hs {
				b = append(b, h[:]...)
			}
			if _, err := tx.Exec("UPDATE audit_records SET hashes = ? WHERE seq = ?", b, r.Seq); err != nil {
				return err
			}
		}
		return nil
	})
	wantTamper(t, "forged hashes", err, 4000)

	// Truncated together with its checkpoints, the database alone looks
	// whole; a checkpoint kept elsewhere (a file sink, a witness) shows it.
	last, err := s.LatestAuditCheckpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cut := func(tx *sql.Tx) error {
		return exec(tx, "DELETE FROM audit_records WHERE seq >= 7000", "DELETE FROM audit_checkpoints WHERE size > 7000")
	}
	if err := inTamperTx(t, s, v, VerifyOptions{}, cut); err != nil {
		t.Fatalf("a cut with its checkpoints: %v (the database alone cannot show it)", err)
	}
	err = inTamperTx(t, s, v, VerifyOptions{Checkpoints: [][]byte{last.Note}}, cut)
	wantTamper(t, "cut with an outside checkpoint", err, 7000)
}

func TestTamperExport(t *testing.T) {
	s, v := buildTamperLog(t)
	var buf bytes.Buffer
	if _, err := Export(t.Context(), s, 0, &buf); err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(buf.Bytes(), []byte("\n"))
	lines = lines[:len(lines)-1] // after the final newline
	index := map[int64]int{}     // record seq → line
	var finalCheckpoint []byte
	for i, ln := range lines {
		l, err := ParseLine(bytes.TrimSuffix(ln, []byte("\n")))
		if err != nil {
			t.Fatal(err)
		}
		switch l.Type {
		case LineRecord:
			index[l.Record.Seq] = i
		case LineCheckpoint:
			finalCheckpoint = l.Checkpoint.Note
		}
	}
	verify := func(ls [][]byte, opts VerifyOptions) error {
		_, err := Verify(t.Context(), FileSource(bytes.NewReader(bytes.Join(ls, nil))), v, opts)
		return err
	}
	if err := verify(lines, VerifyOptions{Checkpoints: [][]byte{finalCheckpoint}}); err != nil {
		t.Fatalf("the intact export: %v", err)
	}
	record := func(seq int64) Line {
		l, err := ParseLine(bytes.TrimSuffix(lines[index[seq]], []byte("\n")))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	encode := func(l Line) []byte {
		b, err := l.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	edits := []func(r *store.AuditRecord){
		func(r *store.AuditRecord) { r.Actor += "x" },
		func(r *store.AuditRecord) { r.Action = "secret.delete" },
		func(r *store.AuditRecord) { r.Resource = "" },
		func(r *store.AuditRecord) { r.Time = r.Time.Add(time.Microsecond) },
		func(r *store.AuditRecord) { r.Details = []byte(`{"tampered":true}`) },
	}
	trials := tamperTrials(t)
	rng := tamperRand(t)
	kinds := []struct {
		name   string
		tamper func(trial int) ([][]byte, int64)
	}{
		{"modify", func(trial int) ([][]byte, int64) {
			k := rng.Int64N(tamperRecords)
			l := record(k)
			edits[trial%len(edits)](l.Record) // the hash stays
			out := append([][]byte(nil), lines...)
			out[index[k]] = encode(l)
			return out, k
		}},
		{"delete", func(int) ([][]byte, int64) {
			k := rng.Int64N(tamperRecords)
			i := index[k]
			return append(append([][]byte(nil), lines[:i]...), lines[i+1:]...), k
		}},
		{"insert", func(int) ([][]byte, int64) {
			// A made-up record, hashed correctly, placed before k under k's
			// number.
			k := rng.Int64N(tamperRecords)
			l := record(k)
			l.Record.Actor = "user:mallory"
			st := stored{Seq: k, Time: l.Record.Time, Actor: l.Record.Actor, Action: l.Record.Action, Resource: l.Record.Resource, Outcome: l.Record.Outcome, Details: l.Record.Details}
			l.Hash, _ = leafHash(nil, &st)
			i := index[k]
			out := append([][]byte(nil), lines[:i]...)
			out = append(out, encode(l))
			return append(out, lines[i:]...), k
		}},
		{"swap", func(int) ([][]byte, int64) {
			i := rng.Int64N(tamperRecords - 1)
			j := i + 1 + rng.Int64N(tamperRecords-1-i)
			out := append([][]byte(nil), lines...)
			out[index[i]], out[index[j]] = out[index[j]], out[index[i]]
			return out, i
		}},
		{"truncate", func(int) ([][]byte, int64) {
			k := rng.Int64N(tamperRecords)
			return append([][]byte(nil), lines[:index[k]]...), k
		}},
	}
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			for trial := range trials {
				ls, k := kind.tamper(trial)
				// The final checkpoint as a file sink or witness keeps it:
				// without it a file cut with its checkpoints looks whole.
				err := verify(ls, VerifyOptions{Checkpoints: [][]byte{finalCheckpoint}})
				wantTamper(t, fmt.Sprintf("trial %d at %d", trial, k), err, k)
			}
		})
	}
}

// TestExportSince: an export from record S on starts with the frontier of
// the records before S and verifies against the checkpoints after S; a
// wrong frontier fails at the first checkpoint.
func TestExportSince(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, v, hkey := testKeys(t)
	l := openLog(t, s, signer, hkey, Options{CheckpointEvery: 100})
	fill(t, l, 1000)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, since := range []int64{1, 37, 500, 999} {
		var buf bytes.Buffer
		n, err := Export(t.Context(), s, since, &buf)
		if err != nil || n != 1000-since {
			t.Fatalf("export since %d: %d records, %v", since, n, err)
		}
		rep, err := Verify(t.Context(), FileSource(bytes.NewReader(buf.Bytes())), v, VerifyOptions{})
		if err != nil || rep.From != since || rep.Records != 1000-since || rep.Covered != 1000 {
			t.Fatalf("since %d: %+v, %v", since, rep, err)
		}
		first, _, _ := bytes.Cut(buf.Bytes(), []byte("\n"))
		fl, err := ParseLine(first)
		if err != nil || fl.Type != LineFrontier {
			t.Fatalf("since %d: first line %s", since, first)
		}
		fl.Hashes[0][0] ^= 1
		bad, _ := fl.AppendJSON(nil)
		_, rest, _ := bytes.Cut(buf.Bytes(), []byte("\n"))
		_, err = Verify(t.Context(), FileSource(bytes.NewReader(append(bad, rest...))), v, VerifyOptions{})
		wantTamper(t, fmt.Sprintf("since %d with a wrong frontier", since), err, since)
	}
	at, err := SeqAt(t.Context(), s, testRecord(250).Time)
	if err != nil || at != 250 {
		t.Fatalf("SeqAt: %d, %v", at, err)
	}
}
