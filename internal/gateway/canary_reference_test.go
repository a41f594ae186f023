package gateway

import (
	"encoding/base64"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"
)

// leakedReference is the straightforward Canary.Leaked: both forms built
// rune by rune as strings, every needle encoded whole, with zero bytes
// before it for its alignment. Leaked must agree with it.
func leakedReference(c Canary, answer string) bool {
	if c.secret == "" || answer == "" {
		return false
	}
	var alnum, b64 strings.Builder
	for _, r := range norm.NFKC.String(answer) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			alnum.WriteRune(foldHexLookalike(r))
			b64.WriteRune(r)
		case r >= 'A' && r <= 'Z':
			alnum.WriteRune(foldHexLookalike(r - 'A' + 'a'))
			b64.WriteRune(r)
		case r == '+' || r == '/':
			b64.WriteRune(r)
		case r == '-':
			b64.WriteByte('+')
		case r == '_':
			b64.WriteByte('/')
		default:
			if f := foldHexLookalike(r); f != r {
				alnum.WriteRune(f)
			}
		}
	}
	a, bs := alnum.String(), b64.String()
	if strings.Contains(a, c.secret) {
		return true
	}
	variants := []string{c.secret, strings.ToUpper(c.secret), c.Marker(), strings.ToUpper(c.Marker())}
	for _, s := range variants {
		if strings.Contains(a, hex.EncodeToString([]byte(s))) {
			return true
		}
	}
	for _, s := range variants {
		for align := range 3 {
			buf := append(make([]byte, align), s...)
			enc := base64.StdEncoding.EncodeToString(buf)
			first, last := (align+2)/3, (align+len(s))/3
			if last-first >= 2 && strings.Contains(bs, enc[4*first:4*last]) {
				return true
			}
		}
	}
	return false
}

// canaryAnswer mixes pieces of c's marker, in its encodings, with noise.
func canaryAnswer(r *rand.Rand, c Canary) string {
	m := c.Marker()
	pieces := []string{m, c.secret, strings.ToUpper(m), hex.EncodeToString([]byte(m)),
		base64.StdEncoding.EncodeToString([]byte("x" + m)), base64.URLEncoding.EncodeToString([]byte("xy" + c.secret)),
		"о", "І", "Ｍ", "\u200b", "\xff", " ", "-", "_", "é", "😀", "The answer is 42. "}
	var b strings.Builder
	for range r.IntN(12) {
		p := pieces[r.IntN(len(pieces))]
		if r.IntN(3) == 0 && len(p) > 2 {
			// A cut piece: a near miss.
			i := r.IntN(len(p))
			p = p[:i] + p[i+1:]
		}
		b.WriteString(p)
	}
	return b.String()
}

func TestCanaryLeakedAgreesWithReference(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	long := strings.Repeat("a long answer with some words in it ", 40)
	leaks := 0
	for i := range 5000 {
		c := NewCanary()
		answer := canaryAnswer(r, c)
		if i%10 == 0 {
			answer = long + answer + long // past Leaked's stack buffer
		}
		if got, want := c.Leaked(answer), leakedReference(c, answer); got != want {
			t.Fatalf("Leaked(%q) = %v, want %v", answer, got, want)
		} else if got {
			leaks++
		}
	}
	if leaks < 1000 || leaks > 4000 {
		t.Errorf("%d of 5000 answers leak: the answers test too little of one side", leaks)
	}
}

func FuzzCanaryLeakedReference(f *testing.F) {
	c := Canary{secret: "0123456789abcdef"}
	f.Add("moat-canary-0123456789abcdef")
	f.Add(base64.StdEncoding.EncodeToString([]byte("ab" + c.Marker())))
	f.Add("\u200b\xff\xfe MOAT-CANARY-０１２３")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := c.Leaked(s), leakedReference(c, s); got != want {
			t.Fatalf("Leaked(%q) = %v, want %v", s, got, want)
		}
	})
}

// Leaked searches for the whole marker's base64 only where the secret's
// is too short: that is sound only while the prefix before the secret is a
// whole number of base64 groups (3 bytes each).
func TestCanaryPrefixIsWholeBase64Groups(t *testing.T) {
	if len(canaryPrefix)%3 != 0 {
		t.Fatalf("the canary prefix is %d bytes, not a multiple of 3: Leaked must search for the marker's base64 at every alignment", len(canaryPrefix))
	}
}

// Short secrets have no base64 needle of their own at some alignments;
// Leaked then searches for the marker's.
func TestCanaryLeakedShortSecretsAgreeWithReference(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 8))
	for n := 1; n <= 9; n++ {
		for range 500 {
			c := Canary{secret: NewCanary().secret[:n]}
			answer := canaryAnswer(r, c)
			if got, want := c.Leaked(answer), leakedReference(c, answer); got != want {
				t.Fatalf("secret %q: Leaked(%q) = %v, want %v", c.secret, answer, got, want)
			}
		}
	}
}
