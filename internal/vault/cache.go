package vault

import (
	"container/list"
	"sync"
	"time"
)

// keyCache keeps unwrapped data keys, least recently used first out, so a
// warm Resolve skips the keyring's unwrap. Every key leaving the cache
// (evicted, purged) is zeroised; callers get copies.
type keyCache struct {
	mu      sync.Mutex
	max     int
	order   *list.List // of *cacheEntry, most recent at the front
	entries map[string]*list.Element
	// ttl, when positive, is how long a key may be served after it was
	// put, by the clock now.
	ttl time.Duration
	now func() time.Time
}

type cacheEntry struct {
	id     string
	key    []byte
	stored time.Time
}

func newKeyCache(max int) *keyCache {
	return &keyCache{max: max, order: list.New(), entries: map[string]*list.Element{}}
}

// get copies the key cached under id into dst (keySize bytes).
func (c *keyCache) get(id string, dst []byte) bool {
	if c.max <= 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[id]
	if !ok {
		return false
	}
	if c.ttl > 0 && c.now().Sub(el.Value.(*cacheEntry).stored) >= c.ttl {
		c.evict(el)
		return false
	}
	c.order.MoveToFront(el)
	copy(dst, el.Value.(*cacheEntry).key)
	return true
}

// put caches a copy of key under id.
func (c *keyCache) put(id string, key []byte) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var stored time.Time
	if c.ttl > 0 {
		stored = c.now()
	}
	if el, ok := c.entries[id]; ok {
		c.order.MoveToFront(el)
		e := el.Value.(*cacheEntry)
		copy(e.key, key)
		e.stored = stored
		return
	}
	for c.order.Len() >= c.max {
		c.evict(c.order.Back())
	}
	c.entries[id] = c.order.PushFront(&cacheEntry{id: id, key: append([]byte(nil), key...), stored: stored})
}

// remove zeroises and drops the key cached under id, if any.
func (c *keyCache) remove(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[id]; ok {
		c.evict(el)
	}
}

func (c *keyCache) evict(el *list.Element) {
	e := c.order.Remove(el).(*cacheEntry)
	zero(e.key)
	delete(c.entries, e.id)
}

// purge zeroises and drops every key.
func (c *keyCache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.order.Front(); el != nil; el = c.order.Front() {
		c.evict(el)
	}
}

// keys returns the cached key slices themselves; tests check that Seal
// zeroises them.
func (c *keyCache) keys() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out [][]byte
	for el := c.order.Front(); el != nil; el = el.Next() {
		out = append(out, el.Value.(*cacheEntry).key)
	}
	return out
}

func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
