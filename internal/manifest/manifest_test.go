package manifest

import (
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	t.Parallel()
	src := `# resources for the demo
apiVersion: moat/v1
kind: Project
name: demo
---
# just a comment
---
apiVersion: moat/v1
kind: Workflow
name: hello
steps: []
--- # trailing comment on the separator
kind: Workflow
name: second
...
`
	docs, err := Split("r.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind, name string
		line       int
	}{{"Project", "demo", 1}, {"Workflow", "hello", 8}, {"Workflow", "second", 13}}
	if len(docs) != len(want) {
		t.Fatalf("got %d documents: %+v", len(docs), docs)
	}
	for i, w := range want {
		if docs[i].Kind != w.kind || docs[i].Name != w.name || docs[i].Line != w.line {
			t.Errorf("doc %d = %s %s line %d, want %+v", i, docs[i].Kind, docs[i].Name, docs[i].Line, w)
		}
	}
	// A document's own line 1 is the file's line Line.
	if first := strings.SplitN(string(docs[1].Source), "\n", 2)[0]; first != "apiVersion: moat/v1" {
		t.Errorf("second document starts with %q", first)
	}
}

func TestSplitErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ src, want string }{
		"no kind":      {"name: x\n", "r.yaml:1: document has no kind"},
		"bad yaml":     {"kind: Workflow\n---\nkind: [\n", "r.yaml:3: document is not valid YAML"},
		"not a map":    {"- a\n- b\n", "r.yaml:1: document is not valid YAML"},
		"json no kind": {`{"name": "x"}`, "document has no kind"},
	} {
		_, err := Split("r.yaml", []byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

func FuzzSplit(f *testing.F) {
	f.Add([]byte("kind: Workflow\nname: a\n---\nkind: Project\nname: b\n"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte(`{"kind":"Workflow"}`))
	f.Fuzz(func(t *testing.T, src []byte) {
		docs, err := Split("f.yaml", src)
		if err != nil {
			return
		}
		lines := strings.Count(string(src), "\n") + 1
		for _, d := range docs {
			if d.Kind == "" || d.Line < 1 || d.Line > lines {
				t.Fatalf("document %+v out of range (%d lines)", d, lines)
			}
		}
	})
}
