package workflow

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"
)

func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	more, _ := filepath.Glob("testdata/*.json")
	for _, name := range append(files, more...) {
		src, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte(hdr + "steps: [{id: a, uses: transform, with: {value: '{{ input }}'}}]\n"))
	f.Add([]byte(hdr + "steps:\n  - id: a\n    uses: foreach\n    with: {items: '{{ [1] }}', step: {uses: switch, with: {cases: [{when: 'item > 1', next: b}]}}}\n"))
	f.Add([]byte(`{"apiVersion": "moat/v1", "kind": "Workflow", "name": "x", "steps": [{"id": "a", "uses": "transform"}]}`))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("- [[[[{"))
	f.Fuzz(func(t *testing.T, src []byte) {
		for _, name := range []string{"f.yaml", "f.json"} {
			plan, err := Load(name, src, testNodes)
			if err != nil {
				checkPositions(t, src, err)
				continue
			}
			again, err := FromCanonical(plan.Canonical, testNodes)
			if err != nil {
				t.Fatalf("a loaded definition does not reload from its canonical form:\n%s\n%v", plan.Canonical, err)
			}
			if again.Hash != plan.Hash {
				t.Fatalf("hash changed on reload:\n%s\n%s", plan.Canonical, again.Canonical)
			}
		}
	})
}

// checkPositions requires Problems whose positions lie within src.
func checkPositions(t *testing.T, src []byte, err error) {
	t.Helper()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error is %T, not Problems: %v", err, err)
	}
	if len(ps) == 0 {
		t.Fatal("empty Problems")
	}
	yamlLines := splitLines(src, true)
	plainLines := splitLines(src, false)
	for _, p := range ps {
		if p.Message == "" {
			t.Errorf("problem without a message: %+v", p)
		}
		if p.Line == 0 {
			if p.Col != 0 {
				t.Errorf("column without a line: %+v", p)
			}
			continue
		}
		ok := false
		for _, lines := range [][][]byte{yamlLines, plainLines} {
			ok = ok || p.Line > 0 && p.Line <= len(lines) && p.Col >= 0 && p.Col <= utf8.RuneCount(lines[p.Line-1])+1
		}
		if !ok {
			t.Errorf("position out of range (%d lines): %+v", len(yamlLines), p)
		}
	}
}

func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		"plain", "{{ input.n }}", "a {{ input.email }} b {{ input.list }}", `{{ {"a": {"b": 1}} }}`,
		"{{", "}}", "{{ '}}' }}", `{{ """ }} """ }}`, "{{ r'\\' }}", "{{ 1 / 0 }}", "{{ input.list.map(x, x * 2) }}",
	} {
		f.Add(s)
	}
	p, err := Load("triage.yaml", mustRead(f, "testdata/triage.yaml"), testNodes)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		segs, perr := parseTemplate(s)
		out, err := p.Render(s, triageVars())
		if perr != nil && err == nil {
			t.Fatalf("Render accepted %q that parseTemplate refuses", s)
		}
		if perr == nil && segs == nil && (err != nil || out != s) {
			t.Fatalf("Render changed a plain string %q: %v, %v", s, out, err)
		}
	})
}

func mustRead(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// splitLines splits src at \r\n, \r and \n, and with yaml also at the
// breaks YAML 1.1 knows (NEL, LS, PS).
func splitLines(src []byte, yaml bool) [][]byte {
	var lines [][]byte
	start := 0
	for i := 0; i < len(src); {
		r, size := utf8.DecodeRune(src[i:])
		brk := 0
		switch {
		case r == '\r' && i+1 < len(src) && src[i+1] == '\n':
			brk = 2
		case r == '\r' || r == '\n':
			brk = 1
		case yaml && (r == '\u0085' || r == '\u2028' || r == '\u2029'):
			brk = size
		}
		if brk > 0 {
			lines = append(lines, src[start:i])
			i += brk
			start = i
			continue
		}
		i += size
	}
	return append(lines, src[start:])
}

// FuzzDecodeJSON checks that every document DecodeJSON accepts survives a
// round trip through encoding/json unchanged, so run inputs and step
// outputs mean the same after they are stored.
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{`{"a":1,"b":[1.5,"x",null,true]}`, `9007199254740993`, `1e400`, `-0`, `"\u00e9\ud83d\ude00"`, `[[[[]]]]`, `{"a":{"a":{}}}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeJSON(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("decoded %q into %#v, which does not encode: %v", b, v, err)
		}
		w, err := DecodeJSON(again)
		if err != nil {
			t.Fatalf("re-encoded %q does not decode: %v", again, err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("round trip changed %q: %#v then %#v", b, v, w)
		}
	})
}
