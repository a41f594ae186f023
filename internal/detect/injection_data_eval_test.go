package detect

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
)

// devRecord is one line of the data-mode development sets in testdata/:
// injection-tasks.jsonl (tasks for an assistant, written for Moat: the
// positives) and injection-business.jsonl (support tickets, business
// e-mails, newsletters, meeting notes and replies with requests and
// questions of their own: the hard negatives).
type devRecord struct {
	ID       string `json:"id"`
	Category string `json:"category"`
	Text     string `json:"text"`
}

func loadDevSet(t testing.TB, name string) []devRecord {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer f.Close()
	var out []devRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r devRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

// rateByCategory scans each text with scan and returns the overall rate of
// flagged texts and a per-category summary.
func rateByCategory(t *testing.T, name string, recs []devRecord, positive bool, scan func(string) InjectionResult) float64 {
	t.Helper()
	n, hit := map[string]int{}, map[string]int{}
	total := 0
	for _, r := range recs {
		res := scan(r.Text)
		n[r.Category]++
		if res.Injection {
			hit[r.Category]++
			total++
		}
		if os.Getenv("MOAT_EVAL_VERBOSE") != "" && res.Injection != positive && !strings.Contains(name, "prompt mode") {
			t.Logf("MISS %s %s %.2f %v: %q", name, r.ID, res.Score, res.Reasons, r.Text)
		}
	}
	cats := make([]string, 0, len(n))
	for c := range n {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	var b strings.Builder
	for _, c := range cats {
		fmt.Fprintf(&b, "%s %d/%d; ", c, hit[c], n[c])
	}
	kind := "TPR"
	if !positive {
		kind = "FPR"
	}
	rate := float64(total) / float64(len(recs))
	t.Logf("%-44s %4d %4d %s %.3f", name, len(recs), total, kind, rate)
	t.Logf("    by category: %s", b.String())
	return rate
}

// TestInjectionInDataDevSets measures data mode on Moat's own development
// sets: the tasks alone, the tasks inserted into the middle of the business
// texts that have two sentences or more, and the business texts alone; and
// prompt mode on the business texts, which must stay clean.
func TestInjectionInDataDevSets(t *testing.T) {
	t.Parallel()
	tasks := loadDevSet(t, "injection-tasks.jsonl")
	business := loadDevSet(t, "injection-business.jsonl")
	var carriers []string
	for _, b := range business {
		if strings.Count(b.Text, ". ")+strings.Count(b.Text, "? ")+strings.Count(b.Text, "! ") >= 1 {
			carriers = append(carriers, b.Text)
		}
	}
	var inserted []devRecord
	for i, task := range tasks {
		c := carriers[(i*7)%len(carriers)]
		inserted = append(inserted, devRecord{task.ID, task.Category, insertMiddle(c, task.Text)})
	}
	rates := map[string]float64{
		"tasks":            rateByCategory(t, "tasks alone (data mode)", tasks, true, InjectionInData),
		"tasks in carrier": rateByCategory(t, "tasks inside business texts (data mode)", inserted, true, InjectionInData),
		"business":         rateByCategory(t, "business texts (data mode)", business, false, InjectionInData),
		"business prompt":  rateByCategory(t, "business texts (prompt mode)", business, false, Injection),
		"tasks prompt":     rateByCategory(t, "tasks alone (prompt mode)", tasks, true, Injection),
	}
	// Written after the detector was tuned on the sets above and measured
	// once, untouched since: how it does on text it was not tuned on.
	holdTasks := loadDevSet(t, "injection-tasks-holdout.jsonl")
	holdBusiness := loadDevSet(t, "injection-business-holdout.jsonl")
	rates["holdout tasks"] = rateByCategory(t, "held-out tasks (data mode)", holdTasks, true, InjectionInData)
	rates["holdout business"] = rateByCategory(t, "held-out business texts (data mode)", holdBusiness, false, InjectionInData)
	// Regression guards, below the measured figures (see BENCHMARKS.md).
	guards := []struct {
		set string
		min bool
		v   float64
	}{
		{"tasks", true, 0.80},
		{"tasks in carrier", true, 0.75},
		{"business", false, 0.03},
		{"business prompt", false, 0.01},
		{"holdout tasks", true, 0.70},
		{"holdout business", false, 0.10},
	}
	for _, g := range guards {
		r := rates[g.set]
		if g.min && r < g.v || !g.min && r > g.v {
			t.Errorf("%s: rate %.3f crosses the regression guard %.2f", g.set, r, g.v)
		}
	}
}
