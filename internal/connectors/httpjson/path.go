package httpjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// parsePath splits a dotted path such as "choices.0.text" into its
// segments. Segments may not be empty.
func parsePath(p string) ([]string, error) {
	if strings.TrimSpace(p) == "" {
		return nil, errors.New("the response path is empty")
	}
	segs := strings.Split(p, ".")
	for i, s := range segs {
		if s == "" {
			return nil, fmt.Errorf("the response path %q has an empty segment at %d", truncate(p), i)
		}
	}
	return segs, nil
}

// errPath is a path that does not lead to a value.
var errPath = errors.New("path not found")

// extract follows path into the JSON document data and returns the value
// there as text: a string as it is, a number or boolean as written, an
// object or array as compact JSON. A missing value or null is errPath; a
// document that is not JSON is another error.
func extract(data []byte, path []string) (string, error) {
	if !json.Valid(data) {
		return "", errors.New("the answer is not JSON")
	}
	cur := json.RawMessage(bytes.TrimSpace(data))
	for i, seg := range path {
		if len(cur) == 0 {
			return "", errPath
		}
		switch cur[0] {
		case '{':
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(cur, &obj); err != nil {
				return "", err
			}
			next, ok := obj[seg]
			if !ok {
				return "", fmt.Errorf("%w: no key %q at %s", errPath, truncate(seg), where(path[:i]))
			}
			cur = next
		case '[':
			var arr []json.RawMessage
			if err := json.Unmarshal(cur, &arr); err != nil {
				return "", err
			}
			idx, err := strconv.Atoi(seg)
			if err != nil || idx < 0 || idx >= len(arr) || strconv.Itoa(idx) != seg {
				return "", fmt.Errorf("%w: no index %q in an array of %d at %s", errPath, truncate(seg), len(arr), where(path[:i]))
			}
			cur = arr[idx]
		default:
			return "", fmt.Errorf("%w: %s is not an object or array", errPath, where(path[:i]))
		}
		cur = bytes.TrimSpace(cur)
	}
	switch {
	case len(cur) == 0 || string(cur) == "null":
		return "", fmt.Errorf("%w: %s is null", errPath, where(path))
	case cur[0] == '"':
		var s string
		if err := json.Unmarshal(cur, &s); err != nil {
			return "", err
		}
		return s, nil
	case cur[0] == '{' || cur[0] == '[':
		var buf bytes.Buffer
		if err := json.Compact(&buf, cur); err != nil {
			return "", err
		}
		return buf.String(), nil
	default: // number, true, false: as written
		return string(cur), nil
	}
}

func where(path []string) string {
	if len(path) == 0 {
		return "the top level"
	}
	return truncate(strings.Join(path, "."))
}
