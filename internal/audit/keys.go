package audit

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/mod/sumdb/note"
)

// Key files in the data dir.
const (
	SigningKeyFile  = "audit-signing.key" // note signer key, text, mode 0600
	VerifierKeyFile = "audit-signing.pub" // note verifier key, text, public
	HMACKeyFile     = "audit-hmac.key"    // 32 random bytes, mode 0600
)

// KeyName names the signer in every checkpoint note.
const KeyName = "moat-audit"

// hmacKeySize is the HMAC key's length in bytes.
const hmacKeySize = 32

// maxKeyFile bounds what a key loader reads: every valid file is far
// smaller.
const maxKeyFile = 1024

// Key errors.
var (
	// ErrKeyPermissions reports a private key file that others than its
	// owner may read or write.
	ErrKeyPermissions = errors.New("audit: key file permissions are too wide (want 0600)")
	// ErrKeyFormat reports a key file of the wrong size or syntax.
	ErrKeyFormat = errors.New("audit: key file is malformed")
	// ErrKeyMissing reports a key file missing beside others that exist:
	// making a new one would orphan the existing checkpoints or HMACs.
	ErrKeyMissing = errors.New("audit: key file missing")
	// ErrWrongKey reports a signing key that did not sign the log's newest
	// checkpoint.
	ErrWrongKey = errors.New("audit: signing key does not match the log's checkpoints")
)

// Keys are what a Log needs to sign checkpoints and HMAC sensitive values.
type Keys struct {
	Signer      note.Signer
	Verifier    note.Verifier
	VerifierKey string // the verifier's text form, as in audit-signing.pub
	HMAC        []byte
}

// LoadOrCreateKeys loads the audit keys from dir, creating all three files
// when none exists (first use). When only some exist it fails with
// ErrKeyMissing rather than replace a key the log already depends on.
func LoadOrCreateKeys(dir string) (Keys, error) {
	paths := []string{filepath.Join(dir, SigningKeyFile), filepath.Join(dir, VerifierKeyFile), filepath.Join(dir, HMACKeyFile)}
	var missing []string
	for _, p := range paths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			missing = append(missing, p)
		} else if err != nil {
			return Keys{}, fmt.Errorf("audit: keys: %w", err)
		}
	}
	switch len(missing) {
	case 0:
		return LoadKeys(dir)
	case len(paths):
		if err := createKeys(dir); err != nil {
			return Keys{}, err
		}
		return LoadKeys(dir)
	default:
		return Keys{}, fmt.Errorf("%w: %s (restore it from a backup; the other key files exist)", ErrKeyMissing, missing[0])
	}
}

func createKeys(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("audit: create keys: %w", err)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, KeyName)
	if err != nil {
		return fmt.Errorf("audit: create keys: %w", err)
	}
	hkey := make([]byte, hmacKeySize)
	if _, err := rand.Read(hkey); err != nil {
		return fmt.Errorf("audit: create keys: %w", err)
	}
	// The public key last: its presence says the set is complete.
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{SigningKeyFile, []byte(skey + "\n"), 0o600},
		{HMACKeyFile, hkey, 0o600},
		{VerifierKeyFile, []byte(vkey + "\n"), 0o644},
	} {
		if err := writeNew(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("audit: create keys: %w", err)
		}
	}
	return nil
}

// writeNew writes a file that must not exist yet, synced to disk.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LoadKeys loads the three key files from dir.
func LoadKeys(dir string) (Keys, error) {
	sdata, err := readKeyFile(filepath.Join(dir, SigningKeyFile), true)
	if err != nil {
		return Keys{}, err
	}
	signer, err := ParseSigningKey(sdata)
	if err != nil {
		return Keys{}, fmt.Errorf("audit: %s: %w", SigningKeyFile, err)
	}
	verifier, vkey, err := LoadVerifier(filepath.Join(dir, VerifierKeyFile))
	if err != nil {
		return Keys{}, err
	}
	if verifier.KeyHash() != signer.KeyHash() || verifier.Name() != signer.Name() {
		return Keys{}, fmt.Errorf("%w: %s is not the public half of %s", ErrKeyFormat, VerifierKeyFile, SigningKeyFile)
	}
	hdata, err := readKeyFile(filepath.Join(dir, HMACKeyFile), true)
	if err != nil {
		return Keys{}, err
	}
	hkey, err := ParseHMACKey(hdata)
	if err != nil {
		return Keys{}, fmt.Errorf("audit: %s: %w", HMACKeyFile, err)
	}
	return Keys{Signer: signer, Verifier: verifier, VerifierKey: vkey, HMAC: hkey}, nil
}

// LoadHMACKey loads only the HMAC key, for tools that search.
func LoadHMACKey(dir string) ([]byte, error) {
	data, err := readKeyFile(filepath.Join(dir, HMACKeyFile), true)
	if err != nil {
		return nil, err
	}
	key, err := ParseHMACKey(data)
	if err != nil {
		return nil, fmt.Errorf("audit: %s: %w", HMACKeyFile, err)
	}
	return key, nil
}

// LoadVerifier loads a verifier key file (audit-signing.pub).
func LoadVerifier(path string) (note.Verifier, string, error) {
	data, err := readKeyFile(path, false)
	if err != nil {
		return nil, "", err
	}
	v, err := ParseVerifierKey(data)
	if err != nil {
		return nil, "", fmt.Errorf("audit: %s: %w", path, err)
	}
	return v, string(bytes.TrimSpace(data)), nil
}

// readKeyFile reads a key file, checking a private one's permissions on
// the open file (not the path, which could be swapped in between).
func readKeyFile(path string, private bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit: key: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("audit: key: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrKeyFormat, path)
	}
	if private && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v", ErrKeyPermissions, path, info.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("audit: key %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrKeyFormat, path, maxKeyFile)
	}
	return data, nil
}

// ParseSigningKey parses a note signer key (note.GenerateKey's first
// result), with optional surrounding space. Its errors never quote the key.
func ParseSigningKey(data []byte) (note.Signer, error) {
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrKeyFormat, maxKeyFile)
	}
	s, err := note.NewSigner(string(bytes.TrimSpace(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: not an Ed25519 note signing key", ErrKeyFormat)
	}
	return s, nil
}

// ParseVerifierKey parses a note verifier key (note.GenerateKey's second
// result).
func ParseVerifierKey(data []byte) (note.Verifier, error) {
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrKeyFormat, maxKeyFile)
	}
	v, err := note.NewVerifier(string(bytes.TrimSpace(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: not an Ed25519 note verifier key: %w", ErrKeyFormat, err)
	}
	return v, nil
}

// ParseHMACKey checks an HMAC key file's contents: exactly 32 bytes.
func ParseHMACKey(data []byte) ([]byte, error) {
	if len(data) != hmacKeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrKeyFormat, len(data), hmacKeySize)
	}
	return bytes.Clone(data), nil
}
