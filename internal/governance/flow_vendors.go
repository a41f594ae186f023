package governance

import (
	"cmp"
	"slices"

	"github.com/moatproject/moat/internal/gateway"
)

// VendorReport says, per vendor and per host, which data classes can reach
// it and from which workflow steps, across the maps it was made of.
type VendorReport struct {
	// Project is "" for a report over every project.
	Project     string        `json:"project,omitempty"`
	Environment string        `json:"environment"`
	Workflows   []WorkflowRef `json:"workflows"`
	Vendors     []VendorFlow  `json:"vendors"`
	// Hosts are where http.request steps send, outside the gateway.
	Hosts []HostFlow `json:"hosts"`
	// Unresolved are AI steps whose route is unknown: their calls fail.
	Unresolved []Source `json:"unresolved"`
}

// WorkflowRef names a workflow version a report read.
type WorkflowRef struct {
	Project  string `json:"project"`
	Workflow string `json:"workflow"`
	Version  int    `json:"version,omitempty"`
}

// VendorFlow is what can reach one vendor.
type VendorFlow struct {
	Vendor
	// Connectors are the vendor's connectors the steps may reach.
	Connectors []string `json:"connectors"`
	// Leaves is false when every such connector runs in Moat or replays a
	// recording: the vendor is named, but nothing leaves the server.
	Leaves  bool         `json:"leaves"`
	Classes []ClassReach `json:"classes"`
}

// ClassReach is one class and every step that sends it somewhere.
type ClassReach struct {
	Class string `json:"class"`
	// Reaches is false when every one of its sources is blocked.
	Reaches bool     `json:"reaches"`
	Sources []Source `json:"sources"`
}

// Source is one step sending a class (or, in Unresolved, failing to).
type Source struct {
	Project   string         `json:"project"`
	Workflow  string         `json:"workflow"`
	Version   int            `json:"version,omitempty"`
	Step      string         `json:"step"`
	Connector string         `json:"connector,omitempty"`
	Action    gateway.Action `json:"action,omitempty"`
	Coverage  string         `json:"coverage,omitempty"`
	Reason    string         `json:"reason,omitempty"`
}

// HostFlow is what http.request steps send to one host ("" for hosts
// computed at run time).
type HostFlow struct {
	Host    string       `json:"host"`
	Classes []ClassReach `json:"classes"`
	// Steps send to this host, whether or not they carry a class.
	Steps []Source `json:"steps"`
}

// Vendors gathers maps into a report per vendor and per host.
func Vendors(project string, maps []*Map) *VendorReport {
	r := &VendorReport{Project: project, Workflows: []WorkflowRef{}, Vendors: []VendorFlow{}, Hosts: []HostFlow{}, Unresolved: []Source{}}
	vendors := map[string]*VendorFlow{}
	vendorClasses := map[string]map[string]*ClassReach{}
	hosts := map[string]*HostFlow{}
	hostClasses := map[string]map[string]*ClassReach{}
	reach := func(classes map[string]*ClassReach, class string, src Source, reaches bool) {
		c, ok := classes[class]
		if !ok {
			c = &ClassReach{Class: class}
			classes[class] = c
		}
		c.Reaches = c.Reaches || reaches
		c.Sources = append(c.Sources, src)
	}
	for _, m := range maps {
		if m == nil {
			continue
		}
		if r.Environment == "" {
			r.Environment = m.Environment
		}
		r.Workflows = append(r.Workflows, WorkflowRef{Project: m.Project, Workflow: m.Workflow, Version: m.Version})
		for _, st := range m.Steps {
			at := Source{Project: m.Project, Workflow: m.Workflow, Version: m.Version, Step: st.ID}
			if st.AI != nil && st.AI.Unresolved != "" {
				src := at
				src.Reason = st.AI.Unresolved
				r.Unresolved = append(r.Unresolved, src)
			}
			if st.AI != nil {
				for _, t := range st.AI.Targets {
					v, ok := vendors[t.Vendor.Name]
					if !ok {
						v = &VendorFlow{Vendor: t.Vendor}
						vendors[t.Vendor.Name] = v
						vendorClasses[t.Vendor.Name] = map[string]*ClassReach{}
					}
					if !slices.Contains(v.Connectors, t.Connector) {
						v.Connectors = append(v.Connectors, t.Connector)
					}
					v.Leaves = v.Leaves || t.Leaves
					for _, c := range t.Classes {
						src := at
						src.Connector, src.Action, src.Coverage = t.Connector, c.Action, c.Coverage
						reach(vendorClasses[t.Vendor.Name], c.Class, src, c.Reaches())
					}
				}
			}
			if st.HTTP != nil {
				h, ok := hosts[st.HTTP.Host]
				if !ok {
					h = &HostFlow{Host: st.HTTP.Host}
					hosts[st.HTTP.Host] = h
					hostClasses[st.HTTP.Host] = map[string]*ClassReach{}
				}
				h.Steps = append(h.Steps, at)
				for _, s := range st.HTTP.Sends {
					src := at
					src.Coverage = s.Coverage
					reach(hostClasses[st.HTTP.Host], s.Class, src, true)
				}
			}
		}
	}
	for name, v := range vendors {
		slices.Sort(v.Connectors)
		v.Classes = sortedClasses(vendorClasses[name])
		r.Vendors = append(r.Vendors, *v)
	}
	slices.SortFunc(r.Vendors, func(a, b VendorFlow) int { return cmp.Compare(a.Name, b.Name) })
	for name, h := range hosts {
		h.Classes = sortedClasses(hostClasses[name])
		r.Hosts = append(r.Hosts, *h)
	}
	slices.SortFunc(r.Hosts, func(a, b HostFlow) int { return cmp.Compare(a.Host, b.Host) })
	return r
}

func sortedClasses(m map[string]*ClassReach) []ClassReach {
	out := make([]ClassReach, 0, len(m))
	for _, c := range m {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b ClassReach) int { return cmp.Compare(a.Class, b.Class) })
	return out
}
