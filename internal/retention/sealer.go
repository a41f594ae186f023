package retention

import (
	"context"
	"strings"

	"github.com/moatproject/moat/internal/store"
)

// PayloadCipher seals and opens payloads under per-run keys
// (vault.PayloadKeys).
type PayloadCipher interface {
	Seal(ctx context.Context, f store.PayloadField, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, f store.PayloadField, sealed []byte) ([]byte, error)
	Destroy(ctx context.Context, refs ...store.RunKeyRef) error
	// Prepare makes a new run's keys ahead of its first write.
	Prepare(ctx context.Context, runID string) error
}

// Digest maps a normalised subject to its index key: an HMAC under a key
// of the server's, so the index reveals nothing without it.
type Digest func(normalised string) []byte

// Sealer is the store's store.PayloadSealer: it seals through the cipher,
// and reports the subjects in each payload and the class rules they bring.
type Sealer struct {
	Cipher PayloadCipher
	Digest Digest
	Rules  Rules
}

var _ store.PayloadSealer = (*Sealer)(nil)

func (s *Sealer) Seal(ctx context.Context, f store.PayloadField, plaintext []byte) (store.Sealed, error) {
	sealed, err := s.Cipher.Seal(ctx, f, plaintext)
	if err != nil {
		return store.Sealed{}, err
	}
	var subjects []found
	if class, isToken := strings.CutPrefix(f.Name, "token:"); isToken {
		// A token's value is one whole identifier of a known class.
		if isSubjectClass(class) {
			subjects = []found{{class, normalise(class, string(plaintext))}}
		}
	} else {
		subjects = findSubjects(string(plaintext))
	}
	out := store.Sealed{Bytes: sealed}
	seen := map[string]bool{}
	classes := make([]string, 0, len(subjects))
	for _, sub := range subjects {
		classes = append(classes, sub.class)
		if seen[sub.value] || sub.value == "" {
			continue
		}
		seen[sub.value] = true
		out.Subjects = append(out.Subjects, s.Digest(sub.value))
	}
	out.KeepAtMost = s.Rules.Cap(classes)
	return out, nil
}

func (s *Sealer) Prepare(ctx context.Context, runID string) error {
	return s.Cipher.Prepare(ctx, runID)
}

func (s *Sealer) Open(ctx context.Context, f store.PayloadField, sealed []byte) ([]byte, error) {
	return s.Cipher.Open(ctx, f, sealed)
}
