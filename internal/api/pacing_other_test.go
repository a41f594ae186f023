//go:build !linux

package api

import "time"

// pacer sleeps on Go's timers, which may oversleep by about a millisecond.
type pacer struct{}

func newPacer() (*pacer, error) { return &pacer{}, nil }

func (*pacer) sleepUntil(t time.Time) error {
	time.Sleep(time.Until(t))
	return nil
}

func (*pacer) Close() error { return nil }
