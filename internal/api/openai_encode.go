package api

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/moatproject/moat/internal/jsontext"
)

// writeCompletion answers a chat completion with what writeJSON writes for
// it, byte for byte, but encoded directly rather than by reflection: the
// answer is the one body every call encodes. A completion the direct
// encoder does not cover (logprobs other than null) goes to writeJSON.
func writeCompletion(w http.ResponseWriter, c chatCompletion) {
	buf := payloadBuffers.Get().(*[]byte)
	b, ok := c.appendJSON((*buf)[:0])
	if !ok {
		writeJSON(w, http.StatusOK, c)
	} else {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b) // copied into the connection's buffer or sent
	}
	*buf = b
	releasePayload(buf)
}

// payloadBuffers hold a request's body or an answer for the time of one
// request.
var payloadBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxPooledPayload bounds the buffers kept for reuse.
const maxPooledPayload = 256 << 10

// releasePayload clears buf and returns it to the pool: no payload
// outlives its request there. All of its capacity is cleared: a reader may
// use the whole of the space it is given as scratch.
func releasePayload(buf *[]byte) {
	b := *buf
	clear(b[:cap(b)])
	if cap(b) <= maxPooledPayload {
		*buf = b[:0]
		payloadBuffers.Put(buf)
	}
}

// appendJSON appends c as a json.Encoder with SetEscapeHTML(false) writes
// it, newline included; false if c holds what it does not write (logprobs
// other than null).
func (c chatCompletion) appendJSON(b []byte) ([]byte, bool) {
	size := 256
	for _, ch := range c.Choices {
		if ch.Logprobs != nil && !bytes.Equal(ch.Logprobs, jsonNull) {
			return nil, false
		}
		size += len(ch.Message.Content) + len(ch.Message.Content)/8
	}
	b = slices.Grow(b, size)
	b = append(b, `{"id":`...)
	b = jsontext.AppendString(b, c.ID, false)
	b = append(b, `,"object":`...)
	b = jsontext.AppendString(b, c.Object, false)
	b = append(b, `,"created":`...)
	b = strconv.AppendInt(b, c.Created, 10)
	b = append(b, `,"model":`...)
	b = jsontext.AppendString(b, c.Model, false)
	b = append(b, `,"choices":`...)
	if c.Choices == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, ch := range c.Choices {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"index":`...)
			b = strconv.AppendInt(b, int64(ch.Index), 10)
			b = append(b, `,"message":{"role":`...)
			b = jsontext.AppendString(b, ch.Message.Role, false)
			b = append(b, `,"content":`...)
			b = jsontext.AppendString(b, ch.Message.Content, false)
			b = append(b, `,"refusal":`...)
			if ch.Message.Refusal == nil {
				b = append(b, "null"...)
			} else {
				b = jsontext.AppendString(b, *ch.Message.Refusal, false)
			}
			b = append(b, `},"finish_reason":`...)
			b = jsontext.AppendString(b, ch.FinishReason, false)
			b = append(b, `,"logprobs":null}`...)
		}
		b = append(b, ']')
	}
	b = append(b, `,"usage":`...)
	if u := c.Usage; u == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"prompt_tokens":`...)
		b = strconv.AppendInt(b, int64(u.PromptTokens), 10)
		b = append(b, `,"completion_tokens":`...)
		b = strconv.AppendInt(b, int64(u.CompletionTokens), 10)
		b = append(b, `,"total_tokens":`...)
		b = strconv.AppendInt(b, int64(u.TotalTokens), 10)
		b = append(b, '}')
	}
	return append(b, "}\n"...), true
}
