package gateway

// CONTRACT (helper B2 implements; remove this line when done).

import "context"

// Gateway runs every AI call through the pipeline of DESIGN.md.
type Gateway struct{}

// New returns a gateway; it builds the catalog from cfg.Resources.
func New(ctx context.Context, cfg Config) (*Gateway, error) { panic("contract") }

// Chat runs one call through every stage and returns the checked,
// restored answer, or an *Error.
func (g *Gateway) Chat(ctx context.Context, req Request) (Result, error) { panic("contract") }

// ChatStream is Chat for a streamed answer: each receives restored text,
// in order, only after it has passed the checks so far.
func (g *Gateway) ChatStream(ctx context.Context, req Request, each func(text string) error) (Result, error) {
	panic("contract")
}

// Reload rebuilds the catalog from the resource store (after an apply).
func (g *Gateway) Reload(ctx context.Context) error { panic("contract") }

// Catalog is the current catalog.
func (g *Gateway) Catalog() *Catalog { panic("contract") }
