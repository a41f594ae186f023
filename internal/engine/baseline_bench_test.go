package engine_test

import (
	"context"
	"database/sql"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/moatproject/moat/internal/store/sqlite"
)

// chainArgs is one step of the baseline: a job per step, each inserting
// the next in the transaction that completes it.
type chainArgs struct {
	Step int `json:"step"`
}

func (chainArgs) Kind() string { return "baseline.chain" }

type chainWorker struct {
	river.WorkerDefaults[chainArgs]
	db   *sql.DB
	done *atomic.Int64
}

func (w *chainWorker) Work(ctx context.Context, job *river.Job[chainArgs]) error {
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if job.Args.Step < 5 {
		client := river.ClientFromContext[*sql.Tx](ctx)
		if _, err := client.InsertTx(ctx, tx, chainArgs{Step: job.Args.Step + 1}, nil); err != nil {
			return err
		}
	}
	if _, err := river.JobCompleteTx[*riversqlite.Driver](ctx, tx, job); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if job.Args.Step == 5 {
		w.done.Add(1)
	}
	return nil
}

// BenchmarkBaselineJobPerStepSQLite is the design Moat does not use: five
// chained River jobs per run on the same SQLite set-up, with no-op steps.
// It is the baseline for BenchmarkFiveStepRunsSQLite.
func BenchmarkBaselineJobPerStepSQLite(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, b.TempDir()+"/moat.db")
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	driver := riversqlite.New(st.WriterDB())
	m, err := rivermigrate.New(driver, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		b.Fatal(err)
	}
	var done atomic.Int64
	workers := river.NewWorkers()
	river.AddWorker(workers, &chainWorker{db: st.WriterDB(), done: &done})
	client, err := river.NewClient(driver, &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 100}},
		Workers:           workers,
		FetchCooldown:     10 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer client.Stop(ctx)
	b.ResetTimer()
	start := time.Now()
	params := make([]river.InsertManyParams, b.N)
	for i := range params {
		params[i] = river.InsertManyParams{Args: chainArgs{Step: 1}}
	}
	if _, err := client.InsertMany(ctx, params); err != nil {
		b.Fatal(err)
	}
	for done.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "runs/s")
	b.ReportMetric(0, "ns/op")
}
