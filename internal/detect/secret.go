package detect

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
)

// Secrets: provider API keys, private-key blocks, JWTs, and high-entropy
// values assigned to credential-named fields. All are reported as
// secret.api_key; the reason names the kind.
//
// One pass over the text stops only at anchor bytes: '_' and '-' (ghp_,
// github_pat_, sk_live_, sk-, xoxb-, -----BEGIN), 'A' (AKIA…, AIza…), 'J'
// (the "eyJ" of a JWT), '.' (hooks.slack.com) and '=' / ':' (credential
// assignments). Each stop checks a few bytes around it before any further
// work.
//
// Placeholders are scored below MinScore, so Scan drops them: AWS's
// documented example key id AKIAIOSFODNN7EXAMPLE (and any key ending in
// EXAMPLE), its example secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY,
// and values such as "xxxx…", "your_api_key", "<token>" or "${TOKEN}".

const secretType = "secret.api_key"

func init() { register(scanSecrets) }

var secretAnchor = [256]bool{'_': true, '-': true, 'A': true, 'J': true, '.': true, '=': true, ':': true}

func scanSecrets(text string, emit func(span)) {
	// Spans already reported end here; later anchors inside them are skipped.
	done := 0
	out := func(s span) {
		emit(s)
		if s.End > done {
			done = s.End
		}
	}
	// Generic assignments do not hide what follows: a provider key in the
	// value is found again by its own anchor and, scoring higher, wins.
	outGeneric := emit
	for i := 0; i < len(text); i++ {
		if !secretAnchor[text[i]] || i < done {
			continue
		}
		switch text[i] {
		case '_':
			secretUnderscore(text, i, out)
		case '-':
			secretDash(text, i, out)
		case 'A':
			secretA(text, i, out)
		case 'J':
			if i >= 2 && text[i-2] == 'e' && text[i-1] == 'y' {
				secretJWT(text, i-2, out)
			}
		case '.':
			secretSlackHook(text, i, out)
		case '=', ':':
			secretAssignment(text, i, outGeneric)
		}
	}
}

func secAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// secTokenByte: characters of key bodies (base62 plus '_' and '-').
func secTokenByte(c byte) bool { return secAlnum(c) || c == '_' || c == '-' }

// secBoundaryBefore: the byte before i does not continue a token.
func secBoundaryBefore(text string, i int) bool {
	return i == 0 || !secTokenByte(text[i-1])
}

// secRunEnd returns the end of the run of bytes accepted by ok starting at i.
func secRunEnd(text string, i int, ok func(byte) bool) int {
	for i < len(text) && ok(text[i]) {
		i++
	}
	return i
}

// classes counts lower, upper and digit presence in s.
func secClasses(s string) (lower, upper, digit bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= '0' && c <= '9':
			digit = true
		}
	}
	return
}

func secEmit(emit func(span), start, end int, score float64, reason string) {
	emit(span{Type: secretType, Start: start, End: end, Score: score, Reasons: []string{reason}})
}

// secretUnderscore: ghp_ gho_ ghu_ ghs_ ghr_, github_pat_, sk_live_,
// sk_test_, rk_live_, rk_test_ (and pk_live_, which is public: ignored).
func secretUnderscore(text string, i int, emit func(span)) {
	if i >= 3 && text[i-3] == 'g' && text[i-2] == 'h' && strings.IndexByte("pousr", text[i-1]) >= 0 && secBoundaryBefore(text, i-3) {
		end := secRunEnd(text, i+1, secAlnum)
		if end-(i+1) == 36 && (end == len(text) || !secTokenByte(text[end])) {
			kind := map[byte]string{'p': "personal access", 'o': "OAuth", 'u': "user-to-server", 's': "server-to-server", 'r': "refresh"}[text[i-1]]
			secEmit(emit, i-3, end, 0.95, "github "+kind+" token")
		}
		return
	}
	if i >= 6 && text[i-6:i] == "github" && strings.HasPrefix(text[i:], "_pat_") && secBoundaryBefore(text, i-6) {
		end := secRunEnd(text, i+5, func(c byte) bool { return secAlnum(c) || c == '_' })
		if end-(i+5) >= 70 {
			secEmit(emit, i-6, end, 0.95, "github fine-grained personal access token")
		}
		return
	}
	if i >= 2 && (text[i-2] == 's' || text[i-2] == 'r') && text[i-1] == 'k' && secBoundaryBefore(text, i-2) {
		rest := text[i+1:]
		live := strings.HasPrefix(rest, "live_")
		test := strings.HasPrefix(rest, "test_")
		if !live && !test {
			return
		}
		end := secRunEnd(text, i+6, secAlnum)
		body := text[i+6 : end]
		if len(body) < 20 || (end < len(text) && secTokenByte(text[end])) {
			return
		}
		if lo, up, dg := secClasses(body); !(dg && (lo || up)) {
			return
		}
		kind := "stripe secret key"
		if text[i-2] == 'r' {
			kind = "stripe restricted key"
		}
		if test {
			// Test-mode keys move no money; still a credential.
			secEmit(emit, i-2, end, 0.6, kind+" (test mode)")
			return
		}
		secEmit(emit, i-2, end, 0.95, kind)
	}
}

// secretDash: sk-… (OpenAI, Anthropic), xox?- (Slack), -----BEGIN … PRIVATE KEY-----.
func secretDash(text string, i int, emit func(span)) {
	switch {
	case i >= 2 && text[i-2] == 's' && text[i-1] == 'k' && secBoundaryBefore(text, i-2):
		end := secRunEnd(text, i+1, secTokenByte)
		body := text[i+1 : end]
		kind, score, minLen := "openai api key", 0.9, 32
		switch {
		case strings.HasPrefix(body, "ant-"):
			kind, minLen = "anthropic api key", 40
		case strings.HasPrefix(body, "proj-"):
			kind, minLen = "openai project api key", 40
		case strings.HasPrefix(body, "svcacct-"), strings.HasPrefix(body, "admin-"):
			kind, minLen = "openai service account key", 40
		}
		if len(body) < minLen || len(body) > 300 {
			return
		}
		lo, up, dg := secClasses(body)
		if !(lo && up && dg) {
			// Real keys mix cases and digits; "sk-ating-is-fun-…" does not.
			return
		}
		if strings.Contains(body, "T3BlbkFJ") { // base64 of "OpenAI" in legacy keys
			score = 0.97
		}
		secEmit(emit, i-2, end, score, kind)
	case i >= 4 && text[i-4:i-1] == "xox" && strings.IndexByte("bpars", text[i-1]) >= 0 && secBoundaryBefore(text, i-4):
		end := secRunEnd(text, i+1, secTokenByte)
		body := text[i+1 : end]
		// xoxb-<digits>-<digits>-<alnum>; demand digits and a second dash.
		if len(body) < 20 || strings.Count(body, "-") < 2 {
			return
		}
		if _, _, dg := secClasses(body); !dg {
			return
		}
		secEmit(emit, i-4, end, 0.95, "slack token")
	case strings.HasPrefix(text[i:], "-----BEGIN ") && (i == 0 || text[i-1] != '-'):
		secretPEM(text, i, emit)
	}
}

// secretPEM reports a private-key block, BEGIN line to END line.
func secretPEM(text string, i int, emit func(span)) {
	head := text[i+len("-----BEGIN "):]
	nl := strings.Index(head, "-----")
	if nl < 0 || nl > 40 {
		return
	}
	label := head[:nl]
	if !strings.HasSuffix(label, "PRIVATE KEY") && label != "PGP PRIVATE KEY BLOCK" {
		return
	}
	bodyStart := i + len("-----BEGIN ") + nl + 5
	endMark := "-----END " + label + "-----"
	limit := min(len(text), bodyStart+64<<10)
	if j := strings.Index(text[bodyStart:limit], endMark); j >= 0 {
		secEmit(emit, i, bodyStart+j+len(endMark), 0.99, "private key block ("+strings.ToLower(label)+")")
		return
	}
	// No END line (truncated paste): the block runs while lines look like
	// base64 or PEM headers.
	end := bodyStart
	for p := bodyStart; p < limit; {
		q := strings.IndexByte(text[p:limit], '\n')
		if q < 0 {
			q = limit - p
		}
		line := strings.TrimSpace(text[p : p+q])
		if line != "" && !strings.Contains(line, ":") && secRunEnd(line, 0, func(c byte) bool {
			return secAlnum(c) || c == '+' || c == '/' || c == '='
		}) != len(line) {
			break
		}
		end = p + q
		p += q + 1
	}
	if end-bodyStart >= 16 {
		secEmit(emit, i, end, 0.85, "private key block without END line ("+strings.ToLower(label)+")")
	}
}

// awsPrefixes are the four-letter prefixes of AWS access key ids.
var awsPrefixes = map[string]string{
	"AKIA": "aws access key id", "ASIA": "aws temporary access key id",
	"AGPA": "aws group id", "AIDA": "aws user id", "AROA": "aws role id",
	"AIPA": "aws instance profile id", "ANPA": "aws managed policy id",
	"ANVA": "aws version id", "ABIA": "aws sts service bearer token", "ACCA": "aws context-specific credential",
	"APKA": "aws public key id",
}

func secBase32(c byte) bool { return c >= 'A' && c <= 'Z' || c >= '2' && c <= '7' }

// secretA: AWS key ids (AKIA… + 16 base32) and Google API keys (AIza + 35).
func secretA(text string, i int, emit func(span)) {
	if len(text)-i < 20 || !secBoundaryBefore(text, i) {
		return
	}
	if text[i+1] == 'I' && text[i+2] == 'z' && text[i+3] == 'a' {
		end := secRunEnd(text, i+4, secTokenByte)
		if end-(i+4) == 35 {
			secEmit(emit, i, end, 0.9, "google api key")
		}
		return
	}
	kind, ok := awsPrefixes[text[i:i+4]]
	if !ok {
		return
	}
	end := secRunEnd(text, i+4, secBase32)
	if end-(i+4) != 16 || (end < len(text) && secAlnum(text[end])) {
		return
	}
	id := text[i:end]
	if strings.HasSuffix(id, "EXAMPLE") {
		// AWS's documented example key (AKIAIOSFODNN7EXAMPLE) and its kin.
		secEmit(emit, i, end, 0.2, kind+" (documentation example)")
		return
	}
	_, _, dg := secClasses(id[4:])
	score := 0.9
	if !dg {
		score = 0.7 // all letters: could be an acronym soup; still the exact shape
	}
	secEmit(emit, i, end, score, kind)
}

// secretJWT: header.payload.signature, base64url, header JSON with "alg".
func secretJWT(text string, i int, emit func(span)) {
	if !secBoundaryBefore(text, i) {
		return
	}
	b64url := func(c byte) bool { return secAlnum(c) || c == '_' || c == '-' }
	h := secRunEnd(text, i, b64url)
	if h-i < 10 || h >= len(text) || text[h] != '.' || h-i > 2048 {
		return
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(text[i:h], "="))
	if err != nil {
		return
	}
	var hdr map[string]any
	if json.Unmarshal(raw, &hdr) != nil {
		return
	}
	alg, ok := hdr["alg"].(string)
	if !ok {
		return
	}
	p := secRunEnd(text, h+1, b64url)
	if p-(h+1) < 2 || p >= len(text) || text[p] != '.' {
		return
	}
	s := secRunEnd(text, p+1, b64url)
	if strings.EqualFold(alg, "none") || s == p+1 {
		secEmit(emit, i, s, 0.6, "unsigned json web token")
		return
	}
	secEmit(emit, i, s, 0.85, "json web token")
}

// secretSlackHook: https://hooks.slack.com/services/T…/B…/….
func secretSlackHook(text string, i int, emit func(span)) {
	if i < 5 || text[i-5:i] != "hooks" || !strings.HasPrefix(text[i:], ".slack.com/") {
		return
	}
	start := i - 5
	if start >= 8 && text[start-8:start] == "https://" {
		start -= 8
	}
	p := i + len(".slack.com/")
	if !strings.HasPrefix(text[p:], "services/") && !strings.HasPrefix(text[p:], "workflows/") && !strings.HasPrefix(text[p:], "triggers/") {
		return
	}
	end := secRunEnd(text, p, func(c byte) bool { return secAlnum(c) || c == '/' || c == '_' || c == '-' })
	path := text[p:end]
	if strings.Count(path, "/") < 3 || end-p < 30 {
		return
	}
	secEmit(emit, start, end, 0.95, "slack webhook url")
}

// credentialWords mark a field that holds a credential.
var credentialWords = []string{
	"password", "passwd", "passphrase", "pwd", "secret", "token", "api_key", "apikey",
	"api-key", "key", "credential", "auth", "bearer", "private", "access", "session",
	"cookie", "signature", "salt",
}

// credentialWordBytes are credentialWords as byte slices, to look for them
// in a name lowered into a buffer without making it a string.
var credentialWordBytes = func() [][]byte {
	out := make([][]byte, len(credentialWords))
	for k, w := range credentialWords {
		out[k] = []byte(w)
	}
	return out
}()

// credentialWord returns the first of credentialWords, in their order,
// that the lower-case name holds, or "".
func credentialWord(name []byte) string {
	for k, w := range credentialWordBytes {
		if bytes.Contains(name, w) {
			return credentialWords[k]
		}
	}
	return ""
}

// secretAssignment: at '=' or ':', a credential-named field on the left and
// a high-entropy value on the right: `password = "…"`, `api_key: …`,
// `"client_secret": "…"`, `Authorization: Bearer …`.
func secretAssignment(text string, i int, emit func(span)) {
	// Left: skip spaces, quotes and a leading ':' of ":=".
	l := i
	if text[i] == '=' && l > 0 && (text[l-1] == ':' || text[l-1] == '!' || text[l-1] == '=' || text[l-1] == '<' || text[l-1] == '>') {
		return // comparison or := handled at the ':'
	}
	for l > 0 && i-l < 4 && (text[l-1] == ' ' || text[l-1] == '"' || text[l-1] == '\'' || text[l-1] == '\t') {
		l--
	}
	ne := l
	for l > 0 && ne-l < 48 && (secTokenByte(text[l-1]) || text[l-1] == '.') {
		l--
	}
	if ne-l < 3 {
		return
	}
	// The name is ASCII (token bytes and dots) and at most 48 bytes: it is
	// lowered on the stack, as most names at a ':' or '=' hold no
	// credential word and are dropped here.
	var lowered [48]byte
	lower := lowered[:copy(lowered[:], text[l:ne])]
	for k, c := range lower {
		if 'A' <= c && c <= 'Z' {
			lower[k] = c + 'a' - 'A'
		}
	}
	word := credentialWord(lower)
	if word == "" {
		return
	}
	// Right: skip '=' of ":=" and "=>", spaces, an opening quote, "Bearer ".
	r := i + 1
	if r < len(text) && (text[r] == '=' || text[r] == '>') {
		r++
	}
	for r < len(text) && r-i < 8 && (text[r] == ' ' || text[r] == '\t' || text[r] == '"' || text[r] == '\'' || text[r] == '`') {
		r++
	}
	for _, scheme := range []string{"Bearer ", "bearer ", "Basic ", "Token ", "token "} {
		if strings.HasPrefix(text[r:], scheme) {
			r += len(scheme)
			word = strings.ToLower(strings.TrimSpace(scheme))
			break
		}
	}
	end := secRunEnd(text, r, func(c byte) bool {
		return secAlnum(c) || strings.IndexByte("+/=_-.~!@#$%^&*?", c) >= 0
	})
	for end > r && (text[end-1] == '.' || text[end-1] == ',') {
		end--
	}
	value := text[r:end]
	if len(value) < 20 || len(value) > 512 {
		return
	}
	if secPlaceholder(value) {
		return
	}
	lo, up, dg := secClasses(value)
	if !dg || !(lo || up) {
		return
	}
	ent := secShannon(value)
	if ent < 3.0 {
		return
	}
	if (bytes.Contains(lower, []byte("aws")) || bytes.Contains(lower, []byte("secret_access"))) && len(value) == 40 {
		if strings.HasSuffix(value, "EXAMPLEKEY") {
			secEmit(emit, r, end, 0.2, "aws secret access key (documentation example)")
			return
		}
		secEmit(emit, r, end, 0.9, "aws secret access key")
		return
	}
	score := 0.7
	if ent >= 4.0 {
		score = 0.8
	}
	secEmit(emit, r, end, score, "high-entropy value near credential word \""+word+"\"")
}

// placeholder recognises values people write in place of a real secret.
func secPlaceholder(v string) bool {
	l := strings.ToLower(v)
	for _, p := range []string{"example", "xxxx", "your_", "your-", "<", "${", "{{", "changeme", "placeholder", "dummy", "****", "redacted", "process.env", "os.environ", "getenv"} {
		if strings.Contains(l, p) {
			return true
		}
	}
	return false
}

// shannon is the entropy of s in bits per byte.
func secShannon(s string) float64 {
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	n := float64(len(s))
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}
