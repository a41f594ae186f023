package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/moatproject/moat/internal/jsontext"
)

// MaxAnswerBytes bounds the body of a chat completion read from an
// upstream: an answer is refused rather than held in memory past it. The
// gateway refuses answers over 1 MiB of text; this leaves room for JSON
// escaping and the envelope.
const MaxAnswerBytes = 8 << 20

// readAnswer reads and decodes a successful chat completion. The SDK would
// decode it with encoding/json, about a third of the connector's CPU for a
// 2 KB answer; the token reader does it in one pass.
func readAnswer(res *http.Response) (chatCompletion, error) {
	defer res.Body.Close()
	mediaType, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if !strings.Contains(mediaType, "application/json") && !strings.HasSuffix(mediaType, "+json") {
		return chatCompletion{}, fmt.Errorf("answer is not JSON (content type %q)", truncate(mediaType, 64))
	}
	if n := res.ContentLength; n > MaxAnswerBytes {
		return chatCompletion{}, fmt.Errorf("answer is %d bytes, more than %d", n, MaxAnswerBytes)
	}
	// The body is read into a pooled buffer, cleared before it goes back:
	// the decoded answer holds copies, and no answer outlives its call in
	// the pool. Read fresh, it was the connector's largest allocation.
	buf := answerBuffers.Get().(*[]byte)
	body := bytes.NewBuffer((*buf)[:0])
	if n := res.ContentLength; n >= 0 {
		// One more, to see the end without growing; no more than 64 KiB
		// on the upstream's word alone.
		body.Grow(int(min(n+1, 64<<10)))
	}
	_, err := body.ReadFrom(io.LimitReader(res.Body, MaxAnswerBytes+1))
	data := body.Bytes()
	var out chatCompletion
	switch {
	case err != nil:
		// Wrapped for the caller to classify, not to show: it may be a
		// transport error, which the gateway retries.
		err = fmt.Errorf("cannot read the answer: %w", err)
	case len(data) > MaxAnswerBytes:
		err = fmt.Errorf("answer is more than %d bytes", MaxAnswerBytes)
	default:
		out, err = decodeCompletion(data)
	}
	clear(data)
	if cap(data) <= maxPooledAnswer {
		*buf = data[:0]
		answerBuffers.Put(buf)
	}
	return out, err
}

var answerBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxPooledAnswer bounds the buffers kept for reuse.
const maxPooledAnswer = 256 << 10

// errNotCompletion is an answer that is JSON but not a chat completion.
var errNotCompletion = errors.New("answer is not a chat completion")

// decodeCompletion reads what Moat uses of a chat completion. It accepts
// less than encoding/json would: a field name that differs from a known one
// only in case, or a known field given twice, is refused, because parsers
// disagree on which one counts; anything it accepts, encoding/json decodes
// to the same value (FuzzDecodeCompletion).
func decodeCompletion(data []byte) (chatCompletion, error) {
	var out chatCompletion
	d := answerDecoder{tokens: jsontext.NewTokens(data)}
	err := d.object(func(name []byte) (bool, error) {
		switch string(name) {
		case "model":
			return true, d.str(&out.Model)
		case "choices":
			return true, d.choices(&out)
		case "usage":
			return true, d.object(func(name []byte) (bool, error) {
				switch string(name) {
				case "prompt_tokens":
					return true, d.integer(&out.Usage.PromptTokens)
				case "completion_tokens":
					return true, d.integer(&out.Usage.CompletionTokens)
				}
				return false, nil
			}, "prompt_tokens", "completion_tokens")
		}
		return false, nil
	}, "model", "choices", "usage")
	if err != nil {
		return chatCompletion{}, err
	}
	if _, err := d.tokens.Token(); err != io.EOF {
		return chatCompletion{}, errors.New("answer is not valid JSON: data after the object")
	}
	return out, nil
}

func (d *answerDecoder) choices(out *chatCompletion) error {
	tok, err := d.token()
	if err != nil || tok == nil {
		return err
	}
	if tok != json.Delim('[') {
		return errNotCompletion
	}
	out.Choices = make([]choice, 0, 1) // [] is an empty list, not none
	for d.tokens.More() {
		out.Choices = append(out.Choices, choice{})
		c := &out.Choices[len(out.Choices)-1]
		err := d.object(func(name []byte) (bool, error) {
			switch string(name) {
			case "finish_reason":
				return true, d.str(&c.FinishReason)
			case "message":
				return true, d.object(func(name []byte) (bool, error) {
					switch string(name) {
					case "content":
						return true, d.str(&c.Message.Content)
					case "refusal":
						return true, d.str(&c.Message.Refusal)
					}
					return false, nil
				}, "content", "refusal")
			}
			return false, nil
		}, "finish_reason", "message")
		if err != nil {
			return err
		}
	}
	_, err = d.token() // ']'
	return err
}

// answerDecoder walks an answer's tokens once.
type answerDecoder struct {
	tokens *jsontext.Tokens
}

func (d *answerDecoder) token() (json.Token, error) {
	tok, err := d.tokens.Token()
	if err != nil {
		return nil, fmt.Errorf("answer is not valid JSON: %w", err)
	}
	return tok, nil
}

// object reads an object, or null, which leaves the value as it is, as
// encoding/json does. field reads the value of a known name (the name's
// bytes are the answer's own, not to be kept); the values of other names
// are skipped.
func (d *answerDecoder) object(field func(name []byte) (bool, error), known ...string) error {
	tok, err := d.token()
	if err != nil || tok == nil {
		return err
	}
	if tok != json.Delim('{') {
		return errNotCompletion
	}
	var seen uint8 // a bit per known name; no object has more than eight
	for {
		name, more, err := d.tokens.Name()
		if err != nil {
			return fmt.Errorf("answer is not valid JSON: %w", err)
		}
		if !more {
			return nil
		}
		for i, k := range known {
			switch {
			case string(name) == k && seen&(1<<i) != 0:
				return fmt.Errorf("answer gives %q twice", k)
			case string(name) == k:
				seen |= 1 << i
			case bytes.EqualFold(name, []byte(k)):
				return fmt.Errorf("answer has a field %q where %q was expected", truncate(string(name), 32), k)
			}
		}
		ok, err := field(name)
		if err != nil {
			return err
		}
		if !ok {
			if _, err := d.tokens.Raw(); err != nil {
				return fmt.Errorf("answer is not valid JSON: %w", err)
			}
		}
	}
}

// str reads a string, or null, which leaves *s as it is.
func (d *answerDecoder) str(s *string) error {
	tok, err := d.token()
	if err != nil || tok == nil {
		return err
	}
	v, ok := tok.(string)
	if !ok {
		return errNotCompletion
	}
	*s = v
	return nil
}

// integer reads a whole number, or null, which leaves *n as it is. As with
// encoding/json, 1.0 or 1e3 is not a whole number.
func (d *answerDecoder) integer(n *int) error {
	raw, err := d.tokens.Raw()
	if err != nil {
		return fmt.Errorf("answer is not valid JSON: %w", err)
	}
	if string(raw) == "null" {
		return nil
	}
	v, err := strconv.ParseInt(string(raw), 10, strconv.IntSize)
	if err != nil {
		return errNotCompletion
	}
	*n = int(v)
	return nil
}
