package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/connectors"
)

// TestDigestMessagesIsMarshal checks that the streamed digest is the
// SHA-256 of json.Marshal's bytes, escapes and all, so records written
// before and after it was streamed compare.
func TestDigestMessagesIsMarshal(t *testing.T) {
	cases := [][]connectors.Message{
		nil,
		{},
		{{Role: connectors.User, Content: ""}},
		{{Role: connectors.System, Content: "Summarise.\n"}, {Role: connectors.User, Content: "a <b> & \"c\"\n\t\u2028\u2029 \x00 \xff é 😀"}},
		{{Role: connectors.User, Content: strings.Repeat("line ending in a newline\n", 400)}},
	}
	for i, msgs := range cases {
		b, err := json.Marshal(msgs)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if got, want := digestMessages(msgs), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("case %d: digest %s, want %s", i, got, want)
		}
	}
}
