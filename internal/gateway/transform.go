package gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/detect"
)

// Action is what happens to a finding's text before it leaves.
type Action string

const (
	Allow    Action = "allow"    // sent as it is
	Redact   Action = "redact"   // replaced by its class: [EMAIL]
	Mask     Action = "mask"     // letters and digits starred but the last four: ************1111
	Hash     Action = "hash"     // a keyed digest, equal for equal values: [EMAIL:3f9a1c2b7d4e]
	Tokenize Action = "tokenize" // a reversible token: <EMAIL_1>
	Block    Action = "block"    // the call does not happen
)

// ParseAction reads an action's name.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case Allow, Redact, Mask, Hash, Tokenize, Block:
		return a, nil
	}
	return "", fmt.Errorf("gateway: unknown action %q (want allow, redact, mask, hash, tokenize or block)", s)
}

// ErrBlocked is returned when a finding's action is Block.
var ErrBlocked = errors.New("gateway: blocked")

// BlockedError names what was blocked, never its value.
type BlockedError struct {
	Type       string
	Start, End int
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("gateway: %s at %d–%d may not leave", e.Type, e.Start, e.End)
}

func (e *BlockedError) Unwrap() error { return ErrBlocked }

// Applied records what was done to one finding; it holds no value.
type Applied struct {
	detect.Finding
	Action Action `json:"action"`
}

// Transformer applies actions to findings.
type Transformer struct {
	// Tokens issues and restores tokens; needed for Tokenize.
	Tokens *Tokenizer
	// HashKey keys the digests of Hash, so equal values hash alike only
	// under one key (one run or project) and cannot be looked up in a
	// table of common values.
	HashKey []byte
}

// Apply rewrites text, finding by finding (findings as detect.Scan returns
// them: sorted, not overlapping, code-point offsets), with the action decide
// picks for each. It fails closed: on a Block, or findings that do not fit
// the text, it returns an error and no text.
func (tr *Transformer) Apply(text string, findings []detect.Finding, decide func(detect.Finding) Action) (string, []Applied, error) {
	if tr.Tokens != nil {
		tr.Tokens.Reserve(text)
	}
	applied := make([]Applied, 0, len(findings))
	var b strings.Builder
	b.Grow(len(text))
	runeIdx, byteIdx := 0, 0
	advance := func(to int) (int, error) {
		for runeIdx < to {
			if byteIdx >= len(text) {
				return 0, fmt.Errorf("gateway: finding ends at %d, past the text", to)
			}
			_, size := utf8.DecodeRuneInString(text[byteIdx:])
			byteIdx += size
			runeIdx++
		}
		return byteIdx, nil
	}
	last := 0
	for _, f := range findings {
		if f.Start < runeIdx || f.End <= f.Start {
			return "", nil, fmt.Errorf("gateway: findings out of order or empty at %d–%d", f.Start, f.End)
		}
		start, err := advance(f.Start)
		if err != nil {
			return "", nil, err
		}
		end, err := advance(f.End)
		if err != nil {
			return "", nil, err
		}
		action := decide(f)
		replacement, err := tr.replace(f, action, text[start:end])
		if err != nil {
			return "", nil, err
		}
		b.WriteString(text[last:start])
		b.WriteString(replacement)
		last = end
		applied = append(applied, Applied{Finding: f, Action: action})
	}
	b.WriteString(text[last:])
	return b.String(), applied, nil
}

func (tr *Transformer) replace(f detect.Finding, action Action, value string) (string, error) {
	switch action {
	case Allow:
		return value, nil
	case Redact:
		return "[" + tokenPrefix(f.Type) + "]", nil
	case Mask:
		return mask(value), nil
	case Hash:
		if len(tr.HashKey) == 0 {
			return "", errors.New("gateway: hash needs a key")
		}
		mac := hmac.New(sha256.New, tr.HashKey)
		mac.Write([]byte(f.Type + "\x00" + value))
		return "[" + tokenPrefix(f.Type) + ":" + hex.EncodeToString(mac.Sum(nil)[:6]) + "]", nil
	case Tokenize:
		if tr.Tokens == nil {
			return "", errors.New("gateway: tokenize needs a tokenizer")
		}
		return tr.Tokens.Token(f.Type, value), nil
	case Block:
		return "", &BlockedError{Type: f.Type, Start: f.Start, End: f.End}
	}
	return "", fmt.Errorf("gateway: unknown action %q", action)
}

// mask stars every letter and digit but the last four, keeping separators,
// so a card stays recognisable as a card without being usable.
func mask(value string) string {
	total := 0
	for _, r := range value {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			total++
		}
	}
	keep := 4
	if total <= 8 {
		keep = 0 // short values would be mostly revealed
	}
	var b strings.Builder
	seen := 0
	for _, r := range value {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			seen++
			if seen <= total-keep {
				b.WriteByte('*')
				continue
			}
		}
		b.WriteRune(r)
	}
	return b.String()
}
