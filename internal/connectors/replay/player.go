package replay

import (
	"context"
	"errors"
	"strings"

	"github.com/moatproject/moat/internal/connectors"
)

// Player answers from a cassette and never calls anything.
type Player struct {
	answers map[string]connectors.Response
}

var (
	_ connectors.Connector = (*Player)(nil)
	_ connectors.Streamer  = (*Player)(nil)
)

// NewPlayer loads the cassette at path. When a request was recorded more
// than once, the last recording answers.
func NewPlayer(path string) (*Player, error) {
	c, err := Load(path, false)
	if err != nil {
		return nil, err
	}
	p := &Player{answers: make(map[string]connectors.Response, len(c.Exchanges))}
	for _, e := range c.Exchanges {
		p.answers[e.Key] = e.Response
	}
	return p, nil
}

// Kind is "replay".
func (p *Player) Kind() string { return "replay" }

// Chat answers with the recorded response, or ErrNoRecording.
func (p *Player) Chat(ctx context.Context, req connectors.Request) (connectors.Response, error) {
	if err := ctx.Err(); err != nil {
		return connectors.Response{}, err
	}
	key, err := Key(req)
	if err != nil {
		return connectors.Response{}, err
	}
	res, ok := p.answers[key]
	if !ok {
		return connectors.Response{}, &connectors.UpstreamError{
			Kind: connectors.ErrNoRecording,
			Err:  errors.New("replay: no exchange recorded for request " + key[:12]),
		}
	}
	return res, nil
}

// ChatStream replays the recorded content in a few chunks, then a Done
// chunk with the recorded finish reason and usage.
func (p *Player) ChatStream(ctx context.Context, req connectors.Request, each func(connectors.Chunk) error) error {
	res, err := p.Chat(ctx, req)
	if err != nil {
		return err
	}
	for _, part := range split(res.Content, 4) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := each(connectors.Chunk{Content: part}); err != nil {
			return err
		}
	}
	return each(connectors.Chunk{Done: true, FinishReason: res.FinishReason, Usage: res.Usage})
}

// split cuts s into at most n pieces at word boundaries; joined, they are s.
func split(s string, n int) []string {
	if s == "" {
		return nil
	}
	words := strings.SplitAfter(s, " ")
	per := (len(words) + n - 1) / n
	var out []string
	for i := 0; i < len(words); i += per {
		out = append(out, strings.Join(words[i:min(i+per, len(words))], ""))
	}
	return out
}
