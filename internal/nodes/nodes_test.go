package nodes

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestHTTPRequestRefusesLiteralCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		with map[string]any
		want []string // pointers with a problem
	}{
		{"clean", map[string]any{"url": "https://api.example.com/x", "headers": map[string]any{"Accept": "application/json"}}, nil},
		{"authorization header", map[string]any{"url": "https://x.test", "headers": map[string]any{"Authorization": "Bearer abc"}}, []string{"/headers/Authorization"}},
		{"api key header any case", map[string]any{"url": "https://x.test", "headers": map[string]any{"x-API-key": "k"}}, []string{"/headers/x-API-key"}},
		{"templated header is allowed", map[string]any{"url": "https://x.test", "headers": map[string]any{"Authorization": "Bearer {{ input.token }}"}}, nil},
		{"userinfo", map[string]any{"url": "https://user:pw@x.test/"}, []string{"/url"}},
		{"token in url query", map[string]any{"url": "https://x.test/?access_token=abc"}, []string{"/url"}},
		{"token in query map", map[string]any{"url": "https://x.test/", "query": map[string]any{"api_key": "abc", "page": "2"}}, []string{"/query/api_key"}},
	} {
		problems := HTTPRequest{}.Check(tc.with)
		var got []string
		for _, p := range problems {
			got = append(got, p.Pointer)
			if !strings.Contains(p.Message, "moat secret set") {
				t.Errorf("%s: message %q does not say what to do", tc.name, p.Message)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: problems at %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestEgressPolicy(t *testing.T) {
	t.Parallel()
	deny := EgressPolicy{}
	allowPrivate := EgressPolicy{AllowPrivate: true}
	allowOne := EgressPolicy{Allow: []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")}}
	for _, tc := range []struct {
		addr                   string
		deny, private, allowed bool
	}{
		{"93.184.216.34", true, true, true},
		{"127.0.0.1", false, true, false},
		{"::1", false, true, false},
		{"10.1.2.3", false, true, true},
		{"10.9.9.9", false, true, false},
		{"169.254.169.254", false, true, false}, // cloud metadata
		{"100.64.0.1", false, true, false},
		{"::ffff:127.0.0.1", false, true, false},
		{"0.0.0.0", false, false, false},
	} {
		a := netip.MustParseAddr(tc.addr)
		if deny.permits(a) != tc.deny || allowPrivate.permits(a) != tc.private || allowOne.permits(a) != tc.allowed {
			t.Errorf("%s: default %v private %v listed %v", tc.addr, deny.permits(a), allowPrivate.permits(a), allowOne.permits(a))
		}
	}
}

func TestWaitUntil(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at, err := Wait{}.Until(map[string]any{"duration": "1d2h"}, now)
	if err != nil || !at.Equal(now.Add(26*time.Hour)) {
		t.Fatalf("duration: %v %v", at, err)
	}
	at, err = Wait{}.Until(map[string]any{"until": "2026-01-02T00:00:00Z"}, now)
	if err != nil || !at.Equal(now.Add(24*time.Hour)) {
		t.Fatalf("until: %v %v", at, err)
	}
	for _, with := range []map[string]any{
		{"duration": "soon"}, {"duration": int64(5)}, {"until": "tomorrow"}, {"duration": "400d"}, {},
	} {
		if _, err := (Wait{}).Until(with, now); err == nil {
			t.Errorf("%v: want an error", with)
		}
	}
}

func TestEveryNodeHasASchemaAndDescription(t *testing.T) {
	t.Parallel()
	r := Builtins()
	for _, name := range r.Names() {
		n, _ := r.Node(name)
		if n.Description() == "" || n.Schema()["type"] != "object" {
			t.Errorf("%s: description %q schema %v", name, n.Description(), n.Schema())
		}
		if _, ok := n.(Executor); !ok && n.Kind(nil) != Timer && n.Kind(nil) != Human {
			t.Errorf("%s: neither executable nor a wait", name)
		}
	}
}
