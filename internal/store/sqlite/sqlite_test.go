package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/storetest"
)

func openAt(t *testing.T, path string) store.Store {
	t.Helper()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openAt(t, filepath.Join(t.TempDir(), "moat.db"))
	})
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "nested", "moat.db")
	s := openAt(t, path)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Fatalf("database file mode %v, want 0600", perm)
	}
	if _, err := s.UpsertProject(t.Context(), store.Project{ID: "p-1", Name: "support"}); err != nil {
		t.Fatal(err)
	}
	if s.Dialect() != store.SQLite {
		t.Fatalf("Dialect() = %q", s.Dialect())
	}

	// Opening again finds the data and has no migration left to run.
	again := openAt(t, path)
	if _, err := again.GetProject(t.Context(), "support"); err != nil {
		t.Fatal(err)
	}
}

// seedRunParents saves a workflow version so that runs can reference it.
func seedRunParents(t *testing.T, s store.Store) (store.Workflow, store.Version) {
	t.Helper()
	wf, ver, _, err := s.SaveWorkflowVersion(t.Context(), store.NewVersion{
		Project: "support", Name: "triage", Hash: "h1", At: time.Unix(0, 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	return wf, ver
}

func run(wf store.Workflow, ver store.Version, id string) store.Run {
	return store.Run{ID: id, ProjectID: wf.ProjectID, WorkflowID: wf.ID, VersionID: ver.ID, Status: store.RunPending}
}

// TestWriterWaits holds the writer in a long transaction and checks that a
// second write, from the same store or from another store on the same file
// (as another process would), waits for it instead of failing.
func TestWriterWaits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.db")
	s := openAt(t, path)
	wf, ver := seedRunParents(t, s)
	tests := []struct {
		name   string
		writer store.Store
	}{
		{"same store", s},
		{"second store on the same file", openAt(t, path)},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			holding, release := make(chan struct{}), make(chan struct{})
			held := make(chan error, 1)
			go func() {
				held <- s.InTx(t.Context(), func(tx store.Tx) error {
					if err := tx.CreateRun(t.Context(), run(wf, ver, fmt.Sprintf("held-%d", i))); err != nil {
						return err
					}
					close(holding)
					<-release
					return nil
				})
			}()
			<-holding

			waited := make(chan error, 1)
			go func() { waited <- tc.writer.CreateRun(t.Context(), run(wf, ver, fmt.Sprintf("waiting-%d", i))) }()
			select {
			case err := <-waited:
				t.Fatalf("second write finished while the writer was held: %v", err)
			case <-time.After(200 * time.Millisecond):
			}
			close(release)
			if err := <-held; err != nil {
				t.Fatal(err)
			}
			if err := <-waited; err != nil {
				t.Fatalf("waiting write failed: %v", err)
			}
			for _, id := range []string{fmt.Sprintf("held-%d", i), fmt.Sprintf("waiting-%d", i)} {
				if _, err := s.GetRun(t.Context(), id); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestConcurrentInTx(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "moat.db"))
	wf, ver := seedRunParents(t, s)
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.InTx(t.Context(), func(tx store.Tx) error {
				r := run(wf, ver, fmt.Sprintf("run-%d", i))
				if err := tx.CreateRun(t.Context(), r); err != nil {
					return err
				}
				r.Status = store.RunRunning
				return tx.UpdateRun(t.Context(), r)
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	runs, _, err := s.ListRuns(t.Context(), store.RunFilter{Status: store.RunRunning})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != n {
		t.Fatalf("%d running runs, want %d", len(runs), n)
	}
}

// TestLockedIsUnavailable checks the mapping of SQLITE_BUSY, using a
// connection without a busy timeout so that it fails at once.
func TestLockedIsUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.db")
	s := openAt(t, path)
	impatient, err := sql.Open("sqlite", path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer impatient.Close()

	err = s.InTx(t.Context(), func(store.Tx) error {
		tx, err := impatient.BeginTx(context.Background(), nil)
		if err == nil {
			tx.Rollback()
			return errors.New("a second writer began while the first held the lock")
		}
		if got := classify(err); got != store.ErrUnavailable {
			return fmt.Errorf("classify(%v) = %v, want ErrUnavailable", err, got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRunKeysConformance(t *testing.T) {
	storetest.RunKeys(t, func(t *testing.T) store.RunKeyStore {
		ks, err := OpenRunKeys(t.Context(), filepath.Join(t.TempDir(), "run-keys.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ks.Close() })
		return ks
	})
}

// A destroyed key leaves no copy of itself in the keys file or its WAL.
func TestDestroyedRunKeyLeavesNoTrace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run-keys.db")
	ks, err := OpenRunKeys(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	wrapped := []byte("canary-wrapped-key-9f8e7d6c5b4a3928")
	if err := ks.PutRunKeys(t.Context(), []store.RunKey{{RunID: "run-1", Kind: "input", Term: 1, Wrapped: wrapped, CreatedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if !filesHold(t, dir, wrapped) {
		t.Fatal("the key is not in the files before it is destroyed; the test cannot tell anything")
	}
	if err := ks.DestroyRunKeys(t.Context(), []store.RunKeyRef{{RunID: "run-1", Kind: "input"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if filesHold(t, dir, wrapped) {
		t.Fatal("a destroyed key is still in the keys file or its WAL")
	}
}

func filesHold(t *testing.T, dir string, needle []byte) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, needle) {
			return true
		}
	}
	return false
}
