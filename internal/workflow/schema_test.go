package workflow

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestValidateInput(t *testing.T) {
	t.Parallel()
	p := loadFile(t, "triage.yaml")
	tests := []struct {
		name  string
		input string
		want  []Problem // Pointer and a substring of Message
	}{
		{"valid", `{"email": "a@example.com", "body": "hello", "priority": 2}`, nil},
		{"integral float is an integer", `{"email": "a@example.com", "body": "hello", "priority": 2.0}`, nil},
		{"missing", `{"email": "a@example.com"}`, []Problem{{Pointer: "", Message: `input: missing required field "body"`}}},
		{"format", `{"email": "not-an-email", "body": "x"}`, []Problem{{Pointer: "/email", Message: "input.email: 'not-an-email' is not valid email"}}},
		{"type and range", `{"email": "a@example.com", "body": 5, "priority": 9}`, []Problem{
			{Pointer: "/body", Message: "input.body: got number, want string"},
			{Pointer: "/priority", Message: "input.priority: maximum: got 9, want 5"},
		}},
		{"unknown field", `{"email": "a@example.com", "body": "x", "extra": 1}`, []Problem{{Pointer: "/extra", Message: `input: unknown field "extra"`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in, err := DecodeJSON([]byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			got := p.ValidateInput(in)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i, w := range tt.want {
				if got[i].Pointer != w.Pointer || !strings.Contains(got[i].Message, w.Message) {
					t.Errorf("problem %d: got %+v, want %+v", i, got[i], w)
				}
			}
		})
	}
}

func TestValidateInputWithoutSchema(t *testing.T) {
	t.Parallel()
	p := mustLoad(t, hdr+"steps: [{id: a, uses: transform}]\n")
	if ps := p.ValidateInput(map[string]any{"anything": []any{int64(1)}}); ps != nil {
		t.Errorf("object refused: %v", ps)
	}
	if ps := p.ValidateInput(nil); ps != nil {
		t.Errorf("no input refused: %v", ps)
	}
	if ps := p.ValidateInput([]any{}); len(ps) != 1 {
		t.Errorf("a list accepted: %v", ps)
	}
}

// The format's own schema accepts the valid definitions and refuses what
// the node types refuse.
func TestFormatSchema(t *testing.T) {
	t.Parallel()
	doc := FormatSchema(testNodes)
	sch, err := CompileSchema(doc)
	if err != nil {
		t.Fatalf("FormatSchema does not compile: %v", err)
	}
	for _, f := range []string{"triage.yaml", "triage.json"} {
		src, err := os.ReadFile("testdata/" + f)
		if err != nil {
			t.Fatal(err)
		}
		c := &problems{pos: &Positions{}}
		tree, ok := parseTree(src, c)
		if !ok {
			t.Fatal(c.list)
		}
		if ps := validateValue(sch, tree); ps != nil {
			t.Errorf("%s: %v", f, ps)
		}
	}
	bad := []struct{ name, src, ptr string }{
		{"unknown uses", hdr + "steps: [{id: a, uses: nope}]", "/steps/0/uses"},
		{"with of the wrong shape", hdr + "steps: [{id: a, uses: http.request, with: {url: 1}}]", "/steps/0/with/url"},
		{"with missing", hdr + "steps: [{id: a, uses: http.request}]", "/steps/0"},
		{"unknown field", hdr + "steps: [{id: a, uses: transform, nedds: []}]", "/steps/0/nedds"},
		{"bad id", hdr + "steps: [{id: a-b, uses: transform}]", "/steps/0/id"},
		{"two triggers", hdr + "trigger: {manual: {}, webhook: {path: x}}\nsteps: [{id: a, uses: transform}]", "/trigger"},
		{"bad duration", hdr + "steps: [{id: a, uses: transform, timeout: 5 minutes}]", "/steps/0/timeout"},
	}
	for _, b := range bad {
		c := &problems{pos: &Positions{}}
		tree, _ := parseTree([]byte(b.src), c)
		ps := validateValue(sch, tree)
		found := false
		for _, p := range ps {
			found = found || p.ptr == b.ptr
		}
		if !found {
			t.Errorf("%s: want a problem at %s, got %v", b.name, b.ptr, ps)
		}
	}
	if !reflect.DeepEqual(FormatSchema(testNodes), doc) {
		t.Error("FormatSchema is not deterministic")
	}
}
