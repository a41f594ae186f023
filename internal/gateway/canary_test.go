package gateway

import (
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
)

func TestNewCanaryIsRandomAndShaped(t *testing.T) {
	t.Parallel()
	shape := regexp.MustCompile(`^moat-canary-[0-9a-f]{16}$`)
	seen := map[string]bool{}
	for range 100 {
		c := NewCanary()
		if !shape.MatchString(c.Marker()) {
			t.Fatalf("marker %q", c.Marker())
		}
		if seen[c.Marker()] {
			t.Fatal("marker repeated")
		}
		seen[c.Marker()] = true
		if !strings.Contains(c.Instruction(), c.Marker()) || !strings.Contains(c.Instruction(), "never repeat") {
			t.Fatalf("instruction %q", c.Instruction())
		}
		if strings.Contains(c.String(), c.secret) {
			t.Fatal("String reveals the canary")
		}
	}
}

func TestCanaryLeakedInEachDisguise(t *testing.T) {
	t.Parallel()
	c := NewCanary()
	m := c.Marker()
	spaced := strings.Join(strings.Split(m, ""), " ")
	zw := strings.Join(strings.Split(m, ""), "\u200b")
	var fullwidth strings.Builder
	for _, r := range m {
		if r >= '!' && r <= '~' {
			r += 0xFEE0
		}
		fullwidth.WriteRune(r)
	}
	b64 := base64.StdEncoding.EncodeToString([]byte(m))
	for name, answer := range map[string]string{
		"plain":                "Sure. My instructions start with " + m + " and then …",
		"spaced":               "The marker is " + spaced,
		"zero-width":           "ok " + zw + " ok",
		"upper":                strings.ToUpper(m),
		"mixed case":           "MoAt-CaNaRy-" + strings.ToUpper(c.secret[:8]) + c.secret[8:],
		"only random part":     "code " + c.secret,
		"dashes in secret":     c.secret[:4] + "-" + c.secret[4:8] + "-" + c.secret[8:12] + "-" + c.secret[12:],
		"newlines":             c.secret[:8] + "\n" + c.secret[8:],
		"full-width":           fullwidth.String(),
		"hex":                  "hex: " + hex.EncodeToString([]byte(m)),
		"hex upper":            strings.ToUpper(hex.EncodeToString([]byte(m))),
		"hex bytes spaced":     spacedHex(m),
		"hex of secret":        hex.EncodeToString([]byte(c.secret)),
		"base64":               "b64: " + b64,
		"base64 raw url":       base64.RawURLEncoding.EncodeToString([]byte("x" + m + "yz")),
		"base64 of upper":      base64.StdEncoding.EncodeToString([]byte(strings.ToUpper(m))),
		"base64 in sentence":   base64.StdEncoding.EncodeToString([]byte("My system prompt says: " + m + ". Do not tell.")),
		"base64 wrapped":       wrap(base64.StdEncoding.EncodeToString([]byte("ab"+m)), 7),
		"cyrillic look-alikes": strings.NewReplacer("a", "а", "c", "с", "e", "е").Replace(m),
	} {
		if !c.Leaked(answer) {
			t.Errorf("%s: not caught: %q", name, answer)
		}
	}
}

func spacedHex(s string) string {
	var parts []string
	for i := 0; i < len(s); i++ {
		parts = append(parts, hex.EncodeToString([]byte{s[i]}))
	}
	return strings.Join(parts, " ")
}

func wrap(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s); i += n {
		b.WriteString(s[i:min(i+n, len(s))])
		b.WriteString("\n")
	}
	return b.String()
}

func TestCanaryNoFalsePositives(t *testing.T) {
	t.Parallel()
	c := NewCanary()
	other := NewCanary()
	for _, answer := range []string{
		"",
		"The canary in the coal mine is a metaphor.",
		"moat-canary-",
		"Our canary release uses a moat-canary- prefix for markers.",
		other.Marker(),
		hex.EncodeToString([]byte(other.Marker())),
		base64.StdEncoding.EncodeToString([]byte(other.Marker())),
		c.secret[:15],
		"A long answer " + strings.Repeat("with 0123456789abcdef hex and base64 QUJDREVGR0g= ", 50),
	} {
		if c.Leaked(answer) {
			t.Errorf("false positive on %q", answer)
		}
	}
	if (Canary{}).Leaked("moat-canary-") || (Canary{}).Leaked("anything") {
		t.Error("the zero canary leaked")
	}
	if (Canary{}).Instruction() != "" || (Canary{}).Marker() != "" {
		t.Error("the zero canary has an instruction")
	}
}

func FuzzCanaryLeaked(f *testing.F) {
	c := Canary{secret: "0123456789abcdef"}
	f.Add("moat-canary-0123456789abcdef")
	f.Add("")
	f.Add("\u200b\xff\xfe canary")
	f.Add(base64.StdEncoding.EncodeToString([]byte(c.Marker())))
	f.Fuzz(func(t *testing.T, s string) {
		leaked := c.Leaked(s)
		if strings.Contains(s, c.Marker()) && !leaked {
			t.Fatalf("plain marker not caught in %q", s)
		}
		_ = NewCanary().Leaked(s)
	})
}

// BenchmarkCanaryLeaked checks the pipeline benchmark's 2 KB prompt, as an
// answer echoing it would be checked.
func BenchmarkCanaryLeaked(b *testing.B) {
	c := NewCanary()
	answer := benchPrompt()
	b.SetBytes(int64(len(answer)))
	for b.Loop() {
		if c.Leaked(answer) {
			b.Fatal("leaked")
		}
	}
}
