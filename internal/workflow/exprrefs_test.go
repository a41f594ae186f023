package workflow

import (
	"fmt"
	"strings"
	"testing"
)

// refString writes a reference as root.key… with [] for a list element,
// and a trailing * when a computed key closed it.
func refString(r Reference) string {
	var b strings.Builder
	b.WriteString(r.Root)
	for _, k := range r.Keys {
		if k == AnyItem {
			b.WriteString("[]")
		} else {
			b.WriteString(".")
			b.WriteString(k)
		}
	}
	if !r.Open {
		b.WriteString("*")
	}
	return b.String()
}

func TestExpressionRefs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		src   string
		refs  string // refString of each, joined with a space
		exact string // "-" when the expression is not exactly one value
	}{
		{"input.a.b", "input.a.b", "input.a.b"},
		{`input["a"].b`, "input.a.b", "input.a.b"},
		{"input.?a.orValue('')", "input.a", "input.a"},
		{"input.?a.orValue(input.b)", "input.a input.b", "-"},
		{"input.list[0].x", "input.list[].x", "input.list[].x"},
		{"input.list[1u]", "input.list[]", "input.list[]"},
		{"input[k].x", "k input*", "-"},
		{"input.a[input.b].c", "input.b input.a*", "-"},
		{"input", "input", "input"},
		{"steps.a.output + input.b", "steps.a.output input.b", "-"},
		{"steps.a.output", "steps.a.output", "steps.a.output"},
		{"run.id + env.region", "run.id env.region", "-"},
		{"[1].map(input, input + 1)", "", "-"},
		{"input.a.exists(x, x == item)", "input.a item", "-"},
		{"input.a.exists(x, x.b == 1)", "input.a", "-"},
		{"{'k': input.a, input.b: 1}", "input.a input.b", "-"},
		{"has(input.a.b)", "input.a.b", "input.a.b"},
		{"size(input.a)", "input.a", "-"},
		{"input.a.size()", "input.a", "-"},
		{"'literal'", "", "-"},
	} {
		t.Run(tc.src, func(t *testing.T) {
			t.Parallel()
			refs, err := ExpressionRefs(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range refs {
				got = append(got, refString(r))
			}
			if strings.Join(got, " ") != tc.refs {
				t.Errorf("refs %q, want %q", strings.Join(got, " "), tc.refs)
			}
			r, ok, err := ExactReference(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if exact := map[bool]string{true: refString(r), false: "-"}[ok]; exact != tc.exact {
				t.Errorf("exact %q, want %q", exact, tc.exact)
			}
		})
	}
}

func TestExpressionRefsRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src, want string
	}{
		{"does not parse", "input.a +", "workflow: the expression does not parse"},
		{"too long", "input.a + " + strings.Repeat("1 + ", MaxExprBytes/4) + "1", fmt.Sprintf("workflow: an expression is longer than %d bytes", MaxExprBytes)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := ExpressionRefs(tc.src); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("ExpressionRefs: %v, want %q", err, tc.want)
			}
			if _, ok, err := ExactReference(tc.src); ok || err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("ExactReference: %v %v, want %q", ok, err, tc.want)
			}
		})
	}
}

// FuzzExpressionRefs: reading references must not panic, an exact
// reference is open and is also what ExpressionRefs finds, and a
// comprehension's own variables are never references.
func FuzzExpressionRefs(f *testing.F) {
	for _, s := range []string{
		"input.a.b", `input["a"][0].b`, "input.?a.orValue(1)", "input[k].x",
		"steps.x.output.items.map(i, i.name + item)", "[1].all(input, input > 0)",
		"{'a': input.b}", "has(input.a)", "input.a +",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		refs, err := ExpressionRefs(src)
		exact, ok, exactErr := ExactReference(src)
		if (err == nil) != (exactErr == nil) {
			t.Fatalf("ExpressionRefs %v but ExactReference %v", err, exactErr)
		}
		if err != nil {
			return
		}
		for _, r := range refs {
			if r.Root == "" {
				t.Fatalf("a reference without a root: %+v", r)
			}
		}
		if !ok {
			return
		}
		if !exact.Open {
			t.Fatalf("an exact reference is closed: %+v", exact)
		}
		found := false
		for _, r := range refs {
			found = found || refString(r) == refString(exact)
		}
		if !found {
			t.Fatalf("exact %s is not among %v", refString(exact), refs)
		}
	})
}
