package config

import (
	"runtime/debug"
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
