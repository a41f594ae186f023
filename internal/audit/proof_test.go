package audit

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestProveAndCheck(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, verifier, hkey := testKeys(t)
	l := openLog(t, s, signer, hkey, Options{})
	if _, err := Prove(t.Context(), s, 0); !errors.Is(err, ErrNotCovered) {
		t.Fatalf("prove in an empty log: %v", err)
	}
	fill(t, l, 1000)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []int64{0, 1, 511, 512, 998, 999} {
		p, err := Prove(t.Context(), s, seq)
		if err != nil {
			t.Fatal(err)
		}
		// Through JSON, as moat audit proof prints it.
		b, _ := json.Marshal(p)
		var back Proof
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		r, err := CheckProof(back, verifier)
		if err != nil {
			t.Fatalf("record %d: %v", seq, err)
		}
		if r.Seq != seq {
			t.Fatalf("proof of %d checks record %d", seq, r.Seq)
		}
	}
	if _, err := Prove(t.Context(), s, 1000); !errors.Is(err, ErrNotCovered) {
		t.Fatalf("prove past the checkpoint: %v", err)
	}

	p, err := Prove(t.Context(), s, 7)
	if err != nil {
		t.Fatal(err)
	}
	_, otherV, _ := testKeys(t)
	tests := []struct {
		name  string
		key   bool
		spoil func(p *Proof)
	}{
		{"changed record", false, func(p *Proof) {
			p.Record = json.RawMessage(strings.Replace(string(p.Record), `"actor":"user:u0"`, `"actor":"user:eve"`, 1))
		}},
		{"changed record and hash", false, func(p *Proof) {
			l, _ := ParseLine(p.Record)
			l.Record.Actor = "user:eve"
			st := stored{Seq: l.Record.Seq, Time: l.Record.Time, Actor: l.Record.Actor, Action: l.Record.Action, Resource: l.Record.Resource, Outcome: l.Record.Outcome, Details: l.Record.Details}
			l.Hash, _ = leafHash(nil, &st)
			b, _ := l.AppendJSON(nil)
			p.Record = b
		}},
		{"changed path", false, func(p *Proof) { p.Proof[0] = p.Proof[1] }},
		{"short path", false, func(p *Proof) { p.Proof = p.Proof[1:] }},
		{"changed checkpoint", false, func(p *Proof) { p.Checkpoint = strings.Replace(p.Checkpoint, "1000", "1001", 1) }},
		{"another key", true, func(p *Proof) {}},
	}
	for _, tc := range tests {
		q := p
		q.Proof = append([]string(nil), p.Proof...)
		tc.spoil(&q)
		key := verifier
		if tc.key {
			key = otherV
		}
		if _, err := CheckProof(q, key); err == nil {
			t.Errorf("%s: the proof checks", tc.name)
		}
	}
}
