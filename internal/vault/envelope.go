package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// A secret's stored ciphertext is one envelope, version 1:
//
//	offset  size  field
//	0       1     format version, 1
//	1       4     key term that wraps the data key, big-endian, ≥ 1
//	5       12    nonce of the data key's wrapping
//	17      48    the data key (32 bytes) sealed with AES-256-GCM under the
//	              key term, tag included
//	65      12    nonce of the value
//	77      n+16  the value (n bytes) sealed with AES-256-GCM under the data
//	              key, tag included
//
// Both seals take associated data naming the secret's id, environment,
// name and version (and, for the data key, the term), so an envelope copied
// into another row, or under another version, fails to open. The parser
// accepts exactly this layout and nothing else.
const (
	formatV1     = 1
	keySize      = 32
	nonceSize    = 12
	tagSize      = 16
	wrappedSize  = keySize + tagSize
	headerSize   = 1 + 4 + nonceSize + wrappedSize + nonceSize
	minEnvelope  = headerSize + tagSize
	maxValueSize = 64 << 10
	maxEnvelope  = headerSize + maxValueSize + tagSize
)

// envelope is a parsed ciphertext; its slices alias the parsed bytes.
type envelope struct {
	term       uint32
	keyNonce   []byte
	wrappedKey []byte
	nonce      []byte
	sealed     []byte
}

// parseEnvelope checks b's layout; it decrypts nothing.
func parseEnvelope(b []byte) (envelope, error) {
	switch {
	case len(b) < minEnvelope:
		return envelope{}, fmt.Errorf("%w: %d bytes is shorter than any envelope", ErrCorrupt, len(b))
	case len(b) > maxEnvelope:
		return envelope{}, fmt.Errorf("%w: %d bytes is longer than any envelope", ErrCorrupt, len(b))
	case b[0] != formatV1:
		return envelope{}, fmt.Errorf("%w: unknown format version %d", ErrCorrupt, b[0])
	}
	e := envelope{term: binary.BigEndian.Uint32(b[1:5])}
	if e.term == 0 {
		return envelope{}, fmt.Errorf("%w: key term 0", ErrCorrupt)
	}
	off := 5
	next := func(n int) []byte {
		s := b[off : off+n : off+n]
		off += n
		return s
	}
	e.keyNonce, e.wrappedKey, e.nonce = next(nonceSize), next(wrappedSize), next(nonceSize)
	e.sealed = b[off:len(b):len(b)]
	return e, nil
}

// marshal lays e out in the version 1 format.
func (e envelope) marshal() []byte {
	b := make([]byte, 0, headerSize+len(e.sealed))
	b = append(b, formatV1)
	b = binary.BigEndian.AppendUint32(b, e.term)
	b = append(b, e.keyNonce...)
	b = append(b, e.wrappedKey...)
	b = append(b, e.nonce...)
	return append(b, e.sealed...)
}

// wrappedID identifies a wrapped data key: the term and the wrapping's
// nonce and sealed bytes. The data key cache is keyed by it (with the
// secret's identity), so a rewrapped or replaced key is a miss.
func (e envelope) wrappedID() string {
	var b [4 + nonceSize + wrappedSize]byte
	binary.BigEndian.PutUint32(b[:4], e.term)
	copy(b[4:], e.keyNonce)
	copy(b[4+nonceSize:], e.wrappedKey)
	return string(b[:])
}

// secretRef names the row an envelope belongs to; it is what the associated
// data binds.
type secretRef struct {
	id, environment, name string
	version               int
}

// Associated data is a label, then each field as a 4-byte big-endian length
// and its bytes, so that no two distinct field lists encode alike.
func associatedData(label string, term uint32, ref secretRef) []byte {
	b := make([]byte, 0, 64+len(ref.id)+len(ref.environment)+len(ref.name))
	field := func(s string) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	field(label)
	b = binary.BigEndian.AppendUint32(b, term)
	field(ref.id)
	field(ref.environment)
	field(ref.name)
	b = binary.BigEndian.AppendUint64(b, uint64(ref.version))
	return b
}

const (
	labelDataKey = "moat/vault/data-key/v1"
	labelValue   = "moat/vault/value/v1"
	labelTerm    = "moat/vault/term-key/v1"
	labelCheck   = "moat/vault/check/v1"
)

func dataKeyAD(term uint32, ref secretRef) []byte { return associatedData(labelDataKey, term, ref) }

// The value's associated data leaves the term out: a rewrap changes the
// term but not the sealed value.
func valueAD(ref secretRef) []byte { return associatedData(labelValue, 0, ref) }

func termAD(term uint32) []byte { return associatedData(labelTerm, term, secretRef{}) }

func checkAD() []byte { return associatedData(labelCheck, 0, secretRef{}) }

// newGCM returns AES-256-GCM under key. The cipher is built per operation
// rather than kept, so that zeroising the key slice leaves no live copy of
// the key schedule referenced by the vault.
func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("vault: a key must be %d bytes", keySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealBox seals plaintext under key with a fresh random nonce and returns
// nonce || sealed.
func sealBox(key, plaintext, ad []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+tagSize)
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("vault: random nonce: %w", err)
	}
	return aead.Seal(out, out[:nonceSize], plaintext, ad), nil
}

// openBox opens nonce || sealed. Its error never carries the plaintext.
func openBox(key, box, ad []byte) ([]byte, error) {
	if len(box) < nonceSize+tagSize {
		return nil, errTooShort
	}
	return openSealed(key, box[:nonceSize], box[nonceSize:], ad)
}

func openSealed(key, nonce, sealed, ad []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	return aead.Open(nil, nonce, sealed, ad)
}

var errTooShort = errors.New("sealed box too short")

// sealEnvelope seals value under a fresh data key wrapped by termKey; it
// returns the envelope and the data key, which the caller may cache (and
// must otherwise zero).
func sealEnvelope(term uint32, termKey []byte, ref secretRef, value []byte) (ct, dataKey []byte, err error) {
	dataKey = make([]byte, keySize)
	if _, err := rand.Read(dataKey); err != nil {
		return nil, nil, fmt.Errorf("vault: random data key: %w", err)
	}
	wrapped, err := sealBox(termKey, dataKey, dataKeyAD(term, ref))
	if err != nil {
		zero(dataKey)
		return nil, nil, err
	}
	sealed, err := sealBox(dataKey, value, valueAD(ref))
	if err != nil {
		zero(dataKey)
		return nil, nil, err
	}
	e := envelope{term: term, keyNonce: wrapped[:nonceSize], wrappedKey: wrapped[nonceSize:], nonce: sealed[:nonceSize], sealed: sealed[nonceSize:]}
	return e.marshal(), dataKey, nil
}

// unwrapDataKey opens e's data key under termKey.
func unwrapDataKey(e envelope, termKey []byte, ref secretRef) ([]byte, error) {
	dk, err := openSealed(termKey, e.keyNonce, e.wrappedKey, dataKeyAD(e.term, ref))
	if err != nil {
		return nil, err
	}
	if len(dk) != keySize {
		zero(dk)
		return nil, errors.New("data key of the wrong size")
	}
	return dk, nil
}

// rewrapEnvelope wraps dataKey under a new term and keeps the sealed value.
func rewrapEnvelope(e envelope, dataKey []byte, term uint32, termKey []byte, ref secretRef) ([]byte, error) {
	wrapped, err := sealBox(termKey, dataKey, dataKeyAD(term, ref))
	if err != nil {
		return nil, err
	}
	e.term, e.keyNonce, e.wrappedKey = term, wrapped[:nonceSize], wrapped[nonceSize:]
	return e.marshal(), nil
}

// zero overwrites b. The compiler does not elide it: b escapes to callers
// that read it afterwards in tests.
func zero(b []byte) {
	clear(b)
}
