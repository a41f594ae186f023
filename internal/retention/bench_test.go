package retention_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/retention"
	"github.com/moatproject/moat/internal/store"
)

// BenchmarkPurgeExpired purges 2,000 finished runs (6,000 payload kinds)
// whose retention has run out: keys destroyed in batches of 500 in the
// keys file (each batch one commit and one WAL truncation), then the rows.
func BenchmarkPurgeExpired(b *testing.B) {
	const runs = 2000
	ctx := context.Background()
	keep := store.Retention{Input: time.Hour, Steps: time.Hour, Output: time.Hour}
	var kinds int
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		w := newWorld(b, retention.Rules{})
		for r := range runs {
			w.finishedRun(b, fmt.Sprintf("run-%05d", r), fmt.Sprintf(`{"email":"user%d@example.com"}`, r), `{"answer":"ok"}`, keep)
		}
		w.clock.add(2 * time.Hour)
		b.StartTimer()
		start := time.Now()
		res, err := w.purger.PurgeExpired(ctx, "bench")
		elapsed += time.Since(start)
		if err != nil || res.Purged != runs*len(store.PayloadKinds) {
			b.Fatalf("purge: %d kinds, %v", res.Purged, err)
		}
		kinds += res.Purged
	}
	b.ReportMetric(float64(kinds)/elapsed.Seconds(), "kinds/s")
	b.ReportMetric(float64(kinds)/float64(len(store.PayloadKinds))/elapsed.Seconds(), "runs/s")
}
