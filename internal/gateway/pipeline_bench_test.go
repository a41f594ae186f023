package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/audit/audittest"
	"github.com/moatproject/moat/internal/connectors"
)

// benchPrompt is about 2 KB of prose holding an e-mail address, a phone
// number and a card number, as a support ticket might.
func benchPrompt() string {
	var b strings.Builder
	b.WriteString("The customer jane.doe@example.com called about invoice 4471 and asked us to call back on +44 20 7946 0958. ")
	b.WriteString("She paid with card 4111 1111 1111 1111 and wants the refund sent to the same account as before. ")
	for b.Len() < 2000 {
		b.WriteString("The parcel left our warehouse on Monday, was held at the depot for two days and arrived damaged; ")
		b.WriteString("she would like a replacement rather than a refund, if one is in stock, and an apology for the delay. ")
	}
	return b.String()
}

// benchRequest is the OpenAI endpoint's request for benchPrompt: the user
// turn untrusted, so it is scanned for injection too.
func benchRequest() Request {
	return Request{Identity: keyIdentity(), Model: "fake-chat", RestoreAll: true,
		Messages: []Message{{Role: connectors.System, Content: "Summarise the call."},
			{Role: connectors.User, Content: benchPrompt(), Trust: Untrusted}}}
}

// BenchmarkGatewayChat measures the pipeline's own cost per call (every
// stage but the network) on benchRequest: an in-process connector answers
// at once. "discarded" drops each record (a recorder
// that kept them would grow a slice for the collector to scan, and that
// would be most of what is measured); "audited" writes both records to an
// audit log on SQLite, as moat serve does.
func BenchmarkGatewayChat(b *testing.B) {
	req := benchRequest()
	for _, bc := range []struct {
		name     string
		recorder func(testing.TB) Recorder
	}{
		{"discarded", func(testing.TB) Recorder { return discardRecorder{} }},
		{"audited", func(tb testing.TB) Recorder {
			log, _ := audittest.New(tb)
			return AuditRecorder{Log: log}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			conn := &fakeConn{reply: func(req connectors.Request) string { return "Noted for <EMAIL_1>." }}
			g := newInProcessGateway(b, func(cfg *Config) { cfg.Recorder = bc.recorder(b) }, conn)
			b.SetBytes(int64(len(req.Messages[1].Content)))
			b.ReportAllocs()
			for b.Loop() {
				conn.reqs = conn.reqs[:0]
				if _, err := g.Chat(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type discardRecorder struct{}

func (discardRecorder) Record(context.Context, Record) error { return nil }

// BenchmarkGatewayChatCaches is GatewayChat/audited with the answer
// echoing what was sent (as the serve benchmark's upstream does), after
// writing to N MB of memory before each call (evict-N MB), which pushes the
// pipeline's code and data out of the caches: 0 leaves them warm, 64 MB is
// twice the last-level cache of the machine BENCHMARKS.md's figures come
// from. It reports the call alone (call-µs), not the eviction. Under load
// on that machine a call costs about what it costs with most of its caches
// evicted, not what it costs warm (BENCHMARKS.md, "a call's caches").
func BenchmarkGatewayChatCaches(b *testing.B) {
	req := benchRequest()
	for _, mb := range []int{0, 8, 24, 64} {
		b.Run(fmt.Sprintf("evict-%dMB", mb), func(b *testing.B) {
			log, _ := audittest.New(b)
			conn := &fakeConn{reply: func(req connectors.Request) string { return req.Messages[len(req.Messages)-1].Content }}
			g := newInProcessGateway(b, func(cfg *Config) { cfg.Recorder = AuditRecorder{Log: log} }, conn)
			evict := make([]byte, mb<<20)
			var calls time.Duration
			for b.Loop() {
				for i := 0; i < len(evict); i += 64 {
					evict[i]++
				}
				conn.reqs = conn.reqs[:0]
				start := time.Now()
				if _, err := g.Chat(context.Background(), req); err != nil {
					b.Fatal(err)
				}
				calls += time.Since(start)
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(calls.Nanoseconds())/1e3/float64(b.N), "call-µs")
		})
	}
}
