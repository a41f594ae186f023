package audit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func TestLoadOrCreateKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k, err := LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{SigningKeyFile: 0o600, HMACKeyFile: 0o600, VerifierKeyFile: 0o644} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, info.Mode().Perm(), mode)
		}
	}
	again, err := LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.VerifierKey != k.VerifierKey || string(again.HMAC) != string(k.HMAC) {
		t.Fatal("the second load made new keys")
	}
	// The loaded signer and verifier are halves of one key.
	msg, err := note.Sign(&note.Note{Text: "hello\n"}, again.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(k.Verifier)); err != nil {
		t.Fatal(err)
	}
	hkey, err := LoadHMACKey(dir)
	if err != nil || string(hkey) != string(k.HMAC) {
		t.Fatalf("LoadHMACKey: %v", err)
	}
}

func TestLoadKeysRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		spoil func(dir string) error
		want  error
	}{
		{"signing key readable by group", func(dir string) error {
			return os.Chmod(filepath.Join(dir, SigningKeyFile), 0o640)
		}, ErrKeyPermissions},
		{"HMAC key readable by all", func(dir string) error {
			return os.Chmod(filepath.Join(dir, HMACKeyFile), 0o604)
		}, ErrKeyPermissions},
		{"HMAC key too short", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, HMACKeyFile), make([]byte, 31), 0o600)
		}, ErrKeyFormat},
		{"HMAC key too long", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, HMACKeyFile), make([]byte, 33), 0o600)
		}, ErrKeyFormat},
		{"signing key garbled", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, SigningKeyFile), []byte("PRIVATE+KEY+moat-audit+00000000+AAAA\n"), 0o600)
		}, ErrKeyFormat},
		{"signing key huge", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, SigningKeyFile), make([]byte, 4096), 0o600)
		}, ErrKeyFormat},
		{"public key of another pair", func(dir string) error {
			_, vkey, err := note.GenerateKey(nil, KeyName)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, VerifierKeyFile), []byte(vkey+"\n"), 0o644)
		}, ErrKeyFormat},
		{"HMAC key missing beside the others", func(dir string) error {
			return os.Remove(filepath.Join(dir, HMACKeyFile))
		}, ErrKeyMissing},
		{"signing key missing beside the others", func(dir string) error {
			return os.Remove(filepath.Join(dir, SigningKeyFile))
		}, ErrKeyMissing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if _, err := LoadOrCreateKeys(dir); err != nil {
				t.Fatal(err)
			}
			if err := tc.spoil(dir); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreateKeys(dir)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "PRIVATE+KEY") {
				t.Fatalf("the error quotes a key: %v", err)
			}
		})
	}
}

// FuzzParseKeys feeds arbitrary bytes to the key-file parsers: they must
// not panic, must fail with ErrKeyFormat, and must never quote the input.
func FuzzParseKeys(f *testing.F) {
	skey, vkey, err := note.GenerateKey(nil, KeyName)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(skey + "\n"))
	f.Add([]byte(vkey))
	f.Add(make([]byte, 32))
	f.Add([]byte("PRIVATE+KEY+a+00000000+"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if s, err := ParseSigningKey(data); err == nil {
			if s.Name() == "" {
				t.Fatal("a signer without a name")
			}
		} else if !errors.Is(err, ErrKeyFormat) || (len(data) > 8 && strings.Contains(err.Error(), string(data))) {
			t.Fatalf("ParseSigningKey: %v", err)
		}
		if _, err := ParseVerifierKey(data); err != nil && !errors.Is(err, ErrKeyFormat) {
			t.Fatalf("ParseVerifierKey: %v", err)
		}
		k, err := ParseHMACKey(data)
		if (err == nil) != (len(data) == hmacKeySize) {
			t.Fatalf("ParseHMACKey of %d bytes: %v", len(data), err)
		}
		if err == nil && string(k) != string(data) {
			t.Fatal("ParseHMACKey changed the key")
		}
	})
}
