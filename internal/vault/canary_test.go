package vault

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// encodings returns needle as stored in clear, in base64 (standard and URL,
// padded and not) and in hex (both cases).
func encodings(needle string) map[string][]byte {
	b := []byte(needle)
	return map[string][]byte{
		"clear":     b,
		"base64":    []byte(base64.StdEncoding.EncodeToString(b)),
		"base64raw": []byte(base64.RawStdEncoding.EncodeToString(b)),
		"base64url": []byte(base64.RawURLEncoding.EncodeToString(b)),
		"hex":       []byte(hex.EncodeToString(b)),
		"hexupper":  []byte(strings.ToUpper(hex.EncodeToString(b))),
		"utf16ish":  bytes.Join(bytes.Split(b, nil), []byte{0}), // as a wide string would hold it
	}
}

// hits counts the needles found in data, by encoding.
func hits(data []byte, needles []string) []string {
	var found []string
	for _, n := range needles {
		for enc, b := range encodings(n) {
			if bytes.Contains(data, b) {
				found = append(found, fmt.Sprintf("%s as %s", n, enc))
			}
		}
	}
	return found
}

// TestCanary plants secret values, uses them every way the vault allows
// (set, new versions, resolve warm and cold, rotation, rewrap, denials,
// corruption, seal), then scans the SQLite database and its WAL, the key
// file's directory, the errors and the audit events for the values in
// clear, base64 and hex: zero hits. A planted control string that is
// stored in clear (a secret's name) proves the scan can see.
func TestCanary(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	canaries := []string{
		"canary-sk-Zq7Lr2Vn4Xw9Tb1Hc6Md",
		"canary-ghp_8Yt3Kp5Ws2Qa7Ne4Jf1Ru",
		"canary-password-Pm3Vx8Rt6Lc2",
	}
	const control = "CANARY_CONTROL_NAME"
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	opts := Options{Bindings: Bindings{Connectors: []string{"c"}, Hosts: []string{"api.example.com"}}, RotationPeriod: time.Hour, BlockWhenExpired: true}
	for i, c := range canaries {
		for _, envName := range []string{"dev", "prod"} {
			set(t, e.v, envName, fmt.Sprintf("%s_%d", control, i), c+"-old", opts)
			set(t, e.v, envName, fmt.Sprintf("%s_%d", control, i), c, opts)
		}
	}
	a := Access{Workflow: "support/triage", Environment: "prod", Connector: "c", Host: "api.example.com"}
	for i := range canaries {
		name := fmt.Sprintf("%s_%d", control, i)
		resolve(t, e.v, a, "prod", name)
		resolve(t, e.open(t), a, "prod", name)
		_, err := e.v.Resolve(ctx, Access{Environment: "dev", Connector: "c", Host: "api.example.com"}, "prod", name)
		note(err)
		_, err = e.v.Resolve(ctx, Access{Environment: "prod", Connector: "c", Host: "evil.example.net"}, "prod", name)
		note(err)
	}
	if _, err := e.v.RotateKey(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.v.Rewrap(ctx, RewrapOptions{BatchSize: 2}); err != nil {
		t.Fatal(err)
	}
	note(e.v.SetMinDecryptionTerm(ctx, 2))
	// A corrupt row and an expired one fail with errors of their own.
	e.corruptCiphertext(t, "81", "environment = 'dev'")
	for i := range canaries {
		_, err := e.v.Resolve(ctx, Access{Environment: "dev", Connector: "c", Host: "api.example.com"}, "dev", fmt.Sprintf("%s_%d", control, i))
		note(err)
	}
	e.clock.add(2 * time.Hour)
	_, err := e.v.Resolve(ctx, a, "prod", control+"_0")
	note(err)
	e.v.Seal()
	_, err = e.v.Resolve(ctx, a, "prod", control+"_0")
	note(err)
	if len(errs) < 10 {
		t.Fatalf("only %d refusals exercised", len(errs))
	}

	// Scan while the store is open (the WAL still holds the writes), the
	// database file itself, and every other file in the data directory.
	files, err := filepath.Glob(filepath.Join(e.dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var sawWAL, sawControl bool
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, "-wal") && len(data) > 0 {
			sawWAL = true
		}
		if bytes.Contains(data, []byte(control)) {
			sawControl = true
		}
		if found := hits(data, canaries); len(found) > 0 {
			t.Errorf("%s holds %v", filepath.Base(f), found)
		}
	}
	if !sawWAL {
		t.Fatal("no WAL to scan")
	}
	if !sawControl {
		t.Fatal("the scan did not find the control string stored in clear")
	}

	var text strings.Builder
	for _, err := range errs {
		text.WriteString(err.Error() + "\n")
	}
	evs, _ := json.Marshal(e.hook.take())
	text.Write(evs)
	list, err := e.v.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(list)
	text.Write(js)
	if found := hits([]byte(text.String()), canaries); len(found) > 0 {
		t.Errorf("errors, events or listings hold %v", found)
	}
	if !errors.Is(errs[len(errs)-1], ErrSealed) {
		t.Fatalf("last refusal %v", errs[len(errs)-1])
	}

	// Once closed (the WAL checkpointed into the database) the file is
	// still clean.
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(e.db)
	if err != nil {
		t.Fatal(err)
	}
	if found := hits(data, canaries); len(found) > 0 {
		t.Errorf("checkpointed database holds %v", found)
	}
	if !bytes.Contains(data, []byte(control)) {
		t.Fatal("the checkpointed database lacks the control string")
	}
}
