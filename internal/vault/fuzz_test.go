package vault

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
)

func validEnvelope(tb testing.TB, value string) []byte {
	tb.Helper()
	termKey := make([]byte, keySize)
	rand.Read(termKey)
	ct, dk, err := sealEnvelope(3, termKey, secretRef{id: "sec_x", environment: "prod", name: "K", version: 1}, []byte(value))
	if err != nil {
		tb.Fatal(err)
	}
	zero(dk)
	return ct
}

// FuzzParseEnvelope: the parser never panics, accepts only the exact
// layout, and what it accepts lays out again byte for byte.
func FuzzParseEnvelope(f *testing.F) {
	f.Add(validEnvelope(f, "v"))
	f.Add(validEnvelope(f, strings.Repeat("x", 300)))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Add(make([]byte, minEnvelope))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseEnvelope(b)
		if err != nil {
			if len(b) >= minEnvelope && len(b) <= maxEnvelope && b[0] == formatV1 && (b[1]|b[2]|b[3]|b[4]) != 0 {
				t.Fatalf("refused a well-formed envelope: %v", err)
			}
			return
		}
		if e.term == 0 || len(e.keyNonce) != nonceSize || len(e.wrappedKey) != wrappedSize || len(e.nonce) != nonceSize || len(e.sealed) < tagSize {
			t.Fatalf("accepted a malformed envelope: %+v", e)
		}
		if !bytes.Equal(e.marshal(), b) {
			t.Fatal("marshal(parse(b)) != b")
		}
	})
}

// FuzzParseKeyFile: the loader never panics, accepts only the base64 of
// 32 bytes with at most one newline, and what it accepts encodes back.
func FuzzParseKeyFile(f *testing.F) {
	f.Add([]byte(strings.Repeat("A", 43) + "=\n"))
	f.Add([]byte(strings.Repeat("A", 43) + "="))
	f.Add([]byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\r\n"))
	f.Add([]byte(""))
	f.Add(bytes.Repeat([]byte("A"), 300))
	f.Fuzz(func(t *testing.T, b []byte) {
		key, err := parseKeyFile(b)
		if err != nil {
			return
		}
		if len(key) != keySize {
			t.Fatalf("a key of %d bytes", len(key))
		}
		if want := encodeKey(key); !bytes.Equal(want, b) && !bytes.Equal(want[:len(want)-1], b) {
			t.Fatalf("accepted %q, which is not the canonical encoding", b)
		}
	})
}

// FuzzParseHostPattern: the binding parser never panics, its canonical
// form parses to itself, and an exact pattern matches its own host.
func FuzzParseHostPattern(f *testing.F) {
	for _, s := range []string{"api.example.com", "*.example.com", "*.eu.example.com:8443", "10.0.0.7", "[::1]:443", "::1", "[::1]", "*.com", "a..b", "x:0", "X.COM.", "[fe80::1%eth0]"} {
		f.Add(s, "api.example.com:443")
	}
	f.Fuzz(func(t *testing.T, pattern, host string) {
		p, err := parseHostPattern(pattern)
		if err != nil {
			return
		}
		q, err := parseHostPattern(p.String())
		if err != nil || q != p {
			t.Fatalf("%q → %q → %+v, %v", pattern, p.String(), q, err)
		}
		p.match(host) // must not panic
		if !p.wildcard {
			h := p.host
			if strings.Contains(h, ":") {
				h = "[" + h + "]"
			}
			if p.port != "" {
				h += ":" + p.port
			}
			if !p.match(h) {
				t.Fatalf("%q does not match its own host %q", pattern, h)
			}
		}
	})
}
