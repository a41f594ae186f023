package governance

import (
	"strings"
	"testing"
)

func TestLiteralHost(t *testing.T) {
	t.Parallel()
	tests := []struct{ url, want string }{
		{"https://hooks.example.com/notify", "hooks.example.com"},
		{"https://api.example.com:8443/v1/{{ input.id }}", "api.example.com"},
		{"https://api.example.com?q={{ input.q }}", "api.example.com"},
		{"http://[::1]:8080/x", "::1"},
		{"https://{{ input.host }}/x", ""},
		{"https://api.{{ input.tenant }}.example.com/", ""},
		{"https://api.example.com{{ input.path }}", ""},
		{"{{ input.url }}", ""},
		{"not a url", ""},
		{"://nohost/", ""},
		{"https://a%2eexample.com/", ""},
		{"A://a%ea", ""},
		{"http://[fe80::1%25en0]:8080/x", ""},
	}
	for _, tt := range tests {
		if got := literalHost(tt.url); got != tt.want {
			t.Errorf("literalHost(%q) = %q, want %q", tt.url, got, tt.want)
		}
	}
}

// FuzzLiteralHost: a host is only ever one written out in full before any
// template.
func FuzzLiteralHost(f *testing.F) {
	for _, s := range []string{"https://a.example/x", "https://a.{{ b }}/", "http://[::1]:80/{{x}}", "{{ u }}", "https://user@h.example/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		host := literalHost(raw)
		if host == "" {
			return
		}
		prefix, _, _ := strings.Cut(raw, "{{")
		if !strings.Contains(prefix, host) || strings.ContainsAny(host, "/?#{}") {
			t.Fatalf("literalHost(%q) = %q, which is not written out before any template", raw, host)
		}
	})
}
