package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/connectors"
)

// slowRecorder takes a fixed time, on the gateway's clock, to write a record.
type slowRecorder struct {
	clock *fakeClock
	takes time.Duration
}

func (r slowRecorder) Record(context.Context, Record) error {
	r.clock.Advance(r.takes)
	return nil
}

// The x-moat-overhead-us header reports Result.Overhead: the record holds
// the time up to its own writing, the result that time as well.
func TestResultOverheadIncludesWritingTheRecord(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	conn := &fakeConn{reply: func(connectors.Request) string { return "fine" }}
	g := newInProcessGateway(t, func(cfg *Config) {
		cfg.Now = clock.Now
		cfg.Recorder = slowRecorder{clock: clock, takes: 7 * time.Millisecond}
	}, conn)
	res, err := g.Chat(context.Background(), Request{Identity: keyIdentity(), Model: "fake-chat", Messages: []Message{userMsg("hello")}})
	if err != nil {
		t.Fatal(err)
	}
	// The connector's wait is timed on the real clock, so the figures are
	// 7ms less a few microseconds at most.
	if res.Overhead < 6*time.Millisecond || res.Record.Overhead >= time.Millisecond {
		t.Fatalf("result overhead %v, record overhead %v: only the result's should hold the record's 7ms", res.Overhead, res.Record.Overhead)
	}
}
