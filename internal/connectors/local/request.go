package local

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"sync"
)

// Bounds on the examples one request may bring: training runs in the
// request, so it must stay small next to a connector's own training set.
const (
	MaxRequestExamples     = 2_000
	MaxRequestExampleBytes = 4 << 20 // all texts and labels together
	// RequestCacheSize is how many classifiers trained from requests'
	// examples are kept, least recently used first out: a workflow step
	// brings the same examples every time, so it trains once.
	RequestCacheSize = 32
)

// exampleKey is the SHA-256 of the examples, each field length-prefixed so
// that no two different lists share a key.
type exampleKey [sha256.Size]byte

func keyOf(examples []Example) exampleKey {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	write := func(s string) {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(examples)))])
	for _, ex := range examples {
		write(ex.Text)
		write(ex.Label)
	}
	var k exampleKey
	h.Sum(k[:0])
	return k
}

// classifierCache is a bounded LRU of classifiers by the key of the
// examples they were trained on. It is safe for concurrent use.
type classifierCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *cached, most recently used first
	byKey map[exampleKey]*list.Element
}

type cached struct {
	key        exampleKey
	classifier *Classifier
}

func newClassifierCache(max int) *classifierCache {
	return &classifierCache{max: max, order: list.New(), byKey: map[exampleKey]*list.Element{}}
}

func (c *classifierCache) get(k exampleKey) (*Classifier, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[k]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cached).classifier, true
}

// add keeps cl under k; when two requests trained the same examples at
// once, the first kept wins so every later request sees one classifier.
func (c *classifierCache) add(k exampleKey, cl *Classifier) *Classifier {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[k]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*cached).classifier
	}
	c.byKey[k] = c.order.PushFront(&cached{key: k, classifier: cl})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*cached).key)
	}
	return cl
}

func (c *classifierCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// requestClassifier is the classifier of a request's own examples, trained
// now or found in the cache.
func (c *Connector) requestClassifier(examples []Example) (*Classifier, error) {
	if len(examples) > MaxRequestExamples {
		return nil, rejected("the request brings %d examples, more than the limit of %d", len(examples), MaxRequestExamples)
	}
	total := 0
	for _, ex := range examples {
		total += len(ex.Text) + len(ex.Label)
		if total > MaxRequestExampleBytes {
			return nil, rejected("the request's examples are more than %d bytes", MaxRequestExampleBytes)
		}
	}
	if c.cache == nil { // a Connector not made by New: train, keep nothing
		cl, err := Train(examples, c.options)
		if err != nil {
			return nil, rejected("the request's examples: %v", err)
		}
		return cl, nil
	}
	k := keyOf(examples)
	if cl, ok := c.cache.get(k); ok {
		return cl, nil
	}
	cl, err := Train(examples, c.options)
	if err != nil {
		return nil, rejected("the request's examples: %v", err)
	}
	return c.cache.add(k, cl), nil
}
