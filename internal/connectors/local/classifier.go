// Package local is the connector that runs in process, so no data leaves
// the machine: a text classifier trained from labelled examples, and entity
// extraction from Moat's own detectors.
package local

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/moatproject/moat/internal/connectors"
)

// Limits on training data.
const (
	MaxExamples     = 100_000
	MaxExampleBytes = 1 << 20
	MaxLabels       = 64
	MaxLabelBytes   = 256
)

// Model names a learning algorithm.
type Model string

const (
	// Logistic is multinomial logistic regression trained with AdaGrad and
	// L2 regularisation: the default, chosen by measurement (see
	// classifier_test.go, TestHeldOutAccuracy).
	Logistic Model = "logistic"
	// ComplementNB is complement naive Bayes with weight normalisation.
	ComplementNB Model = "complement-nb"
)

// Example is one labelled text.
type Example = connectors.Example

// Options tune training; the zero value gives the defaults.
type Options struct {
	Model        Model   // default Logistic
	HashBits     int     // feature space is 2^HashBits; default 18, 10..22
	Epochs       int     // logistic: passes over the data; default 20
	LearningRate float64 // logistic: AdaGrad step; default 0.5
	L2           float64 // logistic: L2 penalty; default 1e-4
	Alpha        float64 // complement NB: additive smoothing; default 0.3
	Seed         uint64  // order of examples in each epoch; default 1
}

func (o Options) withDefaults() (Options, error) {
	if o.Model == "" {
		o.Model = Logistic
	}
	if o.Model != Logistic && o.Model != ComplementNB {
		return o, fmt.Errorf("local: unknown model %q (want %q or %q)", o.Model, Logistic, ComplementNB)
	}
	if o.HashBits == 0 {
		o.HashBits = 18
	}
	if o.HashBits < 10 || o.HashBits > 22 {
		return o, fmt.Errorf("local: hash bits %d out of range 10..22", o.HashBits)
	}
	if o.Epochs == 0 {
		o.Epochs = 20
	}
	if o.Epochs < 1 || o.Epochs > 1000 {
		return o, fmt.Errorf("local: epochs %d out of range 1..1000", o.Epochs)
	}
	if o.LearningRate == 0 {
		o.LearningRate = 0.5
	}
	if !(o.LearningRate > 0) || math.IsInf(o.LearningRate, 0) {
		return o, fmt.Errorf("local: learning rate must be positive")
	}
	if o.L2 == 0 {
		o.L2 = 1e-4
	}
	if !(o.L2 >= 0) || math.IsInf(o.L2, 0) {
		return o, fmt.Errorf("local: L2 must not be negative")
	}
	if o.Alpha == 0 {
		o.Alpha = 0.3
	}
	if !(o.Alpha > 0) || math.IsInf(o.Alpha, 0) {
		return o, fmt.Errorf("local: alpha must be positive")
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	return o, nil
}

// Classifier is a trained text classifier. It is immutable and safe for
// concurrent use.
type Classifier struct {
	model  Model
	bits   int
	labels []string // sorted
	// row maps a feature bucket to its row of weights, or -1 when no
	// training example had that feature (its weights would all be zero).
	row     []int32
	weights []float32 // row-major: weights[r*k+c]
	bias    []float64
	pool    sync.Pool // of *extractor, reused between predictions
}

// Labels returns the labels the classifier knows, sorted.
func (c *Classifier) Labels() []string { return slices.Clone(c.labels) }

// Model returns the algorithm the classifier was trained with.
func (c *Classifier) Model() Model { return c.model }

// Train learns a classifier from examples. Training is deterministic: the
// same examples and options give the same classifier.
func Train(examples []Example, opts Options) (*Classifier, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(examples) == 0 {
		return nil, errors.New("local: no training examples")
	}
	if len(examples) > MaxExamples {
		return nil, fmt.Errorf("local: %d training examples, more than the limit of %d", len(examples), MaxExamples)
	}
	labelSet := map[string]bool{}
	for i, ex := range examples {
		switch {
		case strings.TrimSpace(ex.Text) == "":
			return nil, fmt.Errorf("local: example %d has an empty text", i)
		case len(ex.Text) > MaxExampleBytes:
			return nil, fmt.Errorf("local: example %d is %d bytes, more than the limit of %d", i, len(ex.Text), MaxExampleBytes)
		case strings.TrimSpace(ex.Label) == "":
			return nil, fmt.Errorf("local: example %d has an empty label", i)
		case len(ex.Label) > MaxLabelBytes:
			return nil, fmt.Errorf("local: example %d has a label longer than %d bytes", i, MaxLabelBytes)
		}
		labelSet[ex.Label] = true
	}
	if len(labelSet) < 2 {
		return nil, fmt.Errorf("local: training needs at least 2 distinct labels, got %d", len(labelSet))
	}
	if len(labelSet) > MaxLabels {
		return nil, fmt.Errorf("local: %d distinct labels, more than the limit of %d", len(labelSet), MaxLabels)
	}
	labels := make([]string, 0, len(labelSet))
	for l := range labelSet {
		labels = append(labels, l)
	}
	slices.Sort(labels)
	labelIndex := make(map[string]int, len(labels))
	for i, l := range labels {
		labelIndex[l] = i
	}

	// Extract every example once; give each bucket seen a row.
	ext := newExtractor(opts.HashBits)
	vecs := make([][]feature, len(examples))
	ys := make([]int, len(examples))
	row := make([]int32, 1<<opts.HashBits)
	for i := range row {
		row[i] = -1
	}
	rows := int32(0)
	for i, ex := range examples {
		v := ext.features(ex.Text, nil)
		if len(v) == 0 {
			return nil, fmt.Errorf("local: example %d has no words", i)
		}
		for j := range v {
			if row[v[j].index] < 0 {
				row[v[j].index] = rows
				rows++
			}
			v[j].index = uint32(row[v[j].index]) // from now on, a row
		}
		vecs[i], ys[i] = v, labelIndex[ex.Label]
	}

	c := &Classifier{model: opts.Model, bits: opts.HashBits, labels: labels, row: row}
	if opts.Model == ComplementNB {
		c.trainCNB(vecs, ys, int(rows), opts)
	} else {
		c.trainLogistic(vecs, ys, int(rows), opts)
	}
	return c, nil
}

// splitmix64 is a small, stable generator: the shuffle must not change when
// the standard library's generators do.
type splitmix64 uint64

func (s *splitmix64) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// trainLogistic fits multinomial logistic regression by stochastic
// gradient descent with per-coordinate AdaGrad steps. The L2 penalty is
// applied to the coordinates an example touches (lazy regularisation).
func (c *Classifier) trainLogistic(vecs [][]feature, ys []int, rows int, opts Options) {
	k := len(c.labels)
	w := make([]float64, rows*k)
	g2 := make([]float64, rows*k)
	bias := make([]float64, k)
	bg2 := make([]float64, k)
	order := make([]int, len(vecs))
	for i := range order {
		order[i] = i
	}
	rng := splitmix64(opts.Seed)
	p := make([]float64, k)
	const eps = 1e-8
	for epoch := 0; epoch < opts.Epochs; epoch++ {
		for i := len(order) - 1; i > 0; i-- {
			j := int(rng.next() % uint64(i+1))
			order[i], order[j] = order[j], order[i]
		}
		for _, n := range order {
			x := vecs[n]
			copy(p, bias)
			for _, f := range x {
				base := int(f.index) * k
				for cl := 0; cl < k; cl++ {
					p[cl] += f.value * w[base+cl]
				}
			}
			softmax(p)
			p[ys[n]] -= 1 // p is now the gradient of the loss by the logits
			for cl := 0; cl < k; cl++ {
				bg2[cl] += p[cl] * p[cl]
				bias[cl] -= opts.LearningRate * p[cl] / (math.Sqrt(bg2[cl]) + eps)
			}
			for _, f := range x {
				base := int(f.index) * k
				for cl := 0; cl < k; cl++ {
					g := p[cl]*f.value + opts.L2*w[base+cl]
					g2[base+cl] += g * g
					w[base+cl] -= opts.LearningRate * g / (math.Sqrt(g2[base+cl]) + eps)
				}
			}
		}
	}
	c.weights = make([]float32, len(w))
	for i, v := range w {
		c.weights[i] = float32(v)
	}
	c.bias = bias
}

// trainCNB fits complement naive Bayes (Rennie et al., 2003) with weight
// normalisation. Its logit for a class is minus the weighted evidence for
// the other classes.
func (c *Classifier) trainCNB(vecs [][]feature, ys []int, rows int, opts Options) {
	k := len(c.labels)
	counts := make([]float64, rows*k) // feature mass per class
	total := make([]float64, rows)    // feature mass over all classes
	for n, x := range vecs {
		for _, f := range x {
			counts[int(f.index)*k+ys[n]] += f.value
			total[f.index] += f.value
		}
	}
	classMass := make([]float64, k)
	var allMass float64
	for r := 0; r < rows; r++ {
		for cl := 0; cl < k; cl++ {
			classMass[cl] += counts[r*k+cl]
		}
		allMass += total[r]
	}
	w := make([]float64, rows*k)
	for cl := 0; cl < k; cl++ {
		denom := allMass - classMass[cl] + opts.Alpha*float64(rows)
		var sum float64
		for r := 0; r < rows; r++ {
			v := math.Log((total[r] - counts[r*k+cl] + opts.Alpha) / denom)
			w[r*k+cl] = v
			sum += math.Abs(v)
		}
		for r := 0; r < rows; r++ {
			// Negated, so that a larger logit means more likely; scaled
			// so that the softmax of the logits is informative.
			w[r*k+cl] = -w[r*k+cl] / sum * float64(rows)
		}
	}
	c.weights = make([]float32, len(w))
	for i, v := range w {
		c.weights[i] = float32(v)
	}
	c.bias = make([]float64, k)
}

func softmax(p []float64) {
	m := math.Inf(-1)
	for _, v := range p {
		m = max(m, v)
	}
	var s float64
	for i, v := range p {
		p[i] = math.Exp(v - m)
		s += p[i]
	}
	for i := range p {
		p[i] /= s
	}
}

// logits returns the unnormalised score of every label for text.
func (c *Classifier) logits(text string) []float64 {
	k := len(c.labels)
	out := slices.Clone(c.bias)
	ext, _ := c.pool.Get().(*extractor)
	if ext == nil {
		ext = newExtractor(c.bits)
	}
	ext.vec = ext.features(text, ext.vec)
	defer func() {
		if cap(ext.hashes) <= 1<<16 { // do not keep the buffers of a huge text
			c.pool.Put(ext)
		}
	}()
	for _, f := range ext.vec {
		r := c.row[f.index]
		if r < 0 {
			continue
		}
		base := int(r) * k
		for cl := 0; cl < k; cl++ {
			out[cl] += f.value * float64(c.weights[base+cl])
		}
	}
	return out
}

// Predict returns the most likely label for text and the probability of
// every label. Ties go to the label that sorts first.
func (c *Classifier) Predict(text string) (label string, scores map[string]float64) {
	return c.PredictAmong(text, nil)
}

// PredictAmong is Predict restricted to some of the classifier's labels
// (all of them when among is empty); labels it does not know are ignored.
// The probabilities are renormalised over the labels considered.
func (c *Classifier) PredictAmong(text string, among []string) (label string, scores map[string]float64) {
	z := c.logits(text)
	keep := make([]bool, len(c.labels))
	some := false
	for i, l := range c.labels {
		keep[i] = len(among) == 0 || slices.Contains(among, l)
		some = some || keep[i]
	}
	if !some {
		return "", map[string]float64{}
	}
	var sel []float64
	var idx []int
	for i := range z {
		if keep[i] {
			sel = append(sel, z[i])
			idx = append(idx, i)
		}
	}
	softmax(sel)
	scores = make(map[string]float64, len(sel))
	best := -1
	for j, i := range idx {
		scores[c.labels[i]] = sel[j]
		if best < 0 || sel[j] > sel[best] {
			best = j
		}
	}
	return c.labels[idx[best]], scores
}
