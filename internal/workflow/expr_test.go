package workflow

import (
	"reflect"
	"strings"
	"sync"
	"testing"
)

func triageVars() Vars {
	return Vars{
		"input": map[string]any{"email": "a@example.com", "body": "I want a refund", "n": int64(41), "x": 1.5, "list": []any{int64(1), int64(2), int64(3)}},
		"steps": map[string]any{"classify": map[string]any{"output": map[string]any{"label": "refund"}, "status": "succeeded"}},
		"run":   map[string]any{"id": "r1"},
		"env":   map[string]any{"name": "dev"},
	}
}

func TestEval(t *testing.T) {
	t.Parallel()
	p := loadFile(t, "triage.yaml")
	tests := []struct {
		src  string
		want any
	}{
		{"input.n + 1", int64(42)},
		{"input.x * 2.0", 3.0},
		{"input.n > 40.5", true},
		{"input.email", "a@example.com"},
		{"input.list.map(i, i * 2)", []any{int64(2), int64(4), int64(6)}},
		{"{'a': input.n, 'b': [null, true]}", map[string]any{"a": int64(41), "b": []any{nil, true}}},
		{"steps.classify.output.label", "refund"},
		{"steps.classify.status == 'succeeded'", true},
		{"1u", int64(1)},
		{"18446744073709551615u", 18446744073709551615.0},
		{"b'hi'", "aGk="},
		{"timestamp('2024-01-02T03:04:05Z')", "2024-01-02T03:04:05Z"},
		{"duration('90m')", "1h30m0s"},
		{"optional.of(5)", int64(5)},
		{"optional.none()", nil},
		{"input.?missing.orValue('none')", "none"},
		{"type(1)", "int"},
		{"'A,B'.lowerAscii().split(',')", []any{"a", "b"}},
		{"base64.encode(b'x')", "eA=="},
		{"math.greatest(1, 5, 3)", int64(5)},
		{"[3, 1, 2].sort()", []any{int64(1), int64(2), int64(3)}},
		{"env.name + '/' + run.id", "dev/r1"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			t.Parallel()
			got, err := p.Eval(tt.src, triageVars())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestEvalErrors(t *testing.T) {
	t.Parallel()
	p := loadFile(t, "triage.yaml")
	tests := []struct {
		src  string
		want string
	}{
		{"input.nope", "no such key: nope"},
		{"1 +", "Syntax error"},
		{"1 / 0", "division by zero"},
		{"0.0 / 0.0", "not a finite number"},
		{"lists.range(10000).map(a, lists.range(10000).map(b, a + b))", "exceeded its cost limit"},
		{"input.list.map(a, lists.range(3000).map(b, lists.range(1000).filter(c, c > a + b)))", "exceeded its cost limit"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			t.Parallel()
			_, err := p.Eval(tt.src, triageVars())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestEvalBool(t *testing.T) {
	t.Parallel()
	p := loadFile(t, "triage.yaml")
	if ok, err := p.EvalBool(`steps.classify.output.label == "refund"`, triageVars()); err != nil || !ok {
		t.Errorf("EvalBool = %v, %v", ok, err)
	}
	if _, err := p.EvalBool("input.n", triageVars()); err == nil || !strings.Contains(err.Error(), "not a boolean") {
		t.Errorf("EvalBool on a number: %v", err)
	}
}

func TestEvalExtraVariables(t *testing.T) {
	t.Parallel()
	p := loadFile(t, "triage.yaml")
	got, err := p.Eval("acc + item", Vars{"acc": int64(1), "item": int64(2)})
	if err != nil || got != int64(3) {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := p.Eval("nil", nil); err == nil {
		t.Fatal("undeclared variable evaluated")
	}
}

// Compile caches every expression; evaluating them compiles nothing.
func TestCompiledExpressionsAreCached(t *testing.T) {
	t.Parallel()
	p := loadFile(t, "triage.yaml")
	before := len(p.progs.m)
	if before == 0 {
		t.Fatal("no compiled programs")
	}
	for _, s := range p.Steps {
		if _, err := p.RenderWith(s, triageVars()); err != nil && s.ID != "fanout" {
			t.Fatalf("%s: %v", s.ID, err)
		}
	}
	if _, err := p.Render(p.Definition.Output, triageVars()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.EvalBool(`steps.classify.output.label == "refund"`, triageVars()); err != nil {
		t.Fatal(err)
	}
	if after := len(p.progs.m); after != before {
		t.Errorf("programs %d -> %d: something was compiled again", before, after)
	}
}

func TestEvalConcurrently(t *testing.T) {
	t.Parallel()
	p := loadFile(t, "triage.yaml")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				src := "input.n + " + string(rune('0'+(i+j)%10))
				if _, err := p.Eval(src, triageVars()); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestCollectRefs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		src    string
		steps  []string
		input  []string
		idents []string
	}{
		{"steps.a.output + steps['b'].output", []string{"a", "b"}, nil, []string{"steps"}},
		{"has(steps.c) && steps.?d.orValue(1) == 1", []string{"c", "d"}, nil, []string{"steps"}},
		{"input.x.y + input['z']", nil, []string{"x", "z"}, []string{"input"}},
		{"[{'q': 1}].map(steps, steps.q)", nil, nil, nil},
		{"[1].exists(item, item == index)", nil, nil, []string{"index"}},
	}
	for _, tt := range tests {
		prg, errs, err := compileExpr(tt.src, nil)
		if err != nil || errs != nil {
			t.Fatalf("%s: %v %v", tt.src, err, errs)
		}
		r := collectRefs(prg.ast)
		var idents []string
		for _, v := range baseVarNames {
			if r.idents[v] {
				idents = append(idents, v)
			}
		}
		if !reflect.DeepEqual(r.steps, tt.steps) || !reflect.DeepEqual(r.input, tt.input) || !reflect.DeepEqual(idents, tt.idents) {
			t.Errorf("%s: steps %v input %v idents %v", tt.src, r.steps, r.input, idents)
		}
	}
}
