package gateway

import (
	"errors"

	"github.com/moatproject/moat/internal/detect"
)

// Policy is the policy the gateway decides with: what a data-flow map must
// ask, so that the map shows what the pipeline does rather than a copy of
// its rules.
func (g *Gateway) Policy() *Policy { return g.cfg.Policy }

// DecideRoute is the Transform stage's decision for a finding on its way
// along route: one transform serves every target a fallback may reach, so
// the finding gets the strictest of the targets' decisions. It returns that
// decision and the vendor it is for; a route without targets blocks.
func (p *Policy) DecideRoute(f detect.Finding, route Route, trust string) (Decision, string) {
	if len(route.Targets) == 0 {
		return Decision{Action: Block, Rule: RuleDefault, Err: errors.New("gateway: policy: the route has no target")}, ""
	}
	return newRouteDecider(p, route).decide(f, trust)
}
