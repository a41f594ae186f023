package workflow

import (
	"maps"
	"sort"
)

// FormatSchema returns the JSON Schema (draft 2020-12) of the definition
// format, for editors and `moat schema workflow`. Each registered node
// type's settings schema applies to `with` through if/then on `uses`.
func FormatSchema(nodes NodeTypes) map[string]any {
	var names []string
	if nodes != nil {
		names = append(names, nodes.Names()...)
	}
	sort.Strings(names)
	name := map[string]any{"type": "string", "pattern": nameRE.String(), "maxLength": 63}
	duration := map[string]any{
		"type":        "string",
		"pattern":     `^[-+]?(0|([0-9]*\.?[0-9]+(ns|us|µs|μs|ms|s|m|h|d))+)$`,
		"description": "a duration such as 30s, 5m, 24h or 2d",
	}
	strList := map[string]any{"type": "array", "items": map[string]any{"type": "string", "pattern": identRE.String()}}
	defs := map[string]any{
		"duration": duration,
		"retry": map[string]any{
			"type":                 "object",
			"additionalProperties": false,
			"required":             []any{"maxAttempts"},
			"properties": map[string]any{
				"maxAttempts": map[string]any{"type": "integer", "minimum": 1, "maximum": maxRetryAttempts},
				"backoff":     map[string]any{"$ref": "#/$defs/duration"},
				"maxBackoff":  map[string]any{"$ref": "#/$defs/duration"},
				"multiplier":  map[string]any{"type": "number", "minimum": 1, "maximum": 10},
			},
		},
	}
	uses := map[string]any{"type": "string", "minLength": 1}
	if len(names) > 0 {
		enum := make([]any, len(names))
		for i, n := range names {
			enum[i] = n
		}
		uses["enum"] = enum
	}
	step := map[string]any{
		"type":                 "object",
		"additionalProperties": false,
		"required":             []any{"id", "uses"},
		"properties": map[string]any{
			"id":        map[string]any{"type": "string", "pattern": identRE.String(), "description": "a CEL identifier: steps.<id> refers to the step's result"},
			"name":      map[string]any{"type": "string"},
			"uses":      uses,
			"connector": name,
			"with":      map[string]any{"type": "object", "description": "the node type's settings; strings may hold {{ CEL }} templates"},
			"if":        map[string]any{"type": "string", "description": "a CEL condition; when false the step is skipped"},
			"needs":     strList,
			"next":      strList,
			"retry":     map[string]any{"$ref": "#/$defs/retry"},
			"timeout":   map[string]any{"$ref": "#/$defs/duration"},
		},
	}
	var branches []any
	for _, n := range names {
		nt, ok := nodes.Lookup(n)
		if !ok {
			continue
		}
		sch := nt.Schema()
		if sch == nil {
			continue
		}
		sch = maps.Clone(sch)
		if _, has := sch["$id"]; !has {
			// Its own resource, so that its "#/..." references resolve
			// within it.
			sch["$id"] = "urn:moat:node:" + n
		}
		key := "with." + n
		defs[key] = sch
		then := map[string]any{"properties": map[string]any{"with": map[string]any{"$ref": "#/$defs/" + escapeToken(key)}}}
		if req, ok := sch["required"].([]any); ok && len(req) > 0 {
			then["required"] = []any{"with"}
		} else if req, ok := sch["required"].([]string); ok && len(req) > 0 {
			then["required"] = []any{"with"}
		}
		branches = append(branches, map[string]any{
			"if":   map[string]any{"properties": map[string]any{"uses": map[string]any{"const": n}}, "required": []any{"uses"}},
			"then": then,
		})
	}
	if len(branches) > 0 {
		step["allOf"] = branches
	}
	defs["step"] = step
	return map[string]any{
		"$schema":              "https://json-schema.org/draft/2020-12/schema",
		"$id":                  "urn:moat:schema:workflow:v1",
		"title":                "Moat workflow (" + APIVersion + ")",
		"type":                 "object",
		"additionalProperties": false,
		"required":             []any{"apiVersion", "kind", "name", "steps"},
		"properties": map[string]any{
			"apiVersion":  map[string]any{"const": APIVersion},
			"kind":        map[string]any{"const": Kind},
			"name":        name,
			"project":     name,
			"description": map[string]any{"type": "string"},
			"trigger": map[string]any{
				"type":                 "object",
				"additionalProperties": false,
				"maxProperties":        1,
				"description":          "at most one; none means manual",
				"properties": map[string]any{
					"manual": map[string]any{"type": "object", "additionalProperties": false},
					"webhook": map[string]any{
						"type":                 "object",
						"additionalProperties": false,
						"required":             []any{"path"},
						"properties": map[string]any{
							"path": map[string]any{"type": "string", "pattern": webhookRE.String(), "not": map[string]any{"pattern": `\.\.`}},
						},
					},
					"schedule": map[string]any{
						"oneOf": []any{
							map[string]any{"type": "string", "description": "a cron expression (five fields, or @every / @hourly …)"},
							map[string]any{
								"type":                 "object",
								"additionalProperties": false,
								"required":             []any{"cron"},
								"properties": map[string]any{
									"cron":     map[string]any{"type": "string"},
									"timezone": map[string]any{"type": "string", "description": "an IANA time zone; UTC when empty"},
									"input":    map[string]any{"description": "the input of each scheduled run"},
								},
							},
						},
					},
				},
			},
			"input": map[string]any{
				"type":                 "object",
				"additionalProperties": false,
				"properties": map[string]any{
					"schema": map[string]any{"type": "object", "description": "a JSON Schema (draft 2020-12) of the run input; may carry x-data-class and x-trust (trusted | untrusted)"},
				},
			},
			"output": map[string]any{"description": "the run's result; strings may hold {{ CEL }} templates"},
			"retention": map[string]any{
				"type":                 "object",
				"additionalProperties": false,
				"description":          "how long a finished run's payloads are kept before they are purged; the server's default for what is left out, and its data-class rules may shorten it",
				"properties": map[string]any{
					"input":  map[string]any{"type": "string", "description": "the run input and the gateway's tokens, such as \"30d\""},
					"steps":  map[string]any{"type": "string", "description": "what the steps produced, AI answers among them"},
					"output": map[string]any{"type": "string", "description": "the run's result"},
				},
			},
			"steps": map[string]any{
				"type":     "array",
				"minItems": 1,
				"maxItems": MaxSteps,
				"items":    map[string]any{"$ref": "#/$defs/step"},
			},
		},
		"$defs": defs,
	}
}
