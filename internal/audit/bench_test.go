package audit

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/store/pgtest"
)

// BenchmarkAppend measures group commit on SQLite: 64 goroutines (32 per
// core on the 2-core machine) each appending one record per call, as
// gateway calls do. Reported as events/s.
//
//	go test ./internal/audit -run '^$' -bench Append -benchtime 100000x
func BenchmarkAppend(b *testing.B) {
	b.Run("database", func(b *testing.B) { benchmarkAppend(b, false) })
	b.Run("journal", func(b *testing.B) { benchmarkAppend(b, true) })
}

func benchmarkAppend(b *testing.B, journal bool) {
	l := openBenchLog(b, journal)
	var i atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(context.Background(), testRecord(int(i.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
}

// BenchmarkAppendAlone is one appender waiting for each of its records to
// commit: the latency an audited action waits for when nothing else is
// being appended, with no batching to share a transaction's cost.
// cpu-ns/op is the process's CPU time (every goroutine, the collector
// included) per record, steadier than ns/op on a shared machine.
func BenchmarkAppendAlone(b *testing.B) {
	b.Run("database", func(b *testing.B) { benchmarkAppendAlone(b, false) })
	b.Run("journal", func(b *testing.B) { benchmarkAppendAlone(b, true) })
}

func benchmarkAppendAlone(b *testing.B, journal bool) {
	l := openBenchLog(b, journal)
	b.ReportAllocs()
	i := 0
	cpu := processCPU()
	for b.Loop() {
		i++
		if _, err := l.Append(context.Background(), testRecord(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
}

// BenchmarkAppendPaced appends four records a millisecond, one at a time,
// as 2,000 gateway calls a second do (two records each), to a log with a
// journal, gathering records for the database for 2 ms and for 20 ms (the
// default). cpu-ns/op is the process's CPU time per record: the appends'
// and the writer's commits, which the gathering changes.
//
//	go test ./internal/audit -run '^$' -bench AppendPaced -benchtime 20000x -count 3
func BenchmarkAppendPaced(b *testing.B) {
	for _, delay := range []time.Duration{2 * time.Millisecond, 20 * time.Millisecond} {
		b.Run("gather="+delay.String(), func(b *testing.B) {
			s, path := openStore(b)
			signer, _, hkey := testKeys(b)
			l := openLog(b, s, signer, hkey, Options{Journal: path + ".journal", JournalDelay: delay})
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			b.ReportAllocs()
			i := 0
			cpu := processCPU()
			for i < b.N {
				<-tick.C
				for range 4 {
					if _, err := l.Append(context.Background(), testRecord(i)); err != nil {
						b.Fatal(err)
					}
					i++
				}
			}
			if err := l.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// openBenchLog opens a log on a fresh SQLite store, with a journal beside
// it (as moat serve runs on SQLite) or without.
func openBenchLog(b *testing.B, journal bool) *Log {
	s, path := openStore(b)
	signer, _, hkey := testKeys(b)
	var opts Options
	if journal {
		opts.Journal = path + ".journal"
	}
	return openLog(b, s, signer, hkey, opts)
}

// BenchmarkPostgres is BenchmarkAppendAlone and BenchmarkAppend on Postgres
// (skipped without MOAT_TEST_DATABASE_URL), where each statement is a round
// trip to the server.
//
//	go test ./internal/audit -run '^$' -bench Postgres -benchtime 5000x
func BenchmarkPostgres(b *testing.B) {
	b.Run("append-alone", func(b *testing.B) {
		signer, _, hkey := testKeys(b)
		l := openLog(b, pgtest.Open(b), signer, hkey, Options{})
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if _, err := l.Append(context.Background(), testRecord(i)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("append-parallel", func(b *testing.B) {
		signer, _, hkey := testKeys(b)
		l := openLog(b, pgtest.Open(b), signer, hkey, Options{})
		var i atomic.Int64
		b.SetParallelism(32)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.Append(context.Background(), testRecord(int(i.Add(1)))); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchmarkVerify measures verification of a closed log of
// MOAT_AUDIT_BENCH_RECORDS records (default 200,000; the target is
// 1,000,000 in 5 s) from the SQLite database and from an export.
//
//	MOAT_AUDIT_BENCH_RECORDS=1000000 go test ./internal/audit -run '^$' -bench Verify -benchtime 3x -timeout 30m
func BenchmarkVerify(b *testing.B) {
	n := 200_000
	if v := os.Getenv("MOAT_AUDIT_BENCH_RECORDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("MOAT_AUDIT_BENCH_RECORDS=%q", v)
		}
	}
	s, _ := openStore(b)
	signer, verifier, hkey := testKeys(b)
	l := openLog(b, s, signer, hkey, Options{})
	fill(b, l, n)
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	check := func(b *testing.B, src Source) {
		rep, err := Verify(context.Background(), src, verifier, VerifyOptions{})
		if err != nil || rep.Records != int64(n) || rep.Covered != int64(n) {
			b.Fatalf("%+v %v", rep, err)
		}
	}
	b.Run("store", func(b *testing.B) {
		for b.Loop() {
			check(b, StoreSource(s, 0))
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	var export bytes.Buffer
	if _, err := Export(context.Background(), s, 0, &export); err != nil {
		b.Fatal(err)
	}
	b.Run("file", func(b *testing.B) {
		for b.Loop() {
			check(b, FileSource(bytes.NewReader(export.Bytes())))
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
