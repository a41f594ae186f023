package gateway

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/connectors"
)

// marshalDigest is the straightforward digestMessages: SHA-256 of
// json.Marshal's bytes.
func marshalDigest(t testing.TB, msgs []connectors.Message) string {
	b, err := json.Marshal(msgs)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestDigestMessagesPlainEncoding(t *testing.T) {
	if !messageJSONIsPlain {
		t.Fatal("connectors.Message is no longer a plain role and content: digestMessages always takes encoding/json's path")
	}
}

func TestDigestMessagesAgreesWithMarshalOnRandomText(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"a", "<", ">", "&", `"`, `\`, "\n", "\t", "\b", "\f", "\r", "\x00", "\x1f", "\x7f", "é", "😀",
		"\xff", "\xe2\x80", "\u2028", "\u2029", "\u202f", " ", "</script>", strings.Repeat("x", 700)}
	for range 3000 {
		msgs := make([]connectors.Message, r.IntN(4))
		for i := range msgs {
			var b strings.Builder
			for range r.IntN(60) {
				b.WriteString(pieces[r.IntN(len(pieces))])
			}
			msgs[i] = connectors.Message{Role: connectors.Role(pieces[r.IntN(len(pieces))]), Content: b.String()}
		}
		if got, want := digestMessages(msgs), marshalDigest(t, msgs); got != want {
			t.Fatalf("digestMessages(%q) = %s, want %s", msgs, got, want)
		}
	}
}

func FuzzDigestMessages(f *testing.F) {
	f.Add("user", "a <b> & \"c\"\n\t\u2028\u2029 \x00 \xff é 😀", "")
	f.Add("system", strings.Repeat("long line\n", 3000), "\xe2\x80")
	f.Fuzz(func(t *testing.T, role, a, b string) {
		for _, msgs := range [][]connectors.Message{
			{{Role: connectors.Role(role), Content: a}},
			{{Role: connectors.System, Content: a}, {Role: connectors.Role(role), Content: b}},
		} {
			if got, want := digestMessages(msgs), marshalDigest(t, msgs); got != want {
				t.Fatalf("digestMessages(%q) = %s, want %s", msgs, got, want)
			}
		}
	})
}

// NewRequestID's lower-case alphabet gives what lowering the standard
// encoding gives.
func TestRequestIDEncodingIsLoweredStandard(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(11, 12))
	for range 1000 {
		var b [10]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		want := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
		if got := requestIDEncoding.EncodeToString(b[:]); got != want {
			t.Fatalf("%x: %s, want %s", b, got, want)
		}
	}
	if id := NewRequestID(); len(id) != 20 || !strings.HasPrefix(id, "req_") || strings.ToLower(id) != id {
		t.Errorf("NewRequestID() = %q", id)
	}
}
