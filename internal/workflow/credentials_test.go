package workflow

import (
	"strings"
	"testing"
)

func TestDetectCredential(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		kind string // "" when nothing should be found
	}{
		{"AKIAIOSFODNN7EXAMPLE", "AWS access key id"},
		{"key=ASIAY34FZKBOKMUTVV7A;", "AWS access key id"},
		{"AKIAIOSFODNN7EXAMPL", ""}, // one short
		{"ghp_abcdefghijklmnopqrstuvwxyz0123456789", "GitHub token"},
		{"token gho_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "GitHub token"},
		{"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123", "GitHub token"},
		{"ghp_short", ""},
		{"sk-ant-api03-abcDEF123456789012345678901234567890", "Anthropic API key"},
		{"sk-proj-abcDEF1234567890abcdefXYZ", "OpenAI API key"},
		{"sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL", "OpenAI API key"},
		{"use sk-learn-and-friends-for-classification", ""},
		{"xoxb-123456789012-1234567890123-abcdefghijklmnopqrstuvwx", "Slack token"},
		{"xoxp-not-a-token-at-all", ""},
		{"sk_live_4eC39HqLyjWDarjtT1zdp7dc", "Stripe secret key"},
		{"rk_live_51H8abcdefghijklmnop", "Stripe secret key"},
		{"sk_test_4eC39HqLyjWDarjtT1zdp7dc", ""},
		{"AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", "Google API key"},
		{"-----BEGIN RSA PRIVATE KEY-----\nMIIE...", "private key"},
		{"-----BEGIN PRIVATE KEY-----", "private key"},
		{"-----BEGIN PUBLIC KEY-----", ""},
		{"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "JSON Web Token"},
		{"just an ordinary sentence about keys and tokens", ""},
		{"https://example.com/path?q=1", ""},
		{"", ""},
	}
	for _, tt := range tests {
		kind, found := detectCredential(tt.in)
		if found != (tt.kind != "") || kind != tt.kind {
			t.Errorf("detectCredential(%q) = %q, %v; want %q", tt.in, kind, found, tt.kind)
		}
	}
}

func TestLiteralText(t *testing.T) {
	t.Parallel()
	if got := literalText("a {{ 'AKIAIOSFODNN7EXAMPLE' }} b"); got != "a   b " {
		t.Errorf("literalText = %q", got)
	}
	if got := literalText("no {{ end"); got != "no {{ end" {
		t.Errorf("literalText = %q", got)
	}
}

func TestProblemsDoNotRepeatCredentials(t *testing.T) {
	t.Parallel()
	const key = "sk-proj-abcDEF1234567890abcdefXYZ"
	ps := loadProblems(t, "wf.yaml", hdr+"steps:\n  - id: a\n    uses: transform\n    if: input.k == '"+key+"' +\n")
	if len(ps) != 2 {
		t.Fatalf("want a syntax error and a credential, got %v", ps)
	}
	for _, p := range ps {
		if strings.Contains(p.Message, key) || strings.Contains(p.Message, "sk-proj-abc") {
			t.Errorf("problem repeats the credential: %s", p)
		}
	}
}
