package gateway

// The Limit stage's link to the catalog. The limiter reads prices and the
// connectors' own limits from its config; the catalog changes on Reload. So
// that a reload neither loses the limiter's state nor leaves it with stale
// tables, each call brings the tables in step with the target it uses, just
// before Reserve: a connector's new price or limits apply from its next call.
// Buckets of a connector scope whose limits changed start afresh (with the
// new limits); every other scope keeps its state.

// priceKey names a target's model in the limiter's price table: the same
// upstream model name may cost differently through different connectors.
func priceKey(t RouteTarget) string { return t.ConnectorName + "/" + t.Model }

// maxPriceEntries bounds the limiter's price table.
const maxPriceEntries = 10_000

// useTarget sets the price of t's model and the limits of its connector
// scope (an override of the "connector" kind's, when the connector has its
// own) as the catalog has them.
func (l *Limiter) useTarget(t RouteTarget) {
	key := priceKey(t)
	sc := Scope{Kind: "connector", ID: t.ConnectorName}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, known := l.cfg.Prices[key]
	switch {
	case t.Price == nil && !t.Free:
		delete(l.cfg.Prices, key)
	case !known && len(l.cfg.Prices) >= maxPriceEntries:
		// A connector open to any model name could grow the table without
		// end; past the bound an unknown model has no price, and a budget
		// refuses it (fail closed).
	case t.Free:
		l.cfg.Prices[key] = Price{Free: true}
	default:
		l.cfg.Prices[key] = *t.Price
	}
	old, had := l.cfg.Overrides[sc]
	switch {
	case t.Limits != nil && (!had || old != *t.Limits):
		l.cfg.Overrides[sc] = *t.Limits
		delete(l.scopes, sc)
	case t.Limits == nil && had:
		delete(l.cfg.Overrides, sc)
		delete(l.scopes, sc)
	}
}
