package connectors

import (
	"context"
	"testing"
	"time"
)

func TestWithTimeout(t *testing.T) {
	t.Parallel()
	soon, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if ctx, stop := WithTimeout(soon, time.Hour); ctx != soon {
		t.Error("a context ending sooner than the timeout was wrapped")
	} else {
		stop() // a no-op, which must not cancel the caller's context
		if soon.Err() != nil {
			t.Error("the returned cancel ended the caller's context")
		}
	}
	for name, parent := range map[string]context.Context{"no deadline": context.Background(), "a later deadline": soon} {
		ctx, stop := WithTimeout(parent, time.Second)
		deadline, ok := ctx.Deadline()
		if !ok || time.Until(deadline) > time.Second {
			t.Errorf("%s: deadline %v (set: %v), want within a second", name, deadline, ok)
		}
		stop()
		if ctx.Err() == nil {
			t.Errorf("%s: cancel did not end the derived context", name)
		}
	}
}
