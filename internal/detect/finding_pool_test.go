package detect

import (
	"reflect"
	"sync"
	"testing"
)

// scanUnpooled is Scan as it was before its buffers were pooled: fresh
// candidate lists and a fresh emit for every call. Scan must agree with it
// whatever the pooled buffers held before.
func scanUnpooled(text string) []Finding {
	var spans []span
	emit := func(s span) {
		if s.Score >= MinScore && s.Start < s.End && s.End <= len(text) {
			spans = append(spans, s)
		}
	}
	for _, sc := range scanners {
		sc(text, emit)
	}
	return toFindings(text, resolveOverlaps(nil, spans))
}

// scanSeeds are the texts FuzzScan and FuzzScanPooledReference start from
// and TestScanPooledConcurrent scans.
var scanSeeds = []string{
	"",
	"call (415) 692-3012 or mail a@b.io",
	"card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32",
	"SSN 536-22-1234, NHS 943 476 5919, NI QA 12 34 56 C",
	"ip 10.0.0.1 fe80::1 00:1A:2B:3C:4D:5E 001a.2b3c.4d5e",
	"born on 2/8/1935, Dear Mr. Émile Zoë at 221 Baker Street, Springfield, IL 62704",
	"é€😀 +44 20 7946 0958 \xff\xfe 1.2.3.4.5 12:30:45",
	"key AKIA" + "Z3QX7RT2LMN4PQ5W and ghp_" + "0123456789abcdefghijABCDEFGHIJ012345 jane.doe@example.com",
}

func FuzzScanPooledReference(f *testing.F) {
	for i, s := range scanSeeds {
		f.Add(s, scanSeeds[(i+1)%len(scanSeeds)])
	}
	f.Fuzz(func(t *testing.T, text, before string) {
		// What an earlier call left in the pools must not show.
		Scan(before)
		if got, want := Scan(text), scanUnpooled(text); !reflect.DeepEqual(got, want) {
			t.Fatalf("Scan(%q) after Scan(%q)\n got %+v\nwant %+v", text, before, got, want)
		}
	})
}

// TestScanPooledConcurrent runs Scan from several goroutines at once, as
// the gateway does, and compares each answer with the unpooled one.
func TestScanPooledConcurrent(t *testing.T) {
	want := make([][]Finding, len(scanSeeds))
	for i, s := range scanSeeds {
		want[i] = scanUnpooled(s)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for n := range 200 {
				i := (g + n) % len(scanSeeds)
				if got := Scan(scanSeeds[i]); !reflect.DeepEqual(got, want[i]) {
					t.Errorf("Scan(%q) = %+v, want %+v", scanSeeds[i], got, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
}
