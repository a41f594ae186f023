package detect

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// mixedProse builds about size bytes of English prose with a realistic
// sprinkle of PII, numbers, dates, prices, code and URLs. Deterministic.
func mixedProse(size int) string {
	r := rand.New(rand.NewPCG(1, 2))
	sentences := []string{
		"The quarterly report shows revenue grew by %d%% compared with last year.",
		"Please review the attached document before the meeting on Tuesday.",
		"Our team shipped version %d.%d.%d of the service last week with several fixes.",
		"The total came to $%d.%02d including tax and shipping.",
		"See https://example.com/docs/page/%d?ref=newsletter for details.",
		"In %d the company opened its first office in Lisbon, Portugal.",
		"The function returns nil, err when the context is cancelled.",
		"Order #%d was dispatched on %d/%d/2023 and should arrive soon.",
		"We measured a latency of %d ms at the 99th percentile under load.",
		"Contact us at support@example.org if the problem persists.",
		"Call me on (415) 555-%04d tomorrow morning, thanks.",
		"My card number is 4111 1111 1111 1111 but it expired in 2021.",
		"Mr. Thompson said the meeting at 10:30 was moved to 14:45.",
		"The server at 10.%d.%d.%d stopped answering health checks at 03:12:55.",
		"Dear Sarah Miller, thank you for your message of 12 March.",
		"She was born on %d/%d/1985 in a small town near the coast.",
		"Transfer the deposit to GB82 WEST 1234 5698 7654 32 by Friday.",
		"Build %d failed because the cache key 9f86d081884c7d659a2feaa0c55ad015 changed.",
		"Run `go test ./...` and then `git commit -m \"fix\"` before pushing.",
		"The meeting notes were shared with everyone in the engineering channel.",
		"He lives at %d Maple Avenue, Springfield, IL 62704 with two cats.",
		"Temperatures reached %d degrees, the highest since records began in 1881.",
		"ISBN 978-0-306-40615-7 is listed in the catalogue with %d copies.",
		"The UUID 123e4567-e89b-12d3-a456-426614174000 identifies the request.",
		"Spread the budget of %d,%03d euros across the three regional teams.",
		"A long day of meetings, then a quiet evening reading by the fire.",
		"When the weather turns, the hikers head down to the valley before dark.",
		"Invoice %d covers consulting services delivered in the first quarter.",
	}
	var b strings.Builder
	b.Grow(size + 256)
	for b.Len() < size {
		s := sentences[r.IntN(len(sentences))]
		n := strings.Count(s, "%") - 2*strings.Count(s, "%%")
		args := make([]any, n)
		for k := range args {
			args[k] = 1 + r.IntN(250)
		}
		b.WriteString(fmt.Sprintf(s, args...))
		if r.IntN(6) == 0 {
			b.WriteString("\n\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

// BenchmarkScanMixedProse measures Scan (all registered families) on about
// 1 MB of mixed prose. Reproduce with:
//
//	go test -run '^$' -bench ScanMixedProse -cpu 1 ./internal/detect/
func BenchmarkScanMixedProse(b *testing.B) {
	text := mixedProse(1 << 20)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		Scan(text)
	}
}

// BenchmarkScanPIIMixedProse measures the PII family alone.
func BenchmarkScanPIIMixedProse(b *testing.B) {
	text := mixedProse(1 << 20)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		scanPII(text, func(span) { n++ })
	}
}
