package workflow

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"2d", 48 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"1.5d", 36 * time.Hour, true},
		{"0.1d", 144 * time.Minute, true},
		{"-2d", -48 * time.Hour, true},
		{"+1d", 24 * time.Hour, true},
		{"1h30m", 90 * time.Minute, true},
		{"90s", 90 * time.Second, true},
		{"0", 0, true},
		{"250ms", 250 * time.Millisecond, true},
		{"", 0, false},
		{"2", 0, false},
		{"d", 0, false},
		{"2x", 0, false},
		{"2dd", 0, false},
		{"d2", 0, false},
		{"-", 0, false},
		{"1.2.3d", 0, false},
		{"200000d", 0, false}, // beyond 292 years
		{"106751d23h47m16s854775807ns", 1<<63 - 1, true},
		{"106751d23h47m16s854775808ns", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	t.Parallel()
	var d Duration
	if err := d.UnmarshalJSON([]byte(`"2d"`)); err != nil || time.Duration(d) != 48*time.Hour {
		t.Fatalf("%v %v", d, err)
	}
	b, err := d.MarshalJSON()
	if err != nil || string(b) != `"48h0m0s"` {
		t.Fatalf("%s %v", b, err)
	}
	if err := d.UnmarshalJSON([]byte(`5`)); err == nil {
		t.Fatal("a number was accepted")
	}
}
