package workflow

import (
	"regexp"
	"strings"
)

// credentialPattern recognises one kind of literal credential. prefixes are
// cheap substrings that must occur before the pattern is tried.
type credentialPattern struct {
	kind     string
	prefixes []string
	re       *regexp.Regexp
	mixed    bool // the match must hold a digit and a letter (not a word-like name)
}

// credentialPatterns is a small first version of the secret detector; the
// full one (internal/detect) replaces it.
var credentialPatterns = []credentialPattern{
	{kind: "AWS access key id", prefixes: []string{"AKIA", "ASIA"},
		re: regexp.MustCompile(`\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`)},
	{kind: "GitHub token", prefixes: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_"},
		re: regexp.MustCompile(`\bgh[pousr]_[A-Za-z0-9]{36,255}\b`)},
	{kind: "GitHub token", prefixes: []string{"github_pat_"},
		re: regexp.MustCompile(`\bgithub_pat_[A-Za-z0-9_]{22,255}\b`)},
	{kind: "Anthropic API key", prefixes: []string{"sk-ant-"},
		re: regexp.MustCompile(`\bsk-ant-[A-Za-z0-9_-]{20,}`), mixed: true},
	{kind: "OpenAI API key", prefixes: []string{"sk-"},
		re: regexp.MustCompile(`\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}`), mixed: true},
	{kind: "Slack token", prefixes: []string{"xox"},
		re: regexp.MustCompile(`\bxox[abpors]-[A-Za-z0-9-]{10,}`), mixed: true},
	{kind: "Stripe secret key", prefixes: []string{"sk_live_", "rk_live_"},
		re: regexp.MustCompile(`\b[sr]k_live_[A-Za-z0-9]{16,}`)},
	{kind: "Google API key", prefixes: []string{"AIza"},
		re: regexp.MustCompile(`\bAIza[0-9A-Za-z_-]{35}`)},
	{kind: "private key", prefixes: []string{"PRIVATE KEY-----"},
		re: regexp.MustCompile(`-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----`)},
	{kind: "JSON Web Token", prefixes: []string{"eyJ"},
		re: regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*`)},
}

// detectCredential reports whether s contains something that looks like a
// credential, and which kind. It is a pure function.
func detectCredential(s string) (kind string, found bool) {
	if len(s) < 16 {
		return "", false
	}
	for _, p := range credentialPatterns {
		hit := false
		for _, pre := range p.prefixes {
			if strings.Contains(s, pre) {
				hit = true
				break
			}
		}
		if !hit {
			continue
		}
		for _, m := range p.re.FindAllString(s, 8) {
			if !p.mixed || hasDigitAndLetter(m[strings.IndexAny(m, "-_")+1:]) {
				return p.kind, true
			}
		}
	}
	return "", false
}

func hasDigitAndLetter(s string) bool {
	var digit, letter bool
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letter = true
		}
	}
	return digit && letter
}

// literalText returns s without its {{ }} expressions: the text an author
// wrote literally.
func literalText(s string) string {
	segs, err := parseTemplate(s)
	if err != nil || segs == nil {
		return s
	}
	var b strings.Builder
	for _, sg := range segs {
		if !sg.isExpr {
			b.WriteString(sg.text)
			b.WriteByte(' ')
		}
	}
	return b.String()
}

func credentialMessage(kind string) string {
	return "looks like a credential (" + kind + "); store it with `moat secret set` and reference it by name, never in a definition: `credential: {secret: NAME}` on an http.request step, or a connector's credential"
}

// redactCredentials replaces whatever looks like a credential in s, so that
// a problem message quoting the source never repeats a secret.
func redactCredentials(s string) string {
	if _, found := detectCredential(s); !found {
		return s
	}
	for _, p := range credentialPatterns {
		s = p.re.ReplaceAllString(s, "[redacted]")
	}
	return s
}

// credentialHeaders are headers that carry credentials: a definition or a
// stored resource must never hold a literal value for them.
var credentialHeaders = map[string]bool{
	"authorization": true, "proxy-authorization": true, "cookie": true, "x-api-key": true,
	"api-key": true, "x-auth-token": true, "x-access-token": true, "private-token": true,
}

// credentialParams are query parameters that carry credentials by convention.
var credentialParams = map[string]bool{
	"api_key": true, "apikey": true, "api-key": true, "key": true, "token": true, "access_token": true,
	"auth": true, "secret": true, "client_secret": true, "password": true, "passwd": true, "sig": true, "signature": true,
}

// IsCredentialHeader reports whether an HTTP header, by its name in any
// case, carries a credential.
func IsCredentialHeader(name string) bool { return credentialHeaders[strings.ToLower(name)] }

// IsCredentialParam reports whether a query parameter, by its name in any
// case, carries a credential by convention.
func IsCredentialParam(name string) bool { return credentialParams[strings.ToLower(name)] }
