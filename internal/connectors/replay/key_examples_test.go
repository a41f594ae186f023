package replay

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/moatproject/moat/internal/connectors"
)

func TestKeyCoversExamples(t *testing.T) {
	t.Parallel()
	// Cassettes recorded before examples were keyed hold: a request
	// without examples keys the JSON it keyed then.
	const before = `{"model":"m","messages":[{"role":"user","content":"q"}],"schema":null,"labels":["a","b"],"maxTokens":0,"temperature":null}`
	sum := sha256.Sum256([]byte(before))
	plain := connectors.Request{Model: "m", Messages: []connectors.Message{{Role: connectors.User, Content: "q"}}, Labels: []string{"a", "b"}}
	k0, err := Key(plain)
	if err != nil {
		t.Fatal(err)
	}
	if k0 != hex.EncodeToString(sum[:]) {
		t.Error("the key of a request without examples changed")
	}
	withA := plain
	withA.Examples = []connectors.Example{{Text: "t", Label: "a"}}
	withB := plain
	withB.Examples = []connectors.Example{{Text: "t", Label: "b"}}
	ka, _ := Key(withA)
	kb, _ := Key(withB)
	if ka == k0 || kb == k0 || ka == kb {
		t.Error("examples do not change the key")
	}
	empty := plain
	empty.Examples = []connectors.Example{}
	if ke, _ := Key(empty); ke != k0 {
		t.Error("an empty example list changed the key of a request without examples")
	}
}
