package workflow

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want any
		err  string
	}{
		{`{"n": 1, "f": 1.5, "e": 1e3, "i": 2.0, "big": 1e300, "neg": -3}`,
			map[string]any{"n": int64(1), "f": 1.5, "e": int64(1000), "i": int64(2), "big": 1e300, "neg": int64(-3)}, ""},
		{`[null, true, "s", 9223372036854775807, 9223372036854775808]`,
			[]any{nil, true, "s", int64(9223372036854775807), 9223372036854775808.0}, ""},
		{`1e400`, nil, "out of range"},
		{`{"a": 1} x`, nil, "unexpected data"},
		{`{"a": `, nil, "invalid JSON"},
		{strings.Repeat("[", 65) + strings.Repeat("]", 65), nil, "nested more than 64"},
		{strings.Repeat("[", 64) + strings.Repeat("]", 64), nil, ""},
		{`"` + strings.Repeat("x", MaxJSONBytes) + `"`, nil, "the limit is"},
	}
	for _, tt := range tests {
		got, err := DecodeJSON([]byte(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%.40s: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%.40s: %v", tt.in, err)
			continue
		}
		if tt.want != nil && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%.40s: got %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestUnmarshalStrict(t *testing.T) {
	t.Parallel()
	var s Schedule
	if err := json.Unmarshal([]byte(`"@hourly"`), &s); err != nil || s.Cron != "@hourly" {
		t.Fatalf("%+v %v", s, err)
	}
	if err := json.Unmarshal([]byte(`{"cron": "@hourly", "timezone": "UTC"}`), &s); err != nil || s.Timezone != "UTC" {
		t.Fatalf("%+v %v", s, err)
	}
	if err := json.Unmarshal([]byte(`{"cron": "@hourly", "tz": "UTC"}`), &s); err == nil {
		t.Fatal("unknown field accepted")
	}
	if err := unmarshalStrict([]byte(`{} {}`), &s); err == nil {
		t.Fatal("trailing data accepted")
	}
}
