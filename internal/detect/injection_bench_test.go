package detect

import (
	"strings"
	"testing"
)

// supportTicket2K is the typical prompt of the gateway load test: 2,048
// bytes of ordinary English prose with an e-mail address, a phone number
// and a card number, and no injection.
func supportTicket2K() string {
	var b strings.Builder
	b.WriteString("Hello, I am writing about my order. Please reach me at grace.hopper@example.com or on +1 415 555 0132, ")
	b.WriteString("and charge the balance to my card 4111 1111 1111 1111. ")
	for b.Len() < 2048 {
		b.WriteString("The parcel arrived late and the box was damaged, so I would like to know what can be done about it. ")
	}
	return b.String()[:2048]
}

// BenchmarkInjectionSupportTicket measures Injection on the load test's
// typical prompt. Reproduce with:
//
//	go test -run '^$' -bench InjectionSupportTicket -cpu 1 -benchmem ./internal/detect/
func BenchmarkInjectionSupportTicket(b *testing.B) {
	text := supportTicket2K()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		Injection(text)
	}
}

// BenchmarkScanSupportTicket measures Scan (PII and secrets) on the same prompt.
func BenchmarkScanSupportTicket(b *testing.B) {
	text := supportTicket2K()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		Scan(text)
	}
}

// BenchmarkInjectionStages measures Injection's two largest stages on the
// same prompt, each alone: normalising the text and splitting it into
// vocabulary tokens.
func BenchmarkInjectionStages(b *testing.B) {
	text := supportTicket2K()
	b.Run("normalize", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		var n normalized
		for b.Loop() {
			n.reset()
			n.fill(text)
		}
	})
	b.Run("tokenize", func(b *testing.B) {
		n := normalize(text)
		b.SetBytes(int64(len(n.text)))
		var ts injTokens
		for b.Loop() {
			ts.tokenize(n.text)
		}
	})
}
