package replay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/moatproject/moat/internal/connectors"
)

// Recorder passes calls to another connector and appends each successful
// exchange to a cassette file, rewritten atomically after each one. A
// request recorded again replaces its earlier answer. Failed calls are not
// recorded.
type Recorder struct {
	inner connectors.Connector
	path  string

	mu       sync.Mutex
	cassette *Cassette
	index    map[string]int
}

var (
	_ connectors.Connector = (*Recorder)(nil)
	_ connectors.Streamer  = (*Recorder)(nil)
)

// NewRecorder records inner's answers into the cassette at path, keeping
// what it already holds.
func NewRecorder(inner connectors.Connector, path string) (*Recorder, error) {
	if inner == nil {
		return nil, errors.New("replay: recorder needs a connector to record")
	}
	c, err := Load(path, true)
	if err != nil {
		return nil, err
	}
	r := &Recorder{inner: inner, path: path, cassette: c, index: make(map[string]int, len(c.Exchanges))}
	for i, e := range c.Exchanges {
		r.index[e.Key] = i
	}
	return r, nil
}

// Kind is the recorded connector's kind.
func (r *Recorder) Kind() string { return r.inner.Kind() }

// Chat calls the inner connector and records its answer.
func (r *Recorder) Chat(ctx context.Context, req connectors.Request) (connectors.Response, error) {
	key, err := Key(req)
	if err != nil {
		return connectors.Response{}, err
	}
	res, err := r.inner.Chat(ctx, req)
	if err != nil {
		return res, err
	}
	if err := r.record(key, res); err != nil {
		return connectors.Response{}, err
	}
	return res, nil
}

// ChatStream streams from the inner connector when it can (calling Chat
// and sending one chunk otherwise) and records the assembled answer.
func (r *Recorder) ChatStream(ctx context.Context, req connectors.Request, each func(connectors.Chunk) error) error {
	key, err := Key(req)
	if err != nil {
		return err
	}
	s, ok := r.inner.(connectors.Streamer)
	if !ok {
		res, err := r.Chat(ctx, req)
		if err != nil {
			return err
		}
		if res.Content != "" {
			if err := each(connectors.Chunk{Content: res.Content}); err != nil {
				return err
			}
		}
		return each(connectors.Chunk{Done: true, FinishReason: res.FinishReason, Usage: res.Usage})
	}
	var content strings.Builder
	var last *connectors.Chunk
	err = s.ChatStream(ctx, req, func(ch connectors.Chunk) error {
		if ch.Done {
			last = &ch
			return nil // sent after recording
		}
		if content.Len()+len(ch.Content) > MaxBytes {
			return fmt.Errorf("replay: record %s: answer larger than %d bytes", r.path, MaxBytes)
		}
		content.WriteString(ch.Content)
		return each(ch)
	})
	if err != nil {
		return err
	}
	if last == nil {
		return fmt.Errorf("replay: record %s: the stream ended without a final chunk", r.path)
	}
	res := connectors.Response{Content: content.String(), Model: req.Model, FinishReason: last.FinishReason, Usage: last.Usage}
	if err := r.record(key, res); err != nil {
		return err
	}
	return each(*last)
}

func (r *Recorder) record(key string, res connectors.Response) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i, ok := r.index[key]; ok {
		old := r.cassette.Exchanges[i].Response
		r.cassette.Exchanges[i].Response = res
		if err := r.cassette.save(r.path); err != nil {
			r.cassette.Exchanges[i].Response = old
			return err
		}
		return nil
	}
	if len(r.cassette.Exchanges) >= MaxExchanges {
		return fmt.Errorf("replay: cassette %s: full (%d exchanges)", r.path, MaxExchanges)
	}
	r.cassette.Exchanges = append(r.cassette.Exchanges, Exchange{Key: key, Response: res})
	if err := r.cassette.save(r.path); err != nil {
		r.cassette.Exchanges = r.cassette.Exchanges[:len(r.cassette.Exchanges)-1]
		return err
	}
	r.index[key] = len(r.cassette.Exchanges) - 1
	return nil
}
