package workflow

import "testing"

func BenchmarkLoad(b *testing.B) {
	src := mustRead(b, "testdata/triage.yaml")
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := Load("triage.yaml", src, testNodes); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromCanonical(b *testing.B) {
	p, err := Load("triage.yaml", mustRead(b, "testdata/triage.yaml"), testNodes)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := FromCanonical(p.Canonical, testNodes); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRenderWith(b *testing.B) {
	p, err := Load("triage.yaml", mustRead(b, "testdata/triage.yaml"), testNodes)
	if err != nil {
		b.Fatal(err)
	}
	s, vars := p.Step("reply"), triageVars()
	for b.Loop() {
		if _, err := p.RenderWith(s, vars); err != nil {
			b.Fatal(err)
		}
	}
}
