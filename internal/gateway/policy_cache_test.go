package gateway

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/moatproject/moat/internal/detect"
)

// The route decider caches decisions by class and destination only when no
// rule reads the finding; it must decide exactly as Evaluate does, which
// binds and evaluates afresh every time.
func TestPolicyDecisionCacheAgreesWithEvaluate(t *testing.T) {
	t.Parallel()
	var failures atomic.Int64
	onError := func(string, error) { failures.Add(1) }
	policies := map[string][]Rule{
		"default": DefaultRules(),
		"reads the finding": {
			{Name: "late-email", When: `class == "pii.email" && finding.start > 5`, Action: Block},
			{Name: "sure-phone", When: `class == "pii.phone" && finding.score > 0.8`, Action: Allow},
		},
		"fails for one class": {
			{Name: "divide", When: `class == "pii.phone" && 10 / (vendor.retentionDays - vendor.retentionDays) > 1`, Action: Allow},
			{Name: "untrusted-confidential", When: `class == "confidential" && trust == "untrusted"`, Action: Redact},
		},
	}
	classes := []string{"pii.email", "pii.phone", "pii.card", "confidential", "public", "secret.api_key", "injection", "pii." + strings.Repeat("x", MaxPolicyStringBytes)}
	vendors := []VendorProfile{onPrem, private, managed, trainer, keeper, unknown, onPremTrainer}
	for name, rules := range policies {
		p, err := CompilePolicy(rules, PolicyOptions{OnError: onError})
		if err != nil {
			t.Fatal(err)
		}
		if want := name == "reads the finding"; p.readsFinding != want {
			t.Errorf("%s: readsFinding = %v, want %v", name, p.readsFinding, want)
		}
		for round := range 3 { // the first fills the cache, the others read it
			for _, v := range vendors {
				retention := v.RetentionDays
				route := Route{Targets: []RouteTarget{{ConnectorName: "c", Vendor: Vendor{Name: v.Name, Location: v.Location, Region: v.Region,
					TrainsOnCustomerData: v.TrainsOnCustomerData, RetentionDays: &retention}, Target: Target{Model: "m"}}}}
				dest := Destination{Connector: "c", Vendor: v, Model: "m"}
				d := newRouteDecider(p, route)
				for _, trust := range []string{Trusted, Untrusted, ""} {
					for _, class := range classes {
						for _, start := range []int{0, 9} {
							f := detect.Finding{Type: class, Start: start, End: start + 4, Score: float64(start) / 10}
							before := failures.Load()
							got, _ := d.decide(f, trust)
							between := failures.Load()
							want := p.Evaluate(f, dest, trust)
							after := failures.Load()
							if got.Action != want.Action || got.Rule != want.Rule || (got.Err == nil) != (want.Err == nil) {
								t.Errorf("%s, round %d, %s, %q, %s at %d: cached %+v, evaluated %+v", name, round, v.Name, trust, class, start, got, want)
							}
							if between-before != after-between {
								t.Errorf("%s, round %d, %s: %d failures reported through the cache, %d evaluated", name, round, class, between-before, after-between)
							}
						}
					}
				}
			}
		}
	}
}
