package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/argon2"

	"github.com/moatproject/moat/internal/store"
)

// KeySource gives the vault its root key, which wraps the keyring's terms
// and is never stored in the database.
type KeySource interface {
	// Kind names the source ("file", "env", "passphrase") for messages.
	Kind() string
	// RootKey returns the 32-byte root key. A source that needs a person
	// (the passphrase) returns errNeedsPassphrase and the vault stays
	// sealed until Unseal.
	RootKey(ctx context.Context) ([]byte, error)
	// Warning is what the application should log at start about this
	// source, or "".
	Warning() string
}

var errNeedsPassphrase = errors.New("vault: the root key comes from a passphrase")

// KeyFileName is the key file's name in the data directory.
const KeyFileName = "vault.key"

// maxKeyFile bounds what the loader reads: a key file is one line.
const maxKeyFile = 256

// KeyFile keeps the root key in a file: one line holding the standard
// base64 of 32 random bytes, created on first start with mode 0600. A file
// that group or others may read or write is refused.
type KeyFile struct {
	Path string
	// Create makes the file when it does not exist.
	Create bool
}

func (KeyFile) Kind() string { return "file" }

func (k KeyFile) Warning() string {
	return fmt.Sprintf("vault: the root key is kept in %s beside the database; anyone who copies the data directory can decrypt every secret. "+
		"In production give the key through MOAT_VAULT_KEY from a secret manager, or use a passphrase and `moat unseal`", k.Path)
}

func (k KeyFile) RootKey(context.Context) ([]byte, error) {
	f, err := os.OpenFile(k.Path, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) && k.Create {
		return createKeyFile(k.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: key file %s: %w", ErrKeySource, k.Path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: key file %s: %w", ErrKeySource, k.Path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: key file %s is not a regular file", ErrKeySource, k.Path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: key file %s has mode %v; it must be readable by its owner only (chmod 600)", ErrKeySource, k.Path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: key file %s: %w", ErrKeySource, k.Path, err)
	}
	defer zero(data)
	key, err := parseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("%w: key file %s: %w", ErrKeySource, k.Path, err)
	}
	return key, nil
}

// parseKeyFile accepts exactly the standard base64 of 32 bytes, optionally
// followed by one newline. Its errors never quote the content.
func parseKeyFile(data []byte) ([]byte, error) {
	if len(data) > maxKeyFile {
		return nil, errors.New("too long for a key file")
	}
	text := bytes.TrimSuffix(data, []byte("\n"))
	return decodeKey(text)
}

func decodeKey(text []byte) ([]byte, error) {
	if base64.StdEncoding.EncodedLen(keySize) != len(text) {
		return nil, fmt.Errorf("want the base64 of %d bytes (%d characters), got %d characters", keySize, base64.StdEncoding.EncodedLen(keySize), len(text))
	}
	// Decode wants room for DecodedLen bytes, one more than a key.
	buf := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Strict().Decode(buf, text)
	if err != nil || n != keySize {
		zero(buf)
		return nil, errors.New("not the standard base64 of a key")
	}
	return buf[:keySize:keySize], nil
}

func encodeKey(key []byte) []byte {
	out := make([]byte, base64.StdEncoding.EncodedLen(len(key)), base64.StdEncoding.EncodedLen(len(key))+1)
	base64.StdEncoding.Encode(out, key)
	return append(out, '\n')
}

// createKeyFile writes a new key with O_EXCL, so two processes starting at
// once never both create one: the loser fails and is restarted.
func createKeyFile(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("%w: create key file %s: %w", ErrKeySource, path, err)
	}
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("%w: random key: %w", ErrKeySource, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		zero(key)
		return nil, fmt.Errorf("%w: create key file %s: %w", ErrKeySource, path, err)
	}
	text := encodeKey(key)
	defer zero(text)
	_, err = f.Write(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		zero(key)
		os.Remove(path)
		return nil, fmt.Errorf("%w: write key file %s: %w", ErrKeySource, path, err)
	}
	return key, nil
}

// EnvVar is the environment variable EnvKey reads by default.
const EnvVar = "MOAT_VAULT_KEY"

// EnvKey reads the root key, the standard base64 of 32 bytes, from an
// environment variable.
type EnvKey struct {
	Name string // default MOAT_VAULT_KEY
	// Lookup replaces os.LookupEnv in tests.
	Lookup func(string) (string, bool)
}

func (EnvKey) Kind() string    { return "env" }
func (EnvKey) Warning() string { return "" }

func (e EnvKey) RootKey(context.Context) ([]byte, error) {
	name, lookup := e.Name, e.Lookup
	if name == "" {
		name = EnvVar
	}
	if lookup == nil {
		lookup = os.LookupEnv
	}
	v, ok := lookup(name)
	if !ok || v == "" {
		return nil, fmt.Errorf("%w: %s is unset", ErrKeySource, name)
	}
	key, err := decodeKey([]byte(v))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKeySource, name, err)
	}
	return key, nil
}

// Passphrase derives the root key from a passphrase with Argon2id. The
// vault starts sealed and opens on Unseal; the salt and parameters are kept
// in the database, fixed when the vault is initialised.
type Passphrase struct {
	// Argon2id parameters for Init; zero fields take the defaults (RFC 9106's
	// second recommendation, scaled: 3 passes, 64 MiB, 2 lanes).
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
}

func (Passphrase) Kind() string    { return "passphrase" }
func (Passphrase) Warning() string { return "" }

func (Passphrase) RootKey(context.Context) ([]byte, error) { return nil, errNeedsPassphrase }

func (p Passphrase) params() (store.KDFParams, error) {
	kdf := store.KDFParams{Time: p.Time, MemoryKiB: p.MemoryKiB, Threads: p.Threads}
	if kdf.Time == 0 {
		kdf.Time = 3
	}
	if kdf.MemoryKiB == 0 {
		kdf.MemoryKiB = 64 << 10
	}
	if kdf.Threads == 0 {
		kdf.Threads = 2
	}
	kdf.Salt = make([]byte, 16)
	if _, err := rand.Read(kdf.Salt); err != nil {
		return store.KDFParams{}, fmt.Errorf("vault: random salt: %w", err)
	}
	return kdf, checkKDF(kdf)
}

// Bounds on stored parameters, so that a tampered database cannot make an
// unseal attempt take all the memory or time of the machine.
const (
	maxKDFTime   = 16
	maxKDFMemory = 1 << 20 // KiB: 1 GiB
	maxKDFLanes  = 16
	minSalt      = 16
)

func checkKDF(kdf store.KDFParams) error {
	if kdf.Time < 1 || kdf.Time > maxKDFTime || kdf.MemoryKiB < 8*uint32(kdf.Threads) || kdf.MemoryKiB > maxKDFMemory ||
		kdf.Threads < 1 || kdf.Threads > maxKDFLanes || len(kdf.Salt) < minSalt {
		return fmt.Errorf("%w: Argon2id parameters out of bounds (time 1..%d, memory up to %d KiB, lanes 1..%d, salt ≥ %d bytes)",
			ErrInvalid, maxKDFTime, maxKDFMemory, maxKDFLanes, minSalt)
	}
	return nil
}

func deriveKey(passphrase []byte, kdf store.KDFParams) []byte {
	return argon2.IDKey(passphrase, kdf.Salt, kdf.Time, kdf.MemoryKiB, kdf.Threads, keySize)
}
