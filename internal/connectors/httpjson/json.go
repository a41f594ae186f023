package httpjson

import "encoding/json"

// jsonOf encodes a template given as a Go value (a map from a YAML or
// JSON settings file, json.RawMessage, or a struct).
func jsonOf(v any) ([]byte, error) {
	switch t := v.(type) {
	case json.RawMessage:
		return t, nil
	case []byte:
		return t, nil
	}
	return json.Marshal(v)
}
