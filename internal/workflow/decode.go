package workflow

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// decodeValue stores the plain value v into rv, following the json tags of
// the definition types. It reports every unknown field and every value of
// the wrong type, and goes on with the rest.
func decodeValue(v any, rv reflect.Value, ptr string, c *problems) {
	t := rv.Type()
	if v == nil {
		return // null is the same as absent
	}
	switch t {
	case durationType:
		s, ok := v.(string)
		if !ok {
			c.add(ptr, "%s must be a duration such as \"30s\", \"5m\" or \"2d\", not %s", fieldLabel(ptr), describe(v))
			return
		}
		d, err := ParseDuration(s)
		if err != nil {
			c.add(ptr, "%s: %v", fieldLabel(ptr), err)
			return
		}
		rv.SetInt(int64(d))
		return
	case scheduleType:
		if s, ok := v.(string); ok {
			rv.Set(reflect.ValueOf(Schedule{Cron: s}))
			return
		}
	}
	switch t.Kind() {
	case reflect.Pointer:
		e := reflect.New(t.Elem())
		decodeValue(v, e.Elem(), ptr, c)
		rv.Set(e)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			c.add(ptr, "%s must be an object, not %s", fieldLabel(ptr), describe(v))
			return
		}
		info := structInfo(t)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			i, known := info.index[k]
			if !known {
				msg := "unknown field %q in %s"
				if s := closest(k, info.names); s != "" {
					msg += " (did you mean " + s + "?)"
				}
				c.add(child(ptr, k), msg+"; known fields: %s", k, info.label, strings.Join(info.names, ", "))
				continue
			}
			decodeValue(m[k], rv.Field(i), child(ptr, k), c)
		}
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			c.add(ptr, "%s must be a string, not %s", fieldLabel(ptr), describe(v))
			return
		}
		rv.SetString(s)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, ok := v.(int64)
		if !ok {
			c.add(ptr, "%s must be a whole number, not %s", fieldLabel(ptr), describe(v))
			return
		}
		rv.SetInt(n)
	case reflect.Float64:
		switch n := v.(type) {
		case int64:
			rv.SetFloat(float64(n))
		case float64:
			rv.SetFloat(n)
		default:
			c.add(ptr, "%s must be a number, not %s", fieldLabel(ptr), describe(v))
		}
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			c.add(ptr, "%s must be true or false, not %s", fieldLabel(ptr), describe(v))
			return
		}
		rv.SetBool(b)
	case reflect.Slice:
		a, ok := v.([]any)
		if !ok {
			c.add(ptr, "%s must be a list, not %s", fieldLabel(ptr), describe(v))
			return
		}
		out := reflect.MakeSlice(t, len(a), len(a))
		for i, e := range a {
			decodeValue(e, out.Index(i), index(ptr, i), c)
		}
		rv.Set(out)
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			c.add(ptr, "%s must be an object, not %s", fieldLabel(ptr), describe(v))
			return
		}
		rv.Set(reflect.ValueOf(m))
	case reflect.Interface:
		rv.Set(reflect.ValueOf(v))
	}
}

var (
	durationType = reflect.TypeFor[Duration]()
	scheduleType = reflect.TypeFor[Schedule]()
)

// typeLabels names the definition types in messages.
var typeLabels = map[reflect.Type]string{
	reflect.TypeFor[Definition](): "the workflow",
	reflect.TypeFor[Trigger]():    "trigger",
	reflect.TypeFor[Manual]():     "the manual trigger",
	reflect.TypeFor[Webhook]():    "the webhook trigger",
	reflect.TypeFor[Schedule]():   "the schedule",
	reflect.TypeFor[Input]():      "input",
	reflect.TypeFor[Retention]():  "retention",
	reflect.TypeFor[Step]():       "a step",
	reflect.TypeFor[Retry]():      "retry",
}

type fieldInfo struct {
	index map[string]int
	names []string
	label string
}

var structInfos sync.Map // reflect.Type -> *fieldInfo

func structInfo(t reflect.Type) *fieldInfo {
	if fi, ok := structInfos.Load(t); ok {
		return fi.(*fieldInfo)
	}
	fi := &fieldInfo{index: map[string]int{}, label: typeLabels[t]}
	if fi.label == "" {
		fi.label = t.Name()
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fi.index[name] = i
		fi.names = append(fi.names, name)
	}
	structInfos.Store(t, fi)
	return fi
}

// fieldLabel names the field at ptr in a message: its last token, or its
// position in a list.
func fieldLabel(ptr string) string {
	toks := splitPointer(ptr)
	if len(toks) == 0 {
		return "the workflow"
	}
	last := toks[len(toks)-1]
	if last != "" && strings.Trim(last, "0123456789") == "" && len(toks) > 1 {
		return toks[len(toks)-2] + " item " + last
	}
	return last
}

// closest returns the known name nearest to s, or "" when none is near
// enough to be a likely typo.
func closest(s string, names []string) string {
	best, bestD := "", max(1, len(s)/3)+1
	for _, n := range names {
		if d := editDistance(strings.ToLower(s), strings.ToLower(n)); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours cost 1.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
