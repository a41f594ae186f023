package config

import (
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
)

func TestTuneGC(t *testing.T) {
	t.Setenv("GOGC", "")
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)

	restore := TuneGC()
	if got := debug.SetGCPercent(GCPercent); got != GCPercent {
		t.Fatalf("after TuneGC the target is %d, want %d", got, GCPercent)
	}
	restore()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("restore left the target at %d, want 100", got)
	}

	// An operator's GOGC wins.
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150)
	restore = TuneGC()
	if got := debug.SetGCPercent(150); got != 150 {
		t.Fatalf("with GOGC=150 set the target is %d, want 150", got)
	}
	restore()
	if got := debug.SetGCPercent(100); got != 150 {
		t.Fatalf("with GOGC=150 set the target is %d, want 150", got)
	}
}

func TestReleaseStartupGarbageEmptiesPoolsAndReturnsMemory(t *testing.T) {
	var pool sync.Pool
	pool.Put(new([4 << 20]byte))
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	ReleaseStartupGarbage()

	if got := pool.Get(); got != nil {
		t.Error("a pool still holds its buffer")
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if after.NumGC < before.NumGC+2 {
		t.Errorf("%d collections, want at least 2", after.NumGC-before.NumGC)
	}
	if after.HeapReleased <= before.HeapReleased {
		t.Errorf("released %d bytes to the system before and %d after, want more", before.HeapReleased, after.HeapReleased)
	}
}
