package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for --database-url
	"github.com/spf13/cobra"
	_ "modernc.org/sqlite" // the "sqlite" driver, for --data-dir

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/config"
	"github.com/moatproject/moat/internal/detect"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlstore"
)

// auditSource says where an audit command reads the log: the database of a
// data dir or a Postgres URL, opened read-only, or an export file.
type auditSource struct {
	dataDir     string
	databaseURL string
	file        string
	key         string
}

func (s *auditSource) bindDatabase(cmd *cobra.Command) {
	def := config.Default()
	s.dataDir, s.databaseURL = def.DataDir, def.DatabaseURL
	f := cmd.Flags()
	f.StringVar(&s.dataDir, "data-dir", s.dataDir, "data dir whose embedded database (moat.db) is read, read-only (MOAT_DATA_DIR)")
	f.StringVar(&s.databaseURL, "database-url", s.databaseURL, "postgres://… to read the log from Postgres instead (MOAT_DATABASE_URL)")
}

// open returns the log's queries on a read-only connection and a closer.
// It never creates or migrates a database: verifying must not change what
// it verifies.
func (s *auditSource) open(ctx context.Context) (store.AuditQueries, func(), error) {
	if s.databaseURL != "" {
		dsn := s.databaseURL
		if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
			q := u.Query()
			q.Set("default_transaction_read_only", "on")
			u.RawQuery = q.Encode()
			dsn = u.String()
		}
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, nil, errors.New("audit: open postgres: the URL does not parse")
		}
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			return nil, nil, fmt.Errorf("audit: open postgres: %w", err)
		}
		return sqlstore.NewQueries(sqlstore.Dialect{Name: store.Postgres, Classify: noClassify}, db), func() { db.Close() }, nil
	}
	path := filepath.Join(s.dataDir, "moat.db")
	if strings.ContainsRune(path, '?') {
		return nil, nil, fmt.Errorf("audit: open %s: path must not contain '?'", path)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		return nil, nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(2)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	return sqlstore.NewQueries(sqlstore.Dialect{Name: store.SQLite, Classify: noClassify}, db), func() { db.Close() }, nil
}

func noClassify(error) error { return nil }

// keyPath is the verifier key: --key, else the data dir's.
func (s *auditSource) keyPath() string {
	if s.key != "" {
		return s.key
	}
	return filepath.Join(s.dataDir, audit.VerifierKeyFile)
}

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify, export and prove the tamper-evident audit log, offline",
	}
	cmd.AddCommand(newAuditVerifyCmd(), newAuditExportCmd(), newAuditProofCmd(), newAuditCheckProofCmd(), newAuditHMACCmd())
	return cmd
}

func newAuditVerifyCmd() *cobra.Command {
	var src auditSource
	var checkpoints []string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check that the audit log is intact; exit status 0 only if it is",
		Long: "Recomputes every record's hash and the Merkle tree, checks every checkpoint's signature with\n" +
			"the verifier key and that its root matches, and that the log reaches its newest checkpoint.\n" +
			"Reads the database of --data-dir (read-only), --database-url, or an export (--file).\n" +
			"--checkpoint adds signed checkpoints kept elsewhere (a file sink, an earlier export), which\n" +
			"also catch a log cut short together with its own checkpoints.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			verifier, _, err := audit.LoadVerifier(src.keyPath())
			if err != nil {
				return err
			}
			var opts audit.VerifyOptions
			for _, p := range checkpoints {
				notes, err := readCheckpoints(p)
				if err != nil {
					return err
				}
				opts.Checkpoints = append(opts.Checkpoints, notes...)
			}
			var source audit.Source
			if src.file != "" {
				f, err := os.Open(src.file)
				if err != nil {
					return fmt.Errorf("audit: %w", err)
				}
				defer f.Close()
				source = audit.FileSource(bufio.NewReaderSize(f, 1<<20))
			} else {
				q, closeDB, err := src.open(ctx)
				if err != nil {
					return err
				}
				defer closeDB()
				source = audit.StoreSource(q, 0)
			}
			rep, err := audit.Verify(ctx, source, verifier, opts)
			if errors.Is(err, audit.ErrTampered) {
				fmt.Fprintf(cmd.ErrOrStderr(), "audit log FAILS verification: %v\n", strings.TrimPrefix(err.Error(), "audit: "))
				fmt.Fprintf(cmd.ErrOrStderr(), "(%d records before it verified)\n", rep.Records)
				return exitError{1}
			}
			if err != nil {
				return err
			}
			end := rep.From + rep.Records
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "audit log intact: records %d..%d (%d), %d checkpoints verified, the newest covering %d records\n",
				rep.From, end-1, rep.Records, rep.Checkpoints, rep.Covered)
			if rep.Covered < end {
				fmt.Fprintf(out, "note: records %d..%d are not yet covered by a signed checkpoint (moat serve signs one once %d records follow the last, %v after the last, and when it stops)\n",
					max(rep.Covered, rep.From), end-1, audit.DefaultCheckpointEvery, audit.DefaultCheckpointInterval)
			}
			if src.file == "" && src.databaseURL == "" {
				journal := filepath.Join(src.dataDir, audit.JournalFile)
				first, jend, err := audit.JournalRange(journal)
				if err != nil {
					return err
				}
				if jend > end {
					fmt.Fprintf(out, "note: records %d..%d are in %s and not yet in the database: moat serve commits them within milliseconds, or at its next start after a crash\n", max(first, end), jend-1, journal)
				}
			}
			return nil
		},
	}
	src.bindDatabase(cmd)
	f := cmd.Flags()
	f.StringVar(&src.file, "file", "", "verify this export (moat audit export, or a file sink's file) instead of a database")
	f.StringVar(&src.key, "key", "", "verifier key file (default <data-dir>/audit-signing.pub)")
	f.StringArrayVar(&checkpoints, "checkpoint", nil, "file of signed checkpoints kept elsewhere: an export, a sink file, or one note (repeatable)")
	return cmd
}

// readCheckpoints reads the checkpoints of an export or sink file, or one
// signed note.
func readCheckpoints(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint file: %w", err)
	}
	if !strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
		return [][]byte{data}, nil
	}
	var notes [][]byte
	for i, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, `"checkpoint"`) {
			continue
		}
		l, err := audit.ParseLine([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("audit: %s line %d: %w", path, i+1, err)
		}
		if l.Type == audit.LineCheckpoint {
			notes = append(notes, l.Checkpoint.Note)
		}
	}
	return notes, nil
}

func newAuditExportCmd() *cobra.Command {
	var src auditSource
	var since, out string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the audit log as JSON lines, records and checkpoints in sequence order",
		Long: "Each line is a record or a checkpoint (after the record that completes it). With --since\n" +
			"(a sequence number or an RFC 3339 time) the export starts with a frontier line, the hashes of\n" +
			"the tree before it, so it still verifies against the checkpoints that follow.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			q, closeDB, err := src.open(ctx)
			if err != nil {
				return err
			}
			defer closeDB()
			from, err := parseSince(ctx, q, since)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out != "" && out != "-" {
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return fmt.Errorf("audit: %w", err)
				}
				defer f.Close()
				w = f
			}
			n, err := audit.Export(ctx, q, from, w)
			if err != nil {
				return err
			}
			if f, ok := w.(*os.File); ok && w != cmd.OutOrStdout() {
				if err := f.Sync(); err != nil {
					return fmt.Errorf("audit: %w", err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "exported %d records from %d to %s\n", n, from, out)
			}
			return nil
		},
	}
	src.bindDatabase(cmd)
	cmd.Flags().StringVar(&since, "since", "", "first record: a sequence number or an RFC 3339 time (default: all)")
	cmd.Flags().StringVarP(&out, "out", "o", "", "write to this file (mode 0600) instead of standard output")
	return cmd
}

func parseSince(ctx context.Context, q store.AuditQueries, since string) (int64, error) {
	if since == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(since, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("audit: --since %d is negative", n)
		}
		return n, nil
	}
	t, err := time.Parse(time.RFC3339Nano, since)
	if err != nil {
		return 0, fmt.Errorf("audit: --since %q is neither a sequence number nor an RFC 3339 time", since)
	}
	return audit.SeqAt(ctx, q, t)
}

func newAuditProofCmd() *cobra.Command {
	var src auditSource
	cmd := &cobra.Command{
		Use:   "proof SEQ",
		Short: "Print the inclusion proof of record SEQ against the newest checkpoint, as JSON",
		Long:  "Anyone with the verifier key checks the printed proof with moat audit check-proof, without the log.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || seq < 0 {
				return fmt.Errorf("audit: %q is not a record sequence number", args[0])
			}
			q, closeDB, err := src.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeDB()
			p, err := audit.Prove(cmd.Context(), q, seq)
			if err != nil {
				return err
			}
			return printJSON(cmd, p)
		},
	}
	src.bindDatabase(cmd)
	return cmd
}

func newAuditCheckProofCmd() *cobra.Command {
	var src auditSource
	cmd := &cobra.Command{
		Use:   "check-proof [FILE|-]",
		Short: "Check an inclusion proof printed by moat audit proof",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			verifier, _, err := audit.LoadVerifier(src.keyPath())
			if err != nil {
				return err
			}
			in, closeIn, err := openInput(args)
			if err != nil {
				return err
			}
			defer closeIn()
			var p audit.Proof
			dec := json.NewDecoder(io.LimitReader(in, 1<<20))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&p); err != nil {
				return fmt.Errorf("audit: the proof is not JSON from moat audit proof: %w", err)
			}
			r, err := audit.CheckProof(p, verifier)
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "proof FAILS: %v\n", strings.TrimPrefix(err.Error(), "audit: "))
				return exitError{1}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "record %d (%s %s by %s) is in the signed log\n", r.Seq, r.Action, r.Outcome, r.Actor)
			return nil
		},
	}
	cmd.Flags().StringVar(&src.dataDir, "data-dir", config.Default().DataDir, "data dir holding audit-signing.pub (MOAT_DATA_DIR)")
	cmd.Flags().StringVar(&src.key, "key", "", "verifier key file (default <data-dir>/audit-signing.pub)")
	return cmd
}

func newAuditHMACCmd() *cobra.Command {
	dataDir := config.Default().DataDir
	cmd := &cobra.Command{
		Use:   "hmac",
		Short: "Print the audit HMACs of a value read from standard input, to search the log for it",
		Long: "Sensitive values are stored in the audit log only as hmac-sha256:<hex> under the key in\n" +
			"<data-dir>/audit-hmac.key. One trailing newline of the input is dropped. The value is never printed.\n\n" +
			"Personal identifiers an AI call carried (details.subjects) are stored normalised: an e-mail\n" +
			"address or a name lower-cased with its spaces collapsed, a phone, card or ID number as its\n" +
			"letters and digits. One line is printed per distinct HMAC, labelled with the forms it is of:\n" +
			"search the log for each.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := audit.LoadHMACKey(dataDir)
			if err != nil {
				return err
			}
			value, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20+1))
			if err != nil {
				return fmt.Errorf("audit: read the value: %w", err)
			}
			if len(value) > 1<<20 {
				return errors.New("audit: the value is longer than 1 MiB")
			}
			v := strings.TrimSuffix(strings.TrimSuffix(string(value), "\n"), "\r")
			for _, f := range hmacForms(v) {
				fmt.Fprintf(cmd.OutOrStdout(), "%s  %s\n", audit.HMAC(key, f.value), strings.Join(f.labels, "; "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", dataDir, "data dir holding audit-hmac.key (MOAT_DATA_DIR)")
	return cmd
}

// hmacForm is a form of a value to search the audit log for, and what it
// is (labels never hold the value).
type hmacForm struct {
	value  string
	labels []string
}

// hmacForms are v as given, then the forms an AI call's record holds it
// under if it is a personal identifier (detect.NormalizedForms, labelled);
// a form equal to an earlier one adds its label there, and an empty one is
// left out.
func hmacForms(v string) []hmacForm {
	out := []hmacForm{{value: v, labels: []string{"as given"}}}
	for _, f := range []hmacForm{
		{value: detect.Normalize("pii.email", v), labels: []string{"normalised as text (e-mail, name, address)"}},
		{value: detect.Normalize("pii.phone", v), labels: []string{"normalised as a number (phone, card, IBAN, ID)"}},
	} {
		if f.value == "" {
			continue
		}
		if i := slices.IndexFunc(out, func(h hmacForm) bool { return h.value == f.value }); i >= 0 {
			out[i].labels = append(out[i].labels, f.labels...)
			continue
		}
		out = append(out, f)
	}
	return out
}
