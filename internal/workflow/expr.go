package workflow

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// Vars are the values an expression sees: "input", "steps" (step id ->
// {"output": any, "status": string}), "run", "env", and inside a nested step
// "item" and "index". Values are plain (see DecodeJSON).
type Vars map[string]any

// baseVarNames are declared in every expression environment, as dyn.
var baseVarNames = []string{"input", "steps", "run", "env", "item", "index"}

// scopedVars may only be used where a node type brings them into scope.
var scopedVars = map[string]bool{"item": true, "index": true}

var baseEnv = sync.OnceValues(func() (*cel.Env, error) {
	opts := []cel.EnvOption{
		ext.Strings(),
		ext.Encoders(),
		ext.Math(),
		ext.Lists(ext.ListsMaxRangeSize(10_000)),
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(MaxExprBytes),
	}
	for _, v := range baseVarNames {
		opts = append(opts, cel.Variable(v, cel.DynType))
	}
	return cel.NewEnv(opts...)
})

var (
	extEnvMu sync.Mutex
	extEnvs  = map[string]*cel.Env{}
)

// envFor returns the environment with the extra variables (beyond the base
// ones) declared as dyn.
func envFor(extras []string) (*cel.Env, error) {
	base, err := baseEnv()
	if err != nil {
		return nil, fmt.Errorf("expression environment: %w", err)
	}
	if len(extras) == 0 {
		return base, nil
	}
	key := strings.Join(extras, ",")
	extEnvMu.Lock()
	defer extEnvMu.Unlock()
	if env, ok := extEnvs[key]; ok {
		return env, nil
	}
	opts := make([]cel.EnvOption, 0, len(extras))
	for _, v := range extras {
		if !identRE.MatchString(v) {
			return nil, fmt.Errorf("variable name %q is not an identifier", v)
		}
		opts = append(opts, cel.Variable(v, cel.DynType))
	}
	env, err := base.Extend(opts...)
	if err != nil {
		return nil, err
	}
	if len(extEnvs) < 256 {
		extEnvs[key] = env
	}
	return env, nil
}

// extraVars returns the sorted names in names that are not base variables.
func extraVars(names []string) []string {
	var out []string
	for _, n := range names {
		if !slices.Contains(baseVarNames, n) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// program is a checked, compiled expression.
type program struct {
	ast *cel.Ast
	prg cel.Program
}

// programs caches compiled expressions by source. A program compiled for
// one set of variables evaluates the same with any superset of them.
type programs struct {
	mu sync.RWMutex
	m  map[string]*program
}

func (ps *programs) get(src string) *program {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	return ps.m[src]
}

func (ps *programs) put(src string, p *program, always bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.m == nil {
		ps.m = map[string]*program{}
	}
	if _, ok := ps.m[src]; ok {
		return
	}
	if always || len(ps.m) < maxCachedPrograms {
		ps.m[src] = p
	}
}

// compileExpr parses, checks and plans src with the given extra variables.
// On failure it returns the checker's issues.
func compileExpr(src string, extras []string) (*program, []*cel.Error, error) {
	if len(src) > MaxExprBytes {
		return nil, nil, fmt.Errorf("the expression is %d bytes; the limit is %d", len(src), MaxExprBytes)
	}
	env, err := envFor(extras)
	if err != nil {
		return nil, nil, err
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, iss.Errors(), nil
	}
	prg, err := env.Program(ast,
		cel.CostLimit(CostLimit),
		cel.InterruptCheckFrequency(100),
	)
	if err != nil {
		return nil, nil, err
	}
	return &program{ast: ast, prg: prg}, nil, nil
}

// celErrorsMessage formats checker issues for a problem message.
func celErrorsMessage(src string, errs []*cel.Error) string {
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		msg := e.Message
		if e.Location != nil && e.Location.Line() > 0 {
			if strings.Contains(src, "\n") {
				msg += fmt.Sprintf(" (expression line %d, column %d)", e.Location.Line(), e.Location.Column()+1)
			} else {
				msg += fmt.Sprintf(" (expression column %d)", e.Location.Column()+1)
			}
		}
		parts = append(parts, msg)
	}
	return fmt.Sprintf("invalid expression %q: %s", truncate(src, 80), strings.Join(parts, "; "))
}

// program returns the compiled form of src, compiling and caching it when
// it has not been seen (for a source first met at run time).
func (p *Plan) program(src string, vars Vars) (*program, error) {
	if prg := p.progs.get(src); prg != nil {
		return prg, nil
	}
	names := make([]string, 0, len(vars))
	for k := range vars {
		if identRE.MatchString(k) {
			names = append(names, k)
		}
	}
	prg, errs, err := compileExpr(src, extraVars(names))
	if err != nil {
		return nil, fmt.Errorf("expression %q: %w", truncate(src, 80), err)
	}
	if errs != nil {
		return nil, errors.New(celErrorsMessage(src, errs))
	}
	p.progs.put(src, prg, false)
	return prg, nil
}

// Eval evaluates the CEL expression src and returns its value as a plain Go
// value (see DecodeJSON; timestamps become RFC 3339 strings, durations
// strings, bytes base64).
func (p *Plan) Eval(src string, vars Vars) (any, error) {
	v, err := p.eval(src, vars)
	if err != nil {
		return nil, fmt.Errorf("workflow: %w", err)
	}
	return v, nil
}

func (p *Plan) eval(src string, vars Vars) (any, error) {
	prg, err := p.program(src, vars)
	if err != nil {
		return nil, err
	}
	act := map[string]any(vars)
	if act == nil {
		act = map[string]any{}
	}
	out, _, err := prg.prg.ContextEval(context.Background(), act)
	if err != nil {
		var cancelled interpreter.EvalCancelledError
		if errors.As(err, &cancelled) && cancelled.Cause == interpreter.CostLimitExceeded ||
			strings.Contains(err.Error(), "cost limit exceeded") {
			return nil, fmt.Errorf("expression %q exceeded its cost limit (%d)", truncate(src, 80), CostLimit)
		}
		return nil, fmt.Errorf("expression %q: %w", truncate(src, 80), err)
	}
	v, err := plainValue(out, 0)
	if err != nil {
		return nil, fmt.Errorf("expression %q: %w", truncate(src, 80), err)
	}
	return v, nil
}

// EvalBool evaluates src, which must produce a boolean.
func (p *Plan) EvalBool(src string, vars Vars) (bool, error) {
	v, err := p.eval(src, vars)
	if err != nil {
		return false, fmt.Errorf("workflow: %w", err)
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("workflow: expression %q produced %s, not a boolean", truncate(src, 80), describe(v))
	}
	return b, nil
}

// plainValue converts a CEL value to plain Go values.
func plainValue(v ref.Val, depth int) (any, error) {
	if depth > MaxJSONDepth {
		return nil, fmt.Errorf("result is nested more than %d levels deep", MaxJSONDepth)
	}
	switch x := v.(type) {
	case types.Null:
		return nil, nil
	case types.Bool:
		return bool(x), nil
	case types.Int:
		return int64(x), nil
	case types.Uint:
		if uint64(x) <= math.MaxInt64 {
			return int64(x), nil
		}
		return float64(x), nil
	case types.Double:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("result %v is not a finite number", f)
		}
		return f, nil
	case types.String:
		return string(x), nil
	case types.Bytes:
		return base64.StdEncoding.EncodeToString(x), nil
	case types.Timestamp:
		return x.Time.UTC().Format(time.RFC3339Nano), nil
	case types.Duration:
		return x.Duration.String(), nil
	case *types.Optional:
		if !x.HasValue() {
			return nil, nil
		}
		return plainValue(x.GetValue(), depth+1)
	case *types.Err:
		return nil, x
	case *types.Unknown:
		return nil, errors.New("result depends on unknown values")
	case *types.Type:
		return x.TypeName(), nil
	case traits.Mapper:
		out := make(map[string]any)
		it := x.Iterator()
		for it.HasNext() == types.True {
			k := it.Next()
			ks, ok := k.(types.String)
			var key string
			if ok {
				key = string(ks)
			} else {
				pk, err := plainValue(k, depth+1)
				if err != nil {
					return nil, err
				}
				key = fmt.Sprint(pk)
			}
			e, err := plainValue(x.Get(k), depth+1)
			if err != nil {
				return nil, err
			}
			out[key] = e
		}
		return out, nil
	case traits.Lister:
		n, ok := x.Size().(types.Int)
		if !ok {
			return nil, errors.New("list without a size")
		}
		out := make([]any, 0, int(n))
		for i := types.Int(0); i < n; i++ {
			e, err := plainValue(x.Get(i), depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	}
	return nil, fmt.Errorf("result of type %s cannot be used as a value", v.Type().TypeName())
}

// exprRefs is what an expression refers to, found in its checked AST.
type exprRefs struct {
	steps  []string        // ids after `steps.`
	input  []string        // fields after `input.`
	idents map[string]bool // free identifiers
}

func collectRefs(a *cel.Ast) exprRefs {
	r := exprRefs{idents: map[string]bool{}}
	if a == nil || a.NativeRep() == nil {
		return r
	}
	walkExpr(a.NativeRep().Expr(), map[string]int{}, &r)
	return r
}

func walkExpr(e celast.Expr, shadow map[string]int, r *exprRefs) {
	if e == nil {
		return
	}
	free := func(x celast.Expr, name string) bool {
		return x.Kind() == celast.IdentKind && x.AsIdent() == name && shadow[name] == 0
	}
	note := func(operand celast.Expr, field string) {
		switch {
		case free(operand, "steps"):
			if !slices.Contains(r.steps, field) {
				r.steps = append(r.steps, field)
			}
		case free(operand, "input"):
			if !slices.Contains(r.input, field) {
				r.input = append(r.input, field)
			}
		}
	}
	switch e.Kind() {
	case celast.IdentKind:
		if shadow[e.AsIdent()] == 0 {
			r.idents[e.AsIdent()] = true
		}
	case celast.SelectKind:
		s := e.AsSelect()
		note(s.Operand(), s.FieldName())
		walkExpr(s.Operand(), shadow, r)
	case celast.CallKind:
		c := e.AsCall()
		args := c.Args()
		switch c.FunctionName() {
		case "_[_]", "_[?_]", "_?._":
			if len(args) == 2 && args[1].Kind() == celast.LiteralKind {
				if s, ok := args[1].AsLiteral().(types.String); ok {
					note(args[0], string(s))
				}
			}
		}
		if c.IsMemberFunction() {
			walkExpr(c.Target(), shadow, r)
		}
		for _, a := range args {
			walkExpr(a, shadow, r)
		}
	case celast.ListKind:
		for _, el := range e.AsList().Elements() {
			walkExpr(el, shadow, r)
		}
	case celast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			walkExpr(me.Key(), shadow, r)
			walkExpr(me.Value(), shadow, r)
		}
	case celast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			walkExpr(f.AsStructField().Value(), shadow, r)
		}
	case celast.ComprehensionKind:
		c := e.AsComprehension()
		walkExpr(c.IterRange(), shadow, r)
		walkExpr(c.AccuInit(), shadow, r)
		inner := []string{c.IterVar(), c.AccuVar()}
		if c.HasIterVar2() {
			inner = append(inner, c.IterVar2())
		}
		for _, v := range inner {
			shadow[v]++
		}
		walkExpr(c.LoopCondition(), shadow, r)
		walkExpr(c.LoopStep(), shadow, r)
		walkExpr(c.Result(), shadow, r)
		for _, v := range inner {
			shadow[v]--
		}
	}
}
