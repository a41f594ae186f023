package nodes

// templatePattern matches a string that is a {{ }} template, which may stand
// for a value of any type until it is rendered.
const templatePattern = `^\s*\{\{[\s\S]*\}\}\s*$`

// orTemplate lets a field hold either a value of the given schema or a
// template that renders to one.
func orTemplate(schema map[string]any) map[string]any {
	return map[string]any{"anyOf": []any{schema, map[string]any{"type": "string", "pattern": templatePattern}}}
}

func object(required []string, props map[string]any) map[string]any {
	s := map[string]any{"type": "object", "additionalProperties": false, "properties": props}
	if len(required) > 0 {
		req := make([]any, len(required))
		for i, r := range required {
			req[i] = r
		}
		s["required"] = req
	}
	return s
}

func str(description string) map[string]any {
	return map[string]any{"type": "string", "description": description}
}

// expression is a raw CEL field: a string without braces.
func expression(description string) map[string]any {
	return map[string]any{"type": "string", "minLength": 1, "maxLength": 4096, "description": description, "x-moat-expression": true}
}

// durationSchema accepts a Go duration string, with "d" for days.
func durationSchema(description string) map[string]any {
	return map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h|d))+$`, "description": description}
}
