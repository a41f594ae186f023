package workflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// DecodeJSON reads a JSON document into the plain values expressions and
// templates work on: map[string]any, []any, string, bool, nil, int64 for
// integral numbers that fit, float64 for the others. Documents larger than
// 4 MiB or nested deeper than 64 levels are refused.
func DecodeJSON(b []byte) (any, error) {
	return decodeJSON(b, true)
}

func decodeJSON(b []byte, bounded bool) (any, error) {
	if bounded && len(b) > MaxJSONBytes {
		return nil, fmt.Errorf("workflow: JSON document is %d bytes; the limit is %d", len(b), MaxJSONBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("workflow: invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("workflow: invalid JSON: unexpected data after the value")
	}
	maxDepth := MaxJSONDepth
	if !bounded {
		maxDepth = 10_000
	}
	return normalizeJSON(v, 0, maxDepth)
}

func normalizeJSON(v any, depth, maxDepth int) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		if depth >= maxDepth {
			return nil, fmt.Errorf("workflow: JSON is nested more than %d levels deep", maxDepth)
		}
		for k, e := range x {
			n, err := normalizeJSON(e, depth+1, maxDepth)
			if err != nil {
				return nil, err
			}
			x[k] = n
		}
		return x, nil
	case []any:
		if depth >= maxDepth {
			return nil, fmt.Errorf("workflow: JSON is nested more than %d levels deep", maxDepth)
		}
		for i, e := range x {
			n, err := normalizeJSON(e, depth+1, maxDepth)
			if err != nil {
				return nil, err
			}
			x[i] = n
		}
		return x, nil
	case json.Number:
		return parseNumber(string(x))
	}
	return v, nil
}

func parseNumber(s string) (any, error) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("workflow: number %s is out of range", truncate(s, 40))
	}
	return normalizeFloat(f), nil
}

// normalizeFloat returns f as an int64 when it is integral and fits.
func normalizeFloat(f float64) any {
	if f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63 {
		return int64(f)
	}
	return f
}
