package jsontext

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// marshal is what AppendString must give: encoding/json's own quoting.
func marshal(t testing.TB, s string, escapeHTML bool) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func check(t testing.TB, s string) {
	t.Helper()
	for _, html := range []bool{false, true} {
		if got, want := AppendString([]byte("x"), s, html), append([]byte("x"), marshal(t, s, html)...); !bytes.Equal(got, want) {
			t.Fatalf("AppendString(%q, html %v) = %s, want %s", s, html, got, want)
		}
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain ascii text that runs on for more than eight bytes",
		`quote " backslash \ <tag> & amp`, "ctrl \x00\x01\b\f\n\r\t\x1f\x7f",
		"invalid \xff\xfe bytes \xc3", "line sep \u2028 para \u2029", "é 日本 🙂",
		"0123456<", "01234567<89", "abcdefg\x80abcdefgh",
	} {
		check(t, s)
	}
	// Random strings over the bytes that matter, at every alignment.
	alphabet := []byte("ab \"\\<>&\n\x01\x7f\xc3\xa9\xe2\x80\xa8\xff")
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		check(t, string(b))
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("quote \" <b> \xff \u2028 plain text")
	f.Fuzz(func(t *testing.T, s string) { check(t, s) })
}
