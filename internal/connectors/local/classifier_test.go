package local

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

func loadExamples(t testing.TB, name string) []Example {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Example
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ex Example
		if err := json.Unmarshal(sc.Bytes(), &ex); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, ex)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func accuracy(c *Classifier, set []Example) float64 {
	right := 0
	for _, ex := range set {
		if got, _ := c.Predict(ex.Text); got == ex.Label {
			right++
		}
	}
	return float64(right) / float64(len(set))
}

// TestHeldOutAccuracy measures both models on the held-out tickets. The
// figures are logged (go test -run HeldOut -v ./internal/connectors/local);
// only a floor well below them is asserted.
func TestHeldOutAccuracy(t *testing.T) {
	t.Parallel()
	train := loadExamples(t, "tickets_train.jsonl")
	held := loadExamples(t, "tickets_heldout.jsonl")
	for _, m := range []Model{Logistic, ComplementNB} {
		c, err := Train(train, Options{Model: m})
		if err != nil {
			t.Fatal(err)
		}
		acc := accuracy(c, held)
		t.Logf("%s: held-out accuracy %.3f (%d examples), training accuracy %.3f", m, acc, len(held), accuracy(c, train))
		if acc < 0.6 {
			t.Errorf("%s: held-out accuracy %.3f below the floor 0.6", m, acc)
		}
	}
}

func TestDefaultModelIsLogistic(t *testing.T) {
	t.Parallel()
	c, err := Train(loadExamples(t, "tickets_train.jsonl"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Model() != Logistic {
		t.Errorf("default model %q", c.Model())
	}
	if got := strings.Join(c.Labels(), ","); got != "bug,question,refund" {
		t.Errorf("labels %s", got)
	}
}

func TestPredictScores(t *testing.T) {
	t.Parallel()
	c, err := Train(loadExamples(t, "tickets_train.jsonl"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"I want my money back", "", "!!!", "日本語のテキスト", strings.Repeat("crash ", 1000)} {
		label, scores := c.Predict(text)
		if len(scores) != 3 {
			t.Fatalf("%q: %d scores", text, len(scores))
		}
		var sum float64
		best := 0.0
		for _, s := range scores {
			if s < 0 || s > 1 {
				t.Errorf("%q: score %v out of [0,1]", text, s)
			}
			sum += s
			best = max(best, s)
		}
		if sum < 0.999 || sum > 1.001 {
			t.Errorf("%q: scores sum to %v", text, sum)
		}
		if scores[label] != best {
			t.Errorf("%q: label %s is not the best score %v", text, label, scores)
		}
	}
	if label, _ := c.Predict("I want my money back for the double charge"); label != "refund" {
		t.Errorf("refund text classified %s", label)
	}
	label, scores := c.PredictAmong("the app crashes on start", []string{"refund", "question"})
	if label == "bug" || len(scores) != 2 {
		t.Errorf("PredictAmong gave %s %v", label, scores)
	}
}

func TestTrainingIsDeterministic(t *testing.T) {
	t.Parallel()
	train := loadExamples(t, "tickets_train.jsonl")
	held := loadExamples(t, "tickets_heldout.jsonl")
	for _, m := range []Model{Logistic, ComplementNB} {
		a, err := Train(train, Options{Model: m})
		if err != nil {
			t.Fatal(err)
		}
		b, err := Train(train, Options{Model: m})
		if err != nil {
			t.Fatal(err)
		}
		for _, ex := range held {
			la, sa := a.Predict(ex.Text)
			lb, sb := b.Predict(ex.Text)
			if la != lb {
				t.Fatalf("%s: %q: %s then %s", m, ex.Text, la, lb)
			}
			for l, s := range sa {
				if sb[l] != s {
					t.Fatalf("%s: %q: score of %s %v then %v", m, ex.Text, l, s, sb[l])
				}
			}
		}
	}
}

func TestTrainErrors(t *testing.T) {
	t.Parallel()
	ok := []Example{{Text: "refund please", Label: "refund"}, {Text: "app crashes", Label: "bug"}}
	big := make([]Example, MaxExamples+1)
	for i := range big {
		big[i] = Example{Text: "x", Label: "a"}
	}
	manyLabels := make([]Example, MaxLabels+1)
	for i := range manyLabels {
		manyLabels[i] = Example{Text: "text", Label: strings.Repeat("l", i+1)}
	}
	tests := []struct {
		name     string
		examples []Example
		opts     Options
		want     string
	}{
		{"none", nil, Options{}, "no training examples"},
		{"one label", []Example{{Text: "a b", Label: "x"}, {Text: "c d", Label: "x"}}, Options{}, "at least 2 distinct labels"},
		{"empty text", append(ok, Example{Text: "  ", Label: "bug"}), Options{}, "example 2 has an empty text"},
		{"empty label", append(ok, Example{Text: "text", Label: ""}), Options{}, "example 2 has an empty label"},
		{"no words", append(ok, Example{Text: "?!", Label: "bug"}), Options{}, "example 2 has no words"},
		{"text too long", append(ok, Example{Text: strings.Repeat("a", MaxExampleBytes+1), Label: "bug"}), Options{}, "more than the limit"},
		{"too many examples", big, Options{}, "more than the limit of 100000"},
		{"too many labels", manyLabels, Options{}, "distinct labels, more than the limit"},
		{"bad model", ok, Options{Model: "svm"}, "unknown model"},
		{"bad bits", ok, Options{HashBits: 40}, "hash bits"},
		{"bad rate", ok, Options{LearningRate: -1}, "learning rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Train(tt.examples, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := Train(ok, Options{}); err != nil {
		t.Errorf("minimal training: %v", err)
	}
}

func TestFeatures(t *testing.T) {
	t.Parallel()
	e := newExtractor(18)
	a := e.features("Refund, please!", nil)
	b := newExtractor(18).features("refund please", nil)
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("case and punctuation change the features: %d vs %d", len(a), len(b))
	}
	var norm float64
	seen := map[uint32]bool{}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("feature %d differs", i)
		}
		if seen[a[i].index] {
			t.Fatalf("feature %d twice", a[i].index)
		}
		seen[a[i].index] = true
		norm += a[i].value * a[i].value
	}
	if norm < 0.999 || norm > 1.001 {
		t.Errorf("norm² %v", norm)
	}
	// "refund please": 2 words + 1 bigram + char n-grams of " refund "
	// (8 runes: 6+5+4) and " please " (8 runes: 15); collisions aside.
	if len(a) < 30 || len(a) > 33 {
		t.Errorf("%d features", len(a))
	}
	if len(e.features("", nil)) != 0 || len(e.features(" .,; ", nil)) != 0 {
		t.Errorf("features of no words")
	}
}

func BenchmarkPredict2KB(b *testing.B) {
	c, err := Train(loadExamples(b, "tickets_train.jsonl"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	held := loadExamples(b, "tickets_heldout.jsonl")
	for i := 0; sb.Len() < 2048; i++ {
		sb.WriteString(held[i%len(held)].Text)
		sb.WriteByte(' ')
	}
	text := sb.String()[:2048]
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		c.Predict(text)
	}
}

func BenchmarkTrain(b *testing.B) {
	train := loadExamples(b, "tickets_train.jsonl")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Train(train, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzPredict(f *testing.F) {
	c, err := Train(loadExamples(f, "tickets_train.jsonl"), Options{HashBits: 12})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "refund", "a b c", "\xff\xfe", "日本語", "İstanbul ǅ ß", strings.Repeat("x", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		label, scores := c.Predict(text)
		if _, ok := scores[label]; !ok || len(scores) != 3 {
			t.Fatalf("label %q, scores %v", label, scores)
		}
		for l, s := range scores {
			if !(s >= 0 && s <= 1) {
				t.Fatalf("score of %s: %v", l, s)
			}
		}
	})
}

// TestCrossValidation compares the models by 10-fold cross-validation over
// the training and held-out tickets together (fold = index mod 10), which
// is less noisy than one held-out split of 30.
func TestCrossValidation(t *testing.T) {
	t.Parallel()
	all := append(loadExamples(t, "tickets_train.jsonl"), loadExamples(t, "tickets_heldout.jsonl")...)
	const folds = 10
	for _, m := range []Model{Logistic, ComplementNB} {
		right := 0
		for k := 0; k < folds; k++ {
			var train, test []Example
			for i, ex := range all {
				if i%folds == k {
					test = append(test, ex)
				} else {
					train = append(train, ex)
				}
			}
			c, err := Train(train, Options{Model: m})
			if err != nil {
				t.Fatal(err)
			}
			right += int(accuracy(c, test)*float64(len(test)) + 0.5)
		}
		acc := float64(right) / float64(len(all))
		t.Logf("%s: %d-fold cross-validated accuracy %.3f (%d/%d)", m, folds, acc, right, len(all))
		if acc < 0.6 {
			t.Errorf("%s: cross-validated accuracy %.3f below the floor 0.6", m, acc)
		}
	}
}

func TestPredictConcurrently(t *testing.T) {
	t.Parallel()
	c, err := Train(loadExamples(t, "tickets_train.jsonl"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	held := loadExamples(t, "tickets_heldout.jsonl")
	want := make([]string, len(held))
	for i, ex := range held {
		want[i], _ = c.Predict(ex.Text)
	}
	done := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			for i, ex := range held {
				if got, _ := c.Predict(ex.Text); got != want[i] {
					done <- fmt.Errorf("%q: %s, then %s", ex.Text, want[i], got)
					return
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
