package config

import (
	"os"
	"runtime/debug"
)

// GCPercent is the garbage collector's target (GOGC) that `moat serve` runs
// with unless the environment sets GOGC. Go's default, 100, collects each
// time the heap has doubled what is live; Moat's live heap is small (about
// 10 MB), so at 2,000 AI calls a second it collected every 100 ms, and
// those collections, which take a share of the two cores for several
// milliseconds, made the tail of the gateway's latency (BENCHMARKS.md:
// p99 2.8–4.4 ms at 100, 1.1–1.4 ms at 400). At 400 the heap grows to
// five times what is live before a collection, tens of megabytes more at
// Moat's size. Where memory is tight, set GOMEMLIMIT (or GOGC) as well.
const GCPercent = 400

// TuneGC sets the collector's target to GCPercent unless GOGC is set, and
// returns what puts the previous target back.
func TuneGC() (restore func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	previous := debug.SetGCPercent(GCPercent)
	return func() { debug.SetGCPercent(previous) }
}

// ReleaseStartupGarbage collects twice and hands the freed memory back to
// the operating system. Starting up allocates much that it then drops, the
// largest part the 4 MB scanning buffers goose's migration parser keeps in
// a sync.Pool, which only the second collection after their last use frees.
// At GCPercent an idle server may not collect again for two minutes, and
// until then those pages count in its RSS (5 MB of it; BENCHMARKS.md, "Idle
// memory"). Both collections together take some tens of milliseconds
// (about 40 ms on the 2-core development machine while it was slow), once.
func ReleaseStartupGarbage() {
	debug.FreeOSMemory() // moves what the pools hold to their victim caches
	debug.FreeOSMemory()
}
