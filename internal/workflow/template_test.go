package workflow

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []segment
		err  string
	}{
		{"plain", nil, ""},
		{"{{ a }}", []segment{{"a", true}}, ""},
		{"x {{a}} y {{ b }}", []segment{{"x ", false}, {"a", true}, {" y ", false}, {"b", true}}, ""},
		{`{{ {"a": {"b": 1}} }}`, []segment{{`{"a": {"b": 1}}`, true}}, ""},
		{`{{ "}}" + '}}' }}`, []segment{{`"}}" + '}}'`, true}}, ""},
		{`{{ """a "}}" b""" }}!`, []segment{{`"""a "}}" b"""`, true}, {"!", false}}, ""},
		{`{{ "a\"}}" }}`, []segment{{`"a\"}}"`, true}}, ""},
		{"{{ a", nil, "unterminated {{"},
		{"{{ 'a }}", nil, "unterminated {{"},
		{"a {{ }} b", nil, "empty {{ }}"},
		{"}} {{ a }}", []segment{{"}} ", false}, {"a", true}}, ""},
	}
	for _, tt := range tests {
		got, err := parseTemplate(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	p := loadFile(t, "triage.yaml")
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"typed number", "{{ input.n + 1 }}", int64(42)},
		{"typed list", "{{ input.list }}", []any{int64(1), int64(2), int64(3)}},
		{"typed null", "{{ null }}", nil},
		{"typed map", `{{ {"a": {"b": 1}} }}`, map[string]any{"a": map[string]any{"b": int64(1)}}},
		{"spaces around make a string", " {{ input.n }}", " 41"},
		{"string", "to: {{ input.email }}", "to: a@example.com"},
		{"null is empty", "[{{ null }}]", "[]"},
		{"others as JSON", "{{ input.list }} {{ {'k': '<v>'} }} {{ 1.5 }} {{ true }}", `[1,2,3] {"k":"<v>"} 1.5 true`},
		{"deep", map[string]any{"a": []any{"{{ input.n }}", int64(7), map[string]any{"b": "n={{ input.n }}"}}, "c": true},
			map[string]any{"a": []any{int64(41), int64(7), map[string]any{"b": "n=41"}}, "c": true}},
		{"no templates", "just text", "just text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := p.Render(tt.in, triageVars())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
	_, err := p.Render(map[string]any{"a": []any{"{{ input.nope }}"}}, triageVars())
	if err == nil || !strings.Contains(err.Error(), "render /a/0") {
		t.Errorf("error %v should name /a/0", err)
	}
}

func TestRenderWith(t *testing.T) {
	t.Parallel()
	p := loadFile(t, "triage.yaml")
	vars := triageVars()
	tests := []struct {
		step string
		want map[string]any
	}{
		{"classify", map[string]any{"value": map[string]any{"label": "refund", "priority": int64(3)}}},
		// A switch's conditions are CEL the node evaluates: left as written.
		{"route", map[string]any{
			"cases":   []any{map[string]any{"when": `steps.classify.output.label == "refund"`, "next": "review"}},
			"default": "reply",
		}},
		// A foreach's items are rendered; its nested step is not.
		{"fanout", map[string]any{
			"items": []any{int64(1), int64(2), int64(3)},
			"step":  map[string]any{"uses": "transform", "with": map[string]any{"value": "{{ item * 2 + index }}"}},
		}},
		{"reply", map[string]any{
			"method": "POST",
			"url":    "https://helpdesk.example/tickets/reply",
			"body":   map[string]any{"to": "a@example.com", "text": "Label: refund"},
		}},
	}
	for _, tt := range tests {
		got, err := p.RenderWith(p.Step(tt.step), vars)
		if err != nil {
			t.Fatalf("%s: %v", tt.step, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %#v, want %#v", tt.step, got, tt.want)
		}
	}
	// The nested step renders with item and index.
	nested := p.Step("fanout").With["step"].(map[string]any)["with"]
	vars["item"], vars["index"] = int64(5), int64(1)
	got, err := p.Render(nested, vars)
	if err != nil || !reflect.DeepEqual(got, map[string]any{"value": int64(11)}) {
		t.Errorf("nested: %#v, %v", got, err)
	}
	// Settings are not changed by rendering.
	if s := p.Step("classify").With["value"].(map[string]any)["priority"]; s != "{{ has(input.priority) ? input.priority : 3 }}" {
		t.Errorf("RenderWith changed the definition: %v", s)
	}
	if _, err := p.RenderWith(p.Step("reply"), Vars{"input": map[string]any{}}); err == nil || !strings.Contains(err.Error(), "step reply: render /body/") {
		t.Errorf("error %v should name the step and pointer", err)
	}
}

func TestRenderWithNestedSettingsPointer(t *testing.T) {
	t.Parallel()
	p := mustLoad(t, hdr+"steps:\n  - id: a\n    uses: loop\n    with:\n      items: \"{{ [1, 2] }}\"\n      step: {uses: transform, with: {value: \"{{ item }}\"}}\n")
	got, err := p.RenderWith(p.Step("a"), nil)
	want := map[string]any{"items": []any{int64(1), int64(2)}, "step": map[string]any{"uses": "transform", "with": map[string]any{"value": "{{ item }}"}}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, %v", got, err)
	}
}
